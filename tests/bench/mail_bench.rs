//! Email throughput benchmark (a program, not a test): messages per second delivered over
//! SMTP to a local sink (`tests/mail/smtp_sink.py`, Python aiosmtpd, counting only) with N
//! connections, through the whole outbox: render at enqueue, durable job + log row, claim,
//! MIME build, SMTP transaction on a pooled connection, durable completion + log update.
//!
//! For each N it also measures a baseline in the same run: N tasks sending pre-built
//! messages straight through mail-send over N persistent connections (no queue, no disk).
//! The baseline is the ceiling set by the sink and SMTP itself; the ratio shows what
//! durability costs. (PocketBase, the usual peer, has no bulk send or outbox to compare.)
//!
//! Run: `cargo bench --bench mail_bench` (knobs: `MAIL_BENCH_N` messages per run, default
//! 3000; `MAIL_BENCH_CONNECTIONS`, comma-separated, default `1,4,16`; `MAIL_BENCH_DIR`,
//! default `target/mail-bench`). Needs `python3` with `aiosmtpd`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backbone::config::Config;
use backbone::jobs::clock::SystemClock;
use backbone::jobs::model::JobState;
use backbone::jobs::{Jobs, Registry};
use backbone::mail::{Content, Mail, OutgoingMail};
use backbone::store::{Store, StoreOptions, WriteTx};
use mail_send::smtp::message::Message;
use mail_send::SmtpClientBuilder;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Sink(std::process::Child);

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_sink() -> Result<(Sink, u16), Box<dyn std::error::Error>> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mail/smtp_sink.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg("--port")
        .arg(port.to_string())
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if !line.starts_with("READY") {
        return Err(format!("sink did not start: {line:?}").into());
    }
    Ok((Sink(child), port))
}

fn message_body(i: usize) -> Vec<u8> {
    mail_send::mail_builder::MessageBuilder::new()
        .from(("Bench", "bench@example.com"))
        .to(format!("user{i}@example.com"))
        .subject(format!("Bench {i}"))
        .text_body("Hello from the mail benchmark.\n")
        .html_body("<p>Hello from the mail benchmark.</p>")
        .write_to_vec()
        .unwrap_or_default()
}

/// N persistent connections, each sending its share of pre-built messages.
async fn baseline(port: u16, n: usize, connections: usize) -> Result<f64, Box<dyn std::error::Error>> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        tasks.push(tokio::spawn(async move {
            let builder = SmtpClientBuilder::new("127.0.0.1".to_string(), port)
                .map_err(|e| e.to_string())?
                .implicit_tls(false)
                .timeout(Duration::from_secs(30));
            let mut client = builder.connect_plain().await.map_err(|e| e.to_string())?;
            client.stream.set_nodelay(true).map_err(|e| e.to_string())?;
            let mut i = c;
            while i < n {
                let body = message_body(i);
                let to = format!("user{i}@example.com");
                client
                    .send(Message::new("bench@example.com", [to.as_str()], body.as_slice()))
                    .await
                    .map_err(|e| e.to_string())?;
                i += connections;
            }
            Ok::<(), String>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// The outbox: enqueue `n` emails (durably, in batches), then wait for every delivery.
async fn outbox(
    port: u16,
    n: usize,
    connections: usize,
    base: &str,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir_in(base)?;
    let path = dir.path().join("data.redb");
    let store = tokio::task::spawn_blocking(move || Store::open(&path, &StoreOptions::default())).await??;
    let mut config = Config::default();
    config.mail.enabled = true;
    config.mail.host = "127.0.0.1".into();
    config.mail.port = port;
    config.mail.security = "none".into();
    config.mail.sender_address = "bench@example.com".into();
    config.jobs.queues.insert(backbone::mail::QUEUE.into(), connections);
    let mut registry = Registry::with_builtins(false);
    let prepared = Mail::prepare(store.clone(), &config, &mut registry).await?;
    let jobs = Jobs::open(store.clone(), config.jobs.clone(), registry, Arc::new(SystemClock)).await?;
    let mail = Mail::new(prepared, jobs.clone());
    let started = Instant::now();
    let mut enqueued = 0;
    while enqueued < n {
        let batch: Vec<OutgoingMail> = (enqueued..(enqueued + 500).min(n))
            .map(|i| OutgoingMail {
                to: format!("user{i}@example.com"),
                to_name: None,
                locale: None,
                content: Content::Raw {
                    subject: format!("Bench {i}"),
                    html: Some("<p>Hello from the mail benchmark.</p>".into()),
                    text: "Hello from the mail benchmark.\n".into(),
                },
            })
            .collect();
        enqueued += batch.len();
        let m = mail.clone();
        store
            .write(move |tx: &mut WriteTx<'_>| {
                for email in batch {
                    m.enqueue_in(tx, email)?;
                }
                Ok::<(), backbone::mail::MailError>(())
            })
            .await?;
    }
    let enqueue_rate = n as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    jobs.start().await?;
    loop {
        let stats = jobs.stats().await?;
        let completed = stats.states.get(JobState::Completed) as usize;
        let dead = stats.states.get(JobState::Dead);
        if dead > 0 {
            return Err(format!("{dead} emails died: {}", stats.to_json()).into());
        }
        if completed >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    jobs.shutdown(Duration::from_secs(5)).await;
    let _ = tokio::task::spawn_blocking(move || store.shutdown()).await;
    Ok((enqueue_rate, rate))
}

/// The allocator the `backbone` binary ships with (`src/main.rs`), so the figures are the
/// product's. The server also runs with `MIMALLOC_PURGE_DELAY=0`; set it in the environment
/// to match that exactly.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    backbone::util::tls::install_crypto_provider();
    let n = env_usize("MAIL_BENCH_N", 3000);
    let connections: Vec<usize> = std::env::var("MAIL_BENCH_CONNECTIONS")
        .unwrap_or_else(|_| "1,4,16".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let base = std::env::var("MAIL_BENCH_DIR").unwrap_or_else(|_| "target/mail-bench".into());
    std::fs::create_dir_all(&base)?;
    println!("mail_bench: {n} messages per run, sink = aiosmtpd on loopback");
    println!("connections\tbaseline msg/s\toutbox msg/s\toutbox/baseline\tdurable enqueue msg/s");
    for c in connections {
        let (_sink, port) = start_sink()?;
        let base_rate = baseline(port, n, c).await?;
        drop(_sink);
        let (_sink, port) = start_sink()?;
        let (enqueue_rate, rate) = outbox(port, n, c, &base).await?;
        println!("{c}\t{base_rate:.0}\t{rate:.0}\t{:.2}\t{enqueue_rate:.0}", rate / base_rate);
    }
    Ok(())
}

//! Realtime benchmark against PocketBase (a program, not a test), one client tool for both.
//!
//! Per round and server (Backbone, then PocketBase, rounds interleaved): a fresh server and
//! data directory; one public collection; `RT_BENCH_SUBSCRIBERS` (1000) SSE clients
//! subscribed to it; then `RT_BENCH_RATE` (500) creates per second for `RT_BENCH_SECONDS`
//! (15). Measured: delivery latency from the write's acknowledgement (the commit) to the
//! event's receipt, and from the request's start, on every 20th subscriber (p50/p99, an
//! event that arrives before the acknowledgement counts 0); events delivered per second (all
//! subscribers); the server's CPU seconds over the window (`/proc/PID/stat`) and events per
//! CPU-second; peak VmRSS. Then `RT_BENCH_IDLE` (10000) idle subscribers: VmRSS once they
//! are all connected and subscribed.
//!
//! Run: `cargo build --release && cargo bench --bench realtime_bench` (PocketBase comes from
//! `tests/peers/pocketbase.sh`; `RT_BENCH_ROUNDS`, default 2). The client runs on the same
//! cores as the servers and takes CPU from them at this load; both face the same client.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const EMAIL: &str = "bench@example.com";
const PASSWORD: &str = "bench-password-123";

/// CPU seconds (user + system) of `pid`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// VmRSS of `pid` in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    percentile(&v, 0.5)
}

/// A running server under test.
struct Peer {
    name: &'static str,
    base: String,
    pid: u32,
    child: Option<Child>,
    port: u16,
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        } else {
            let _ = Command::new(repo().join("tests/peers/pocketbase.sh"))
                .args(["stop", &self.port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

async fn wait_healthy(base: &str) {
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{base}/api/health")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{base} did not become healthy");
}

async fn start_backbone(dir: &Path) -> Peer {
    let binary = repo().join("target/release/backbone");
    assert!(binary.exists(), "build it first: cargo build --release");
    let status = Command::new(&binary)
        .args(["superuser", "upsert", EMAIL, PASSWORD, "--dir"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("superuser upsert");
    assert!(status.success());
    let port = free_port();
    let child = Command::new(&binary)
        .args(["serve", "--http", &format!("127.0.0.1:{port}"), "--dir"])
        .arg(dir)
        .env("BACKBONE_LOG", "warn")
        // 2000 connects and subscriptions from one address in seconds are not an attack here.
        .env("BACKBONE_RATE_LIMITS_ENABLED", "false")
        .env("MIMALLOC_PURGE_DELAY", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start backbone");
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base).await;
    Peer { name: "backbone", base, pid: child.id(), child: Some(child), port }
}

async fn start_pocketbase(dir: &Path) -> Peer {
    let port = free_port();
    let out = Command::new(repo().join("tests/peers/pocketbase.sh"))
        .args(["start", &port.to_string()])
        .arg(dir)
        .env("PB_SU_EMAIL", EMAIL)
        .env("PB_SU_PASSWORD", PASSWORD)
        .output()
        .expect("tests/peers/pocketbase.sh start");
    assert!(out.status.success(), "pocketbase.sh: {}", String::from_utf8_lossy(&out.stderr));
    let vars: HashMap<String, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    let base = vars.get("BASE_URL").cloned().expect("BASE_URL");
    let pid = vars.get("PID").and_then(|p| p.parse().ok()).expect("PID");
    wait_healthy(&base).await;
    Peer { name: "pocketbase", base, pid, child: None, port }
}

async fn sign_in(api: &reqwest::Client, base: &str) -> String {
    let r: Value = api
        .post(format!("{base}/api/collections/_superusers/auth-with-password"))
        .json(&json!({"identity": EMAIL, "password": PASSWORD}))
        .send()
        .await
        .expect("sign in")
        .json()
        .await
        .expect("json");
    r["token"].as_str().expect("token").to_string()
}

/// Counts occurrences of `needle` across chunk boundaries.
struct Counter {
    carry: Vec<u8>,
}

impl Counter {
    fn count(&mut self, chunk: &[u8], needle: &[u8]) -> u64 {
        let mut joined = std::mem::take(&mut self.carry);
        joined.extend_from_slice(chunk);
        let n = joined.windows(needle.len()).filter(|w| *w == needle).count() as u64;
        let keep = needle.len() - 1;
        self.carry = joined[joined.len().saturating_sub(keep)..].to_vec();
        n
    }
}

/// When each sampled event (by its record's title, the write's sequence) arrived.
type Arrivals = Arc<Mutex<Vec<(u64, Instant)>>>;
/// When each write was sent and acknowledged.
type WriteTimes = Arc<Mutex<Vec<(Option<Instant>, Option<Instant>)>>>;

/// One subscriber: connects, subscribes to `topic`, then counts events (and, when
/// `sample` is given, notes when each title arrived).
async fn subscriber(
    stream: reqwest::Client,
    api: reqwest::Client,
    base: String,
    topic: String,
    events: Arc<AtomicU64>,
    sample: Option<Arrivals>,
    ready: tokio::sync::mpsc::Sender<()>,
) {
    let Ok(mut resp) = stream.get(format!("{base}/api/realtime")).send().await else { return };
    let mut buffer = Vec::new();
    let client_id = loop {
        let Ok(Some(chunk)) = resp.chunk().await else { return };
        buffer.extend_from_slice(&chunk);
        let text = String::from_utf8_lossy(&buffer).to_string();
        if let Some(end) = text.find("\n\n") {
            let id = text[..end].lines().find_map(|l| l.strip_prefix("id:")).map(|s| s.trim().to_string());
            buffer.drain(..end + 2);
            if let Some(id) = id {
                break id;
            }
        }
    };
    let ok = api
        .post(format!("{base}/api/realtime"))
        .json(&json!({"clientId": client_id, "subscriptions": [topic]}))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    if !ok {
        return;
    }
    let _ = ready.send(()).await;
    let mut counter = Counter { carry: Vec::new() };
    let needle = b"\ndata:";
    loop {
        let Ok(Some(chunk)) = resp.chunk().await else { return };
        let now = Instant::now();
        events.fetch_add(counter.count(&chunk, needle), Ordering::Relaxed);
        if let Some(sample) = &sample {
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
                let frame = String::from_utf8_lossy(&buffer[..end]).to_string();
                buffer.drain(..end + 2);
                if let Some(pos) = frame.find("\"title\":\"") {
                    let rest = &frame[pos + 9..];
                    if let Some(seq) = rest.split('"').next().and_then(|s| s.parse::<u64>().ok()) {
                        if let Ok(mut s) = sample.lock() {
                            s.push((seq, now));
                        }
                    }
                }
            }
        }
    }
}

/// One round's figures for one server.
#[derive(Debug, Default, Clone)]
struct Figures {
    p50_ack_ms: f64,
    p99_ack_ms: f64,
    p50_send_ms: f64,
    p99_send_ms: f64,
    delivered_per_s: f64,
    expected_per_s: f64,
    cpu_s: f64,
    events_per_cpu_s: f64,
    rss_mib: f64,
    idle_rss_mib: f64,
    idle_connected: usize,
}

async fn connect_many(
    peer: &Peer,
    n: usize,
    topic: &str,
    events: Arc<AtomicU64>,
    sample_every: usize,
) -> (Vec<tokio::task::JoinHandle<()>>, Vec<Arrivals>, usize) {
    let stream = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");
    let api = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(n.max(1));
    let mut tasks = Vec::with_capacity(n);
    let mut samples = Vec::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(200));
    for i in 0..n {
        let sample = (sample_every > 0 && i % sample_every == 0).then(|| Arc::new(Mutex::new(Vec::new())));
        if let Some(s) = &sample {
            samples.push(s.clone());
        }
        let permit = gate.clone().acquire_owned().await.expect("gate");
        let (stream, api, base, topic, events, ready) = (
            stream.clone(),
            api.clone(),
            peer.base.clone(),
            topic.to_string(),
            events.clone(),
            ready_tx.clone(),
        );
        let (inner_ready, mut inner_rx) = tokio::sync::mpsc::channel(1);
        tasks.push(tokio::spawn(subscriber(stream, api, base, topic, events, sample, inner_ready)));
        tokio::spawn(async move {
            if inner_rx.recv().await.is_some() {
                let _ = ready.send(()).await;
            }
            drop(permit);
        });
    }
    drop(ready_tx);
    let mut connected = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while connected < n {
        match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
            Ok(Some(())) => connected += 1,
            _ => break,
        }
    }
    (tasks, samples, connected)
}

async fn run_round(peer: &Peer, subscribers: usize, rate: usize, seconds: usize, idle: usize) -> Figures {
    let api = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    let token = sign_in(&api, &peer.base).await;
    let r = api
        .post(format!("{}/api/collections", peer.base))
        .header("Authorization", &token)
        .json(&json!({"name": "rt", "type": "base", "listRule": "", "viewRule": "", "createRule": "",
            "fields": [{"name": "title", "type": "text"}]}))
        .send()
        .await
        .expect("create collection");
    assert!(r.status().is_success(), "{}: {}", peer.name, r.text().await.unwrap_or_default());

    let events = Arc::new(AtomicU64::new(0));
    let (tasks, samples, connected) = connect_many(peer, subscribers, "rt/*", events.clone(), 20).await;
    assert_eq!(connected, subscribers, "{}: only {connected} subscribers connected", peer.name);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Writes at a fixed rate; each remembers when it was sent and acknowledged.
    let total = rate * seconds;
    let times: WriteTimes = Arc::new(Mutex::new(vec![(None, None); total]));
    let rss_peak = Arc::new(Mutex::new(0f64));
    let sampler = {
        let (pid, peak) = (peer.pid, rss_peak.clone());
        tokio::spawn(async move {
            loop {
                let v = rss_mib(pid);
                if let Ok(mut p) = peak.lock() {
                    *p = p.max(v);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let events_before = events.load(Ordering::Relaxed);
    let cpu_before = cpu_seconds(peer.pid);
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut writes = Vec::with_capacity(total);
    for seq in 0..total {
        tick.tick().await;
        let (api, url, token, times) =
            (api.clone(), format!("{}/api/collections/rt/records", peer.base), token.clone(), times.clone());
        writes.push(tokio::spawn(async move {
            let sent = Instant::now();
            let ok = api
                .post(url)
                .header("Authorization", token)
                .json(&json!({"title": seq.to_string()}))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if let Ok(mut t) = times.lock() {
                t[seq] = (Some(sent), ok.then(Instant::now));
            }
        }));
    }
    for w in writes {
        let _ = w.await;
    }
    // Let deliveries finish (at most 10 s after the last write).
    let expected = (total * subscribers) as u64;
    let drain_deadline = Instant::now() + Duration::from_secs(10);
    while events.load(Ordering::Relaxed) - events_before < expected && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(peer.pid) - cpu_before;
    let delivered = events.load(Ordering::Relaxed) - events_before;
    sampler.abort();

    let times = times.lock().map(|t| t.clone()).unwrap_or_default();
    let (mut from_ack, mut from_send) = (Vec::new(), Vec::new());
    for sample in &samples {
        for (seq, at) in sample.lock().map(|s| s.clone()).unwrap_or_default() {
            if let Some((Some(sent), ack)) = times.get(seq as usize) {
                from_send.push(at.saturating_duration_since(*sent).as_secs_f64() * 1000.0);
                if let Some(ack) = ack {
                    from_ack.push(at.saturating_duration_since(*ack).as_secs_f64() * 1000.0);
                }
            }
        }
    }
    from_ack.sort_by(|a, b| a.total_cmp(b));
    from_send.sort_by(|a, b| a.total_cmp(b));
    for t in tasks {
        t.abort();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Idle subscribers.
    let idle_events = Arc::new(AtomicU64::new(0));
    let (idle_tasks, _, idle_connected) = connect_many(peer, idle, "rt/*", idle_events, 0).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_rss = rss_mib(peer.pid);
    for t in idle_tasks {
        t.abort();
    }
    let rss = *rss_peak.lock().expect("peak");
    Figures {
        p50_ack_ms: percentile(&from_ack, 0.5),
        p99_ack_ms: percentile(&from_ack, 0.99),
        p50_send_ms: percentile(&from_send, 0.5),
        p99_send_ms: percentile(&from_send, 0.99),
        delivered_per_s: delivered as f64 / elapsed,
        expected_per_s: expected as f64 / elapsed,
        cpu_s: cpu,
        events_per_cpu_s: delivered as f64 / cpu.max(0.01),
        rss_mib: rss,
        idle_rss_mib: idle_rss,
        idle_connected,
    }
}

fn main() {
    let rounds = env_usize("RT_BENCH_ROUNDS", 2);
    let subscribers = env_usize("RT_BENCH_SUBSCRIBERS", 1000);
    let rate = env_usize("RT_BENCH_RATE", 500);
    let seconds = env_usize("RT_BENCH_SECONDS", 15);
    let idle = env_usize("RT_BENCH_IDLE", 10_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let mut results: HashMap<&'static str, Vec<Figures>> = HashMap::new();
        println!(
            "realtime bench: {subscribers} subscribers, {rate} creates/s for {seconds} s, then {idle} idle subscribers; {rounds} rounds"
        );
        println!(
            "{:<11} {:>5} {:>9} {:>9} {:>10} {:>10} {:>11} {:>11} {:>7} {:>10} {:>8} {:>9} {:>9}",
            "server", "round", "p50 ms", "p99 ms", "p50 send", "p99 send", "events/s", "expected/s", "cpu s",
            "ev/cpu-s", "rss MiB", "idle MiB", "idle conn"
        );
        for round in 0..rounds {
            for which in ["backbone", "pocketbase"] {
                let dir = tempfile::tempdir().expect("temp dir");
                let peer = if which == "backbone" {
                    start_backbone(dir.path()).await
                } else {
                    start_pocketbase(dir.path()).await
                };
                let f = run_round(&peer, subscribers, rate, seconds, idle).await;
                println!(
                    "{:<11} {:>5} {:>9.1} {:>9.1} {:>10.1} {:>10.1} {:>11.0} {:>11.0} {:>7.1} {:>10.0} {:>8.1} {:>9.1} {:>9}",
                    peer.name, round, f.p50_ack_ms, f.p99_ack_ms, f.p50_send_ms, f.p99_send_ms, f.delivered_per_s,
                    f.expected_per_s, f.cpu_s, f.events_per_cpu_s, f.rss_mib, f.idle_rss_mib, f.idle_connected
                );
                results.entry(peer.name).or_default().push(f);
                drop(peer);
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
        let med = |name: &str, f: fn(&Figures) -> f64| median(results.get(name).map(|v| v.iter().map(f).collect()).unwrap_or_default());
        println!("medians over {rounds} rounds:");
        for name in ["backbone", "pocketbase"] {
            println!(
                "  {name:<11} p50 {:.1} ms  p99 {:.1} ms  delivered {:.0}/s  {:.0} events per CPU-s  rss {:.1} MiB  idle rss {:.1} MiB",
                med(name, |f| f.p50_ack_ms),
                med(name, |f| f.p99_ack_ms),
                med(name, |f| f.delivered_per_s),
                med(name, |f| f.events_per_cpu_s),
                med(name, |f| f.rss_mib),
                med(name, |f| f.idle_rss_mib),
            );
        }
        let ratio = med("backbone", |f| f.events_per_cpu_s) / med("pocketbase", |f| f.events_per_cpu_s);
        let p99 = med("backbone", |f| f.p99_ack_ms);
        let idle_rss = med("backbone", |f| f.idle_rss_mib);
        let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
        println!("target p99 <= 50 ms: {p99:.1} ms {}", verdict(p99 <= 50.0));
        println!("target events per CPU-s >= 3x PocketBase: {ratio:.2}x {}", verdict(ratio >= 3.0));
        println!("target {idle} idle subscribers < 150 MB RSS: {idle_rss:.1} MiB {}", verdict(idle_rss * 1.048576 < 150.0));
    });
}

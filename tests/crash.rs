//! Crash tests: concurrent record creates against the real binary, interrupted by SIGKILL
//! (repeatedly, on the same data directory) or by SIGTERM, then checked after a restart.
//!
//! Checks after every restart (Jepsen set semantics):
//! - `/api/ready` answers 200 within 3 s of the restart;
//! - every create that got a 2xx reply (in any earlier cycle) is present with exactly the
//!   acknowledged JSON;
//! - every record once seen after a restart stays present and unchanged;
//! - no record exists that no client attempted, and a create answered with a 4xx is absent;
//!   a create that errored or timed out may be present (with the values sent) or absent;
//! - `totalItems` equals the number of records listed.
//!
//! Knobs: `BACKBONE_CRASH_SEED` (replay a run; the seed is printed), `BACKBONE_CRASH_CYCLES`
//! (SIGKILL cycles, default 8). Run: `cargo test --test crash -- --nocapture`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::{Server, StartOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const COLLECTION: &str = "crashlog";
/// Concurrent clients creating records.
const CLIENTS: usize = 8;
/// SIGKILL cycles of the default run.
const DEFAULT_CYCLES: usize = 8;
/// Load runs this long (uniformly random, in ms) before the signal.
const KILL_DELAY_MS: std::ops::RangeInclusive<u64> = 300..=2000;
/// `/api/ready` must answer 200 within this long of the restart.
const READY_WITHIN: Duration = Duration::from_secs(3);
/// Per-request timeout of the load clients.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many problems are printed in a failure message.
const MAX_REPORTED: usize = 25;

/// How one create ended, as far as its client could tell.
#[derive(Debug, Clone)]
enum Outcome {
    /// 2xx: the record (as returned) must be durable.
    Acked(Value),
    /// 4xx: the server refused; the record must not exist.
    Rejected(u16, String),
    /// 5xx, timeout or transport error: the record may or may not exist.
    Indeterminate { kind: String, detail: String },
}

/// One attempted create, keyed by its unique title.
#[derive(Debug, Clone)]
struct Attempt {
    cycle: usize,
    /// Client-chosen id (even clients) or `None` (the server picks one).
    id: Option<String>,
    note: String,
    outcome: Outcome,
}

/// Everything the clients attempted, and what was seen after restarts.
#[derive(Default)]
struct History {
    attempts: BTreeMap<String, Attempt>,
    /// Records (by title) seen after an earlier restart: committed, so they must stay.
    observed: BTreeMap<String, Value>,
}

impl History {
    fn absorb(&mut self, attempts: Vec<(String, Attempt)>) {
        for (title, attempt) in attempts {
            let previous = self.attempts.insert(title.clone(), attempt);
            assert!(previous.is_none(), "test bug: title {title} attempted twice");
        }
    }

    fn acked(&self) -> usize {
        self.attempts.values().filter(|a| matches!(a.outcome, Outcome::Acked(_))).count()
    }

    /// Indeterminate outcomes of `cycle` by kind, with one example detail each.
    fn reasons(&self, cycle: usize) -> String {
        let mut kinds: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
        for a in self.attempts.values().filter(|a| a.cycle == cycle) {
            if let Outcome::Indeterminate { kind, detail } = &a.outcome {
                kinds.entry(kind).or_insert((0, detail)).0 += 1;
            }
        }
        kinds
            .iter()
            .map(|(kind, (n, detail))| {
                // The URL is the same for every request; the error chain is the useful part.
                let short: String =
                    detail.split_once("): ").map_or(*detail, |(_, rest)| rest).chars().take(120).collect();
                format!("{kind} x{n}, e.g. {short:?}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn count(&self, cycle: usize) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for a in self.attempts.values().filter(|a| a.cycle == cycle) {
            match a.outcome {
                Outcome::Acked(_) => counts.0 += 1,
                Outcome::Rejected(..) => counts.1 += 1,
                Outcome::Indeterminate { .. } => counts.2 += 1,
            }
        }
        counts
    }
}

/// What one verification found.
struct Verified {
    acked_checked: usize,
    records_found: usize,
    indeterminate_present: usize,
}

/// The run's knobs, read once from the environment.
struct Knobs {
    seed: u64,
    cycles: usize,
}

/// Reads `BACKBONE_CRASH_SEED` and `BACKBONE_CRASH_CYCLES` once for the whole run (the
/// server helper does not pass test knobs on to the server).
fn knobs() -> &'static Knobs {
    static KNOBS: OnceLock<Knobs> = OnceLock::new();
    KNOBS.get_or_init(|| {
        let seed = env_u64("BACKBONE_CRASH_SEED").unwrap_or_else(rand::random::<u64>);
        let cycles = env_u64("BACKBONE_CRASH_CYCLES").map_or(DEFAULT_CYCLES, |n| n as usize);
        Knobs { seed, cycles }
    })
}

fn env_u64(name: &str) -> Option<u64> {
    let raw = std::env::var(name).ok()?;
    let raw = raw.trim();
    let parsed = match raw.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => raw.parse::<u64>(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name} must be a whole number, got {raw:?}")))
}

/// The run's seed (`BACKBONE_CRASH_SEED`, or a fresh random one); always printed.
fn seed_for(test: &str) -> u64 {
    let seed = knobs().seed;
    println!("{test}: seed {seed} (replay with BACKBONE_CRASH_SEED={seed})");
    seed
}

fn load_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().expect("load client")
}

/// Creates the test collection (superusers only; one free-text field plus a text note).
async fn create_collection(server: &Server, token: &str) {
    let body = json!({
        "name": COLLECTION,
        "fields": [
            {"name": "title", "type": "text", "required": true, "max": 200},
            {"name": "note", "type": "text", "max": 1000}
        ]
    });
    let reply = server.call("POST", "/api/collections", Some(token), Some(body)).await;
    assert_eq!(reply.status, 200, "create collection: {}", reply.text);
}

/// What one load client needs.
struct ClientSpec {
    client: reqwest::Client,
    base: String,
    token: String,
    seed: u64,
    cycle: usize,
    worker: usize,
    client_seed: u64,
    stop: Arc<AtomicBool>,
}

fn indeterminate(kind: &str, detail: String) -> Outcome {
    Outcome::Indeterminate { kind: kind.to_string(), detail }
}

/// An error with its sources, for messages.
fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// One client: creates records until `stop` is set, recording every attempt.
async fn client_loop(spec: ClientSpec) -> Vec<(String, Attempt)> {
    let ClientSpec { client, base, token, seed, cycle, worker, client_seed, stop } = spec;
    assert!(cycle < 10_000 && worker < 100, "id scheme supports 9999 cycles and 99 clients");
    let mut rng = StdRng::seed_from_u64(client_seed);
    let url = format!("{base}/api/collections/{COLLECTION}/records");
    let mut attempts = Vec::new();
    let mut seq = 0usize;
    while !stop.load(Ordering::Acquire) && seq < 1_000_000 {
        let title = format!("{seed:016x}-c{cycle}-w{worker}-n{seq}");
        // Even clients choose ids; odd ones let the server generate them.
        let id = (worker % 2 == 0).then(|| format!("c{cycle:04}w{worker:02}n{seq:06}"));
        let len = rng.gen_range(0..=400);
        let note: String = (0..len).map(|_| char::from(rng.gen_range(b'a'..=b'z'))).collect();
        seq += 1;
        let mut body = json!({"title": title, "note": note});
        if let Some(id) = &id {
            body["id"] = json!(id);
        }
        let sent = client.post(&url).header("Authorization", &token).json(&body).send().await;
        let outcome = match sent {
            Ok(res) => {
                let status = res.status().as_u16();
                match res.text().await {
                    Ok(text) if (200..300).contains(&status) => match serde_json::from_str::<Value>(&text) {
                        Ok(value) => Outcome::Acked(value),
                        // A 2xx with an unreadable body is not an acknowledgement we can check.
                        Err(err) => indeterminate("2xx with bad JSON", format!("{err}: {text}")),
                    },
                    Ok(text) if (400..500).contains(&status) => Outcome::Rejected(status, text),
                    Ok(text) => indeterminate(&format!("status {status}"), text),
                    Err(err) => indeterminate(&format!("status {status}, body lost"), chain(&err)),
                }
            }
            Err(err) => {
                let kind = if err.is_timeout() {
                    "timeout"
                } else if err.is_connect() {
                    "connect"
                } else {
                    "transport"
                };
                indeterminate(kind, chain(&err))
            }
        };
        let failed = !matches!(outcome, Outcome::Acked(_));
        attempts.push((title, Attempt { cycle, id, note, outcome }));
        if failed {
            if stop.load(Ordering::Acquire) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    attempts
}

/// Starts `CLIENTS` load tasks against `server`.
fn start_load(
    server: &Server,
    token: &str,
    seed: u64,
    cycle: usize,
    rng: &mut StdRng,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<(String, Attempt)>>> {
    let client = load_client();
    (0..CLIENTS)
        .map(|worker| {
            tokio::spawn(client_loop(ClientSpec {
                client: client.clone(),
                base: server.base.clone(),
                token: token.to_string(),
                seed,
                cycle,
                worker,
                client_seed: rng.gen(),
                stop: stop.clone(),
            }))
        })
        .collect()
}

async fn join_load(tasks: Vec<tokio::task::JoinHandle<Vec<(String, Attempt)>>>) -> Vec<(String, Attempt)> {
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("load client task"));
    }
    all
}

/// Restarts on `dir` and waits for `/api/ready` (200 within `READY_WITHIN` of the spawn).
async fn restart(dir: &Path, label: &str) -> (Server, Duration) {
    let started = Instant::now();
    let server = Server::start_in(dir, StartOptions::default());
    let probe = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().expect("probe client");
    loop {
        let last = match probe.get(server.url("/api/ready")).send().await {
            Ok(res) if res.status() == 200 => break,
            Ok(res) => format!("status {}: {}", res.status(), res.text().await.unwrap_or_default()),
            Err(err) => format!("transport: {}", chain(&err)),
        };
        assert!(
            started.elapsed() < READY_WITHIN,
            "{label}: /api/ready not 200 within {READY_WITHIN:?} of the restart; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    assert!(elapsed <= READY_WITHIN, "{label}: /api/ready took {elapsed:?} (limit {READY_WITHIN:?})");
    (server, elapsed)
}

/// Lists every record of the collection, page by page; `totalItems` must be the same on every
/// page and equal the number of records listed.
async fn list_all(server: &Server, token: &str, label: &str, problems: &mut Vec<String>) -> Vec<Value> {
    let mut items: Vec<Value> = Vec::new();
    let mut totals = BTreeSet::new();
    let mut page = 1;
    loop {
        let path = format!("/api/collections/{COLLECTION}/records?perPage=1000&page={page}&sort=id");
        let reply = server.call("GET", &path, Some(token), None).await;
        assert_eq!(reply.status, 200, "{label}: list page {page}: {}", reply.text);
        let batch = reply.body["items"].as_array().cloned().unwrap_or_default();
        totals.insert(reply.body["totalItems"].as_i64());
        items.extend(batch.iter().cloned());
        if batch.len() < 1000 {
            if totals.len() != 1 || !totals.contains(&Some(items.len() as i64)) {
                problems.push(format!(
                    "totalItems {totals:?} over {page} page(s), but {} records listed",
                    items.len()
                ));
            }
            return items;
        }
        page += 1;
    }
}

/// Checks the data directory's records against the history; panics with every problem found.
async fn verify(
    server: &Server,
    token: &str,
    history: &mut History,
    label: &str,
    rng: &mut StdRng,
) -> Verified {
    let mut problems: Vec<String> = Vec::new();
    let items = list_all(server, token, label, &mut problems).await;

    let mut by_title: BTreeMap<String, Value> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for item in &items {
        let id = item["id"].as_str().unwrap_or_default().to_string();
        if !ids.insert(id.clone()) {
            problems.push(format!("record id {id} listed twice"));
        }
        let Some(title) = item["title"].as_str() else {
            problems.push(format!("record without a title: {item}"));
            continue;
        };
        if by_title.insert(title.to_string(), item.clone()).is_some() {
            problems.push(format!("title {title} stored twice (a create applied twice?)"));
        }
    }

    // Every listed record was attempted, is not a refused create, and holds what was sent.
    let mut indeterminate_present = 0;
    for (title, item) in &by_title {
        let Some(attempt) = history.attempts.get(title) else {
            problems.push(format!("record never attempted by any client: {item}"));
            continue;
        };
        if let Some(id) = &attempt.id {
            if item["id"].as_str() != Some(id.as_str()) {
                problems.push(format!("{title}: id {} but the client chose {id}", item["id"]));
            }
        }
        if item["note"].as_str() != Some(attempt.note.as_str()) {
            problems
                .push(format!("{title} (cycle {}): note differs from what was sent: {item}", attempt.cycle));
        }
        match &attempt.outcome {
            Outcome::Acked(_) => {}
            Outcome::Rejected(status, text) => problems.push(format!(
                "{title} (cycle {}): present although its create got {status} ({text})",
                attempt.cycle
            )),
            Outcome::Indeterminate { .. } => indeterminate_present += 1,
        }
    }

    // Every acknowledged create is present with exactly the acknowledged JSON.
    let mut acked_checked = 0;
    for (title, attempt) in &history.attempts {
        let Outcome::Acked(acked) = &attempt.outcome else { continue };
        acked_checked += 1;
        match by_title.get(title) {
            None => problems.push(format!(
                "LOST acknowledged write {title} (cycle {}, id {}): {acked}",
                attempt.cycle, acked["id"]
            )),
            Some(found) if found != acked => problems.push(format!(
                "acknowledged write {title} (cycle {}) changed:\n  acked: {acked}\n  found: {found}",
                attempt.cycle
            )),
            Some(_) => {}
        }
    }

    // Records seen after an earlier restart are committed: they must stay, unchanged.
    for (title, seen) in &history.observed {
        match by_title.get(title) {
            None => problems.push(format!("record seen after an earlier restart is gone: {seen}")),
            Some(found) if found != seen => problems
                .push(format!("record changed since an earlier restart:\n  was: {seen}\n  now: {found}")),
            Some(_) => {}
        }
    }

    // Spot-check the single-record endpoint on a few acknowledged records.
    let acked: Vec<&Value> = history
        .attempts
        .values()
        .filter_map(|a| match &a.outcome {
            Outcome::Acked(v) => Some(v),
            _ => None,
        })
        .collect();
    for _ in 0..acked.len().min(20) {
        let want = acked[rng.gen_range(0..acked.len())];
        let id = want["id"].as_str().unwrap_or_default();
        let reply = server
            .call("GET", &format!("/api/collections/{COLLECTION}/records/{id}"), Some(token), None)
            .await;
        if reply.status != 200 || &reply.body != want {
            problems.push(format!("view {id}: status {}, body {} (acked {want})", reply.status, reply.text));
        }
    }

    if !problems.is_empty() {
        let shown: Vec<&String> = problems.iter().take(MAX_REPORTED).collect();
        panic!(
            "{label}: {} problem(s) after restart ({} records listed, {} acknowledged writes checked):\n{}",
            problems.len(),
            items.len(),
            acked_checked,
            shown.iter().map(|p| format!("- {p}")).collect::<Vec<_>>().join("\n")
        );
    }
    history.observed.extend(by_title);
    Verified { acked_checked, records_found: items.len(), indeterminate_present }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_concurrent_creates_loses_no_acknowledged_write() {
    let began = Instant::now();
    let seed = seed_for("sigkill");
    let cycles = knobs().cycles;
    let mut rng = StdRng::seed_from_u64(seed);
    // Spot-check picks draw a varying amount of randomness; keep them off the plan's stream.
    let mut picks = StdRng::seed_from_u64(seed.rotate_left(32));
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path().to_path_buf();

    let mut server = Server::start_in(&dir, StartOptions::default());
    let mut token = server.setup_superuser().await;
    create_collection(&server, &token).await;

    let mut history = History::default();
    let mut checked_total = 0usize;
    let mut last = Verified { acked_checked: 0, records_found: 0, indeterminate_present: 0 };
    let mut slowest_ready = Duration::ZERO;
    for cycle in 0..cycles {
        let label = format!("seed {seed}, cycle {cycle}");
        let delay = Duration::from_millis(rng.gen_range(KILL_DELAY_MS));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = start_load(&server, &token, seed, cycle, &mut rng, &stop);
        tokio::time::sleep(delay).await;
        server.kill9();
        stop.store(true, Ordering::Release);
        history.absorb(join_load(tasks).await);
        let (acked, rejected, unknown) = history.count(cycle);
        // Every other cycle, `backbone check --repair` verifies the killed file before the
        // restart (the other cycles leave the recovery to the server's own open).
        if cycle % 2 == 1 {
            common::run_check(&dir, true);
        }

        let (restarted, ready_after) = restart(&dir, &label).await;
        server = restarted;
        slowest_ready = slowest_ready.max(ready_after);
        token = server.login().await;
        last = verify(&server, &token, &mut history, &label, &mut picks).await;
        checked_total += last.acked_checked;
        println!(
            "cycle {cycle}: killed after {delay:?}; acked {acked}, rejected {rejected}, indeterminate {unknown} [{}]; \
             ready after {ready_after:?}; {} records, {} acked checked, {} indeterminate present",
            history.reasons(cycle),
            last.records_found, last.acked_checked, last.indeterminate_present
        );
    }
    server.kill9();
    common::run_check(&dir, true);
    println!(
        "crash summary: seed {seed}, {cycles} SIGKILL cycles, {} writes acknowledged, {checked_total} acknowledged-write \
         checks, {} records found, {} indeterminate present, slowest ready {slowest_ready:?}, {:.1} s",
        history.acked(),
        last.records_found,
        last.indeterminate_present,
        began.elapsed().as_secs_f64()
    );
    assert!(history.acked() > 0, "seed {seed}: no create was acknowledged; the load did not run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_during_concurrent_creates_exits_cleanly_and_keeps_acknowledged_writes() {
    let began = Instant::now();
    let seed = seed_for("sigterm");
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5167_7e53);
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path().to_path_buf();

    let server = Server::start_in(&dir, StartOptions::default());
    let token = server.setup_superuser().await;
    create_collection(&server, &token).await;

    let label = format!("seed {seed}, sigterm");
    let delay = Duration::from_millis(rng.gen_range(KILL_DELAY_MS));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = start_load(&server, &token, seed, 0, &mut rng, &stop);
    tokio::time::sleep(delay).await;
    // `terminate` polls with blocking sleeps; keep it off the runtime's workers.
    let (mut server, code) = tokio::task::spawn_blocking(move || {
        let mut server = server;
        let code = server.terminate();
        (server, code)
    })
    .await
    .expect("terminate task");
    stop.store(true, Ordering::Release);
    let mut history = History::default();
    history.absorb(join_load(tasks).await);
    server.kill9();
    assert_eq!(code, Some(0), "{label}: SIGTERM must end the server with exit status 0");
    let (acked, rejected, unknown) = history.count(0);

    let (server, ready_after) = restart(&dir, &label).await;
    let token = server.login().await;
    let mut picks = StdRng::seed_from_u64(seed.rotate_left(32));
    let found = verify(&server, &token, &mut history, &label, &mut picks).await;
    println!(
        "sigterm summary: seed {seed}, terminated after {delay:?}, exit 0; acked {acked}, rejected {rejected}, \
         indeterminate {unknown} [{}]; ready after {ready_after:?}; {} acknowledged writes checked, {} records found, \
         {} indeterminate present, {:.1} s",
        history.reasons(0),
        found.acked_checked,
        found.records_found,
        found.indeterminate_present,
        began.elapsed().as_secs_f64()
    );
    assert!(acked > 0, "{label}: no create was acknowledged; the load did not run");
}

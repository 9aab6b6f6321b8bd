//! Job-queue crash test: a child server runs `test.effect` jobs (each appends `(job id,
//! attempt) → pid` to the `job_effects` table in its completing transaction, and first logs
//! `start <id> <attempt> <pid>` to a file) while clients enqueue; the server is SIGKILLed at
//! random moments, many times, on the same data directory. At the end, with every job
//! drained and the server stopped, the test opens the data file and checks:
//! - every enqueue acknowledged with 202 exists and is `completed`;
//! - every completed job has exactly one committed effect, from its final attempt;
//! - no job started again after the process that completed it (no completed job ran again);
//! - a job started more than once only across processes that were killed while it ran
//!   (duplicates only for jobs running at a kill), never twice in one process.
//!
//! Knobs: `BACKBONE_JOBS_CRASH_CYCLES` (default 10), `BACKBONE_JOBS_CRASH_SEED`.
//! Run: `cargo test --test jobs_crash -- --nocapture`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Server, StartOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const CLIENTS: usize = 4;

fn options() -> StartOptions {
    StartOptions {
        env: vec![
            ("BACKBONE_JOBS_TEST_KINDS".into(), "true".into()),
            ("BACKBONE_JOBS_DEFAULT_CONCURRENCY".into(), "16".into()),
        ],
        args: vec![],
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.trim().parse().unwrap_or_else(|_| panic!("{name} must be a number")))
}

async fn client_loop(
    base: String,
    token: String,
    log: String,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> (Vec<u64>, usize) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut acked = Vec::new();
    let mut other = 0usize;
    while !stop.load(Ordering::Acquire) {
        let body = json!({"kind": "test.effect", "payload": {"log": log, "ms": rng.gen_range(0..40)}});
        let sent =
            client.post(format!("{base}/api/jobs")).header("Authorization", &token).json(&body).send().await;
        match sent {
            Ok(res) if res.status().as_u16() == 202 => match res.json::<Value>().await {
                Ok(v) => acked.push(v["id"].as_str().and_then(|s| s.parse().ok()).expect("job id")),
                Err(_) => other += 1,
            },
            _ => {
                other += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    (acked, other)
}

async fn wait_drained(s: &Server, token: &str) -> Value {
    let started = Instant::now();
    loop {
        let r = s.call("GET", "/api/jobs/stats", Some(token), None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let states = &r.body["states"];
        let waiting: u64 = ["scheduled", "available", "running", "retrying"]
            .iter()
            .map(|k| states[*k].as_u64().unwrap_or(0))
            .sum();
        if waiting == 0 {
            return r.body;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "jobs did not drain: {}", r.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (job id, attempt) → pid of the process that completed it.
type Effects = BTreeMap<(u64, u32), u32>;
/// Job id → (state, attempt).
type JobStates = BTreeMap<u64, (String, u32)>;

/// Reads the committed effects and every job's state from the data file.
fn read_file(dir: &Path) -> (Effects, JobStates) {
    use backbone::store::{ScanControl, Store, StoreError, StoreOptions, Table};
    let store = Store::open(&dir.join("data.redb"), &StoreOptions::default()).expect("open data file");
    let result = store
        .read_blocking(|tx| {
            let mut effects = BTreeMap::new();
            tx.scan_prefix(Table::JobEffects, b"", false, None, |k, v| {
                let id = u64::from_be_bytes(k[..8].try_into().expect("key"));
                let attempt = u32::from_be_bytes(k[8..12].try_into().expect("key"));
                effects.insert((id, attempt), u32::from_be_bytes(v.try_into().expect("pid")));
                ScanControl::Continue
            })?;
            let mut jobs = BTreeMap::new();
            tx.scan_prefix(Table::Jobs, b"", false, None, |k, v| {
                let id = u64::from_be_bytes(k.try_into().expect("key"));
                let job: Value = serde_json::from_slice(v).expect("job json");
                let state = job["state"].as_str().unwrap_or_default().to_string();
                jobs.insert(id, (state, job["attempt"].as_u64().unwrap_or(0) as u32));
                ScanControl::Continue
            })?;
            Ok::<_, StoreError>((effects, jobs))
        })
        .expect("read");
    store.shutdown();
    result
}

#[tokio::test]
async fn sigkill_at_random_moments_loses_no_acknowledged_job_and_reruns_only_interrupted_ones() {
    let seed = env_u64("BACKBONE_JOBS_CRASH_SEED").unwrap_or_else(rand::random::<u64>);
    let cycles = env_u64("BACKBONE_JOBS_CRASH_CYCLES").unwrap_or(10) as usize;
    println!("jobs crash test: seed {seed} (replay with BACKBONE_JOBS_CRASH_SEED={seed}), {cycles} kills");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("starts.log").to_string_lossy().to_string();
    let mut server = Server::start_in(dir.path(), options());
    let mut token = server.setup_superuser().await;
    let mut pids: Vec<u32> = Vec::new();
    let mut killed: BTreeSet<u32> = BTreeSet::new();
    let mut acked: BTreeSet<u64> = BTreeSet::new();
    let mut indeterminate = 0usize;
    for cycle in 0..=cycles {
        pids.push(server.child.id());
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|_| {
                tokio::spawn(client_loop(
                    server.base.clone(),
                    token.clone(),
                    log.clone(),
                    rng.gen(),
                    stop.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.gen_range(200..1200))).await;
        if cycle < cycles {
            killed.insert(server.child.id());
            server.kill9();
        }
        stop.store(true, Ordering::Release);
        for task in tasks {
            let (ids, other) = task.await.expect("client");
            acked.extend(ids);
            indeterminate += other;
        }
        if cycle < cycles {
            // The job tables (ready queue, by-state, finished, unique keys) agree with the
            // jobs after every kill.
            common::run_check(dir.path(), true);
            server = Server::start_in(dir.path(), options());
            token = server.login().await;
        }
    }
    let stats = wait_drained(&server, &token).await;
    assert_eq!(server.terminate(), Some(0), "clean shutdown");
    common::run_check(dir.path(), false);
    println!(
        "acknowledged enqueues: {}, unacknowledged attempts: {indeterminate}, stats: {stats}",
        acked.len()
    );
    assert!(acked.len() > 100, "the load must enqueue a meaningful number of jobs");

    let (effects, jobs) = read_file(dir.path());
    let order: BTreeMap<u32, usize> = pids.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    let mut starts: BTreeMap<u64, Vec<(usize, u32)>> = BTreeMap::new();
    for line in std::fs::read_to_string(&log).expect("start log").lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let (id, attempt, pid) = (
            parts[1].parse::<u64>().expect("id"),
            parts[2].parse::<u32>().expect("a"),
            parts[3].parse::<u32>().expect("p"),
        );
        starts.entry(id).or_default().push((order[&pid], attempt));
    }
    let mut problems = Vec::new();
    let mut reruns = 0usize;
    for id in &acked {
        match jobs.get(id) {
            Some((state, _)) if state == "completed" => {}
            other => problems.push(format!("acknowledged job {id} is {other:?}, not completed")),
        }
    }
    for (id, (state, attempt)) in &jobs {
        if state != "completed" {
            problems.push(format!("job {id} ended {state}"));
            continue;
        }
        let committed: Vec<(&(u64, u32), &u32)> = effects.range((*id, 0)..=(*id, u32::MAX)).collect();
        if committed.len() != 1 {
            problems.push(format!("job {id} has {} committed effects (expected exactly 1)", committed.len()));
            continue;
        }
        let ((_, effect_attempt), effect_pid) = committed[0];
        if effect_attempt != attempt {
            problems.push(format!(
                "job {id}: effect from attempt {effect_attempt}, job ended at attempt {attempt}"
            ));
        }
        let completed_in = order[effect_pid];
        let runs = starts.get(id).cloned().unwrap_or_default();
        if runs.iter().any(|(inc, _)| *inc > completed_in) {
            problems.push(format!(
                "job {id} completed in process #{completed_in} but started again later: {runs:?}"
            ));
        }
        let mut per_process: BTreeMap<usize, usize> = BTreeMap::new();
        for (inc, _) in &runs {
            *per_process.entry(*inc).or_default() += 1;
        }
        if per_process.values().any(|n| *n > 1) {
            problems.push(format!("job {id} started twice in one process: {runs:?}"));
        }
        for inc in per_process.keys().filter(|inc| **inc != completed_in) {
            if !killed.contains(&pids[*inc]) {
                problems.push(format!("job {id} re-ran after process #{inc}, which was not killed"));
            }
        }
        if runs.len() > 1 {
            reruns += 1;
        }
    }
    println!(
        "jobs: {}, completed with one effect each; re-run after a kill: {reruns}; problems: {}",
        jobs.len(),
        problems.len()
    );
    assert!(
        problems.is_empty(),
        "{} problems, first: {:#?}",
        problems.len(),
        &problems[..problems.len().min(20)]
    );
}

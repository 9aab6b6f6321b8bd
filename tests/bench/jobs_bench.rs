//! Job-queue benchmark (a program, not a test): no-op jobs with every acknowledgement
//! durable (fsync'd group commits), in-process against a data file on disk.
//!
//! Phases: (1) sustained enqueue+complete throughput: producers enqueue batches while the
//! workers run them, timed until every job's completion is durable; (2) latency from the
//! enqueue call (a standalone durable enqueue) to the handler's start; (3) CPU used while
//! idle.
//!
//! Run: `cargo bench --bench jobs_bench` (knobs: `JOBS_BENCH_N` jobs for phase 1, default
//! 200000; `JOBS_BENCH_BATCH`, default 1000; `JOBS_BENCH_CONCURRENCY` (queue concurrency) and
//! `JOBS_BENCH_CLAIM` (claim batch), default 1000 each; `JOBS_BENCH_DIR`, default
//! `target/jobs-bench`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backbone::config::JobsSection;
use backbone::jobs::clock::SystemClock;
use backbone::jobs::model::JobState;
use backbone::jobs::{Done, JobSpec, Jobs, KindOptions, Registry};
use backbone::store::{Store, StoreOptions};
use serde_json::json;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// CPU seconds (user + system) used by this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn jobs_claim_batch() -> usize {
    env_usize("JOBS_BENCH_CLAIM", 1000).max(1)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The allocator the `backbone` binary ships with (`src/main.rs`), so the figures are the
/// product's. The server also runs with `MIMALLOC_PURGE_DELAY=0`; set it in the environment
/// to match that exactly.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n = env_usize("JOBS_BENCH_N", 200_000);
    let batch = env_usize("JOBS_BENCH_BATCH", 1000).max(1);
    let base = std::env::var("JOBS_BENCH_DIR").unwrap_or_else(|_| "target/jobs-bench".into());
    std::fs::create_dir_all(&base)?;
    let dir = tempfile::tempdir_in(&base)?;
    let path = dir.path().join("data.redb");
    let store = tokio::task::spawn_blocking(move || Store::open(&path, &StoreOptions::default())).await??;

    let done = Arc::new(AtomicUsize::new(0));
    let starts: Arc<Mutex<Vec<(usize, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
    let mut registry = Registry::with_builtins(false);
    let counter = done.clone();
    registry.register("bench.noop", KindOptions::default(), move |_ctx| {
        counter.fetch_add(1, Ordering::Relaxed);
        async { Done::complete() }
    });
    let seen = starts.clone();
    registry.register("bench.latency", KindOptions::default(), move |ctx| {
        let at = Instant::now();
        let seq = ctx.payload["seq"].as_u64().unwrap_or(0) as usize;
        if let Ok(mut s) = seen.lock() {
            s.push((seq, at));
        }
        async { Done::complete() }
    });
    let mut config = JobsSection::default();
    let concurrency = env_usize("JOBS_BENCH_CONCURRENCY", 1000).max(1);
    config.queues.insert("default".into(), concurrency);
    config.claim_batch = jobs_claim_batch();
    let jobs = Jobs::open(store.clone(), config, registry, Arc::new(SystemClock)).await?;
    jobs.start().await?;

    // Phase 1: sustained throughput.
    let producers = 4;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..producers {
        let jobs = jobs.clone();
        let share = n / producers + usize::from(p < n % producers);
        tasks.push(tokio::spawn(async move {
            let mut left = share;
            while left > 0 {
                let k = left.min(batch);
                let specs = (0..k).map(|i| JobSpec::new("bench.noop", json!({"i": i}))).collect();
                jobs.enqueue_many(specs).await.expect("enqueue");
                left -= k;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let enqueued_at = started.elapsed();
    while done.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Every handler ran; wait until every completion is durable.
    loop {
        let stats = jobs.stats().await?;
        if stats.states.get(JobState::Completed) == n as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let total = started.elapsed();
    println!(
        "throughput: {n} no-op jobs (enqueue batches of {batch}, {producers} producers, concurrency {concurrency}, \
         claim batch {}): \
         all enqueues durable after {:.2} s, all completions durable after {:.2} s = {:.0} jobs/s",
        jobs_claim_batch(),
        enqueued_at.as_secs_f64(),
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64()
    );

    // Phase 2: enqueue call → handler start, one standalone durable enqueue at a time,
    // with a pause between them (an idle queue waking up).
    let samples = env_usize("JOBS_BENCH_LATENCY_SAMPLES", 1000);
    let mut called: Vec<Instant> = Vec::with_capacity(samples);
    for seq in 0..samples {
        called.push(Instant::now());
        jobs.enqueue(JobSpec::new("bench.latency", json!({"seq": seq}))).await?;
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut lat: Vec<f64> = starts
        .lock()
        .map(|s| s.iter().map(|(seq, at)| at.duration_since(called[*seq]).as_secs_f64() * 1000.0).collect())
        .unwrap_or_default();
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "latency enqueue call -> handler start ({} samples): p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );

    // Phase 3: idle CPU.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu0 = cpu_seconds();
    let wall = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let used = cpu_seconds() - cpu0;
    println!(
        "idle: {:.3} CPU-seconds in {:.1} s ({:.2} % of one core)",
        used,
        wall.elapsed().as_secs_f64(),
        100.0 * used / wall.elapsed().as_secs_f64()
    );

    jobs.shutdown(Duration::from_secs(5)).await;
    tokio::task::spawn_blocking(move || store.shutdown()).await?;
    Ok(())
}

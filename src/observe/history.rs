//! Metric history in the data file: a sampler stores the key series every
//! `history_sample_secs` (kept [`FINE_KEEP_MS`], 24 h) and their 5-minute averages (kept
//! [`COARSE_KEEP_MS`], 30 days); old samples are pruned as new ones are written, so the
//! table's size is bounded. `GET /api/metrics` reads them back for the admin UI's charts
//! and the alert evaluator reads the latest values.
//!
//! Rates (`*_per_sec`) and the p99 latency are computed from the difference of the
//! in-process counters between two samples; gauges are read as they are.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::ObserveError;
use crate::app::App;
use crate::jobs::model::JobState;
use crate::store::{ScanControl, StoreError, Table, WriteTx};
use crate::util::metrics::{quantile_of, LATENCY_BUCKETS};

/// Resolution byte of the fine samples.
const FINE: u8 = 0;
/// Resolution byte of the 5-minute averages.
const COARSE: u8 = 1;
/// Length of a coarse window.
pub const COARSE_MS: i64 = 300_000;
/// How long fine samples are kept.
pub const FINE_KEEP_MS: i64 = 86_400_000;
/// How long coarse samples are kept.
pub const COARSE_KEEP_MS: i64 = 30 * 86_400_000;
/// Old samples deleted per write at most.
const PRUNE_PER_WRITE: usize = 500;
/// Most points per series in one answer.
const MAX_POINTS: i64 = 5_000;

/// Every series the sampler stores, with what it means.
pub const SERIES: [(&str, &str); 21] = [
    ("http_requests_per_sec", "HTTP requests answered per second"),
    ("http_errors_per_sec", "HTTP 5xx answers per second"),
    ("http_error_ratio", "share of HTTP answers that were 5xx (0..1)"),
    ("http_p99_ms", "99th percentile HTTP latency in milliseconds"),
    ("http_in_flight", "HTTP requests being handled"),
    ("store_commits_per_sec", "group commits per second"),
    ("store_file_bytes", "size of the data file"),
    ("jobs_waiting", "jobs scheduled, available or retrying"),
    ("jobs_running", "jobs running"),
    ("jobs_dead", "dead jobs"),
    ("jobs_oldest_waiting_secs", "age of the oldest due job not yet running"),
    ("mail_sent_per_sec", "emails accepted by the SMTP server per second"),
    ("mail_failed_per_sec", "failed email delivery attempts per second"),
    ("logins_failed_per_sec", "failed password sign-ins per second"),
    ("rate_limited_per_sec", "requests refused by rate limits per second"),
    ("process_cpu_percent", "CPU used by the server, percent of one core"),
    ("process_rss_bytes", "resident memory of the server"),
    ("host_cpu_percent", "CPU used by the host, percent"),
    ("host_memory_available_bytes", "memory available on the host"),
    ("disk_free_bytes", "free space of the data directory's disk"),
    ("search_lag", "search outbox entries not yet committed to the index"),
];

fn sample_key(resolution: u8, time_ms: i64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = resolution;
    key[1..].copy_from_slice(&u64::try_from(time_ms.max(0)).unwrap_or(0).to_be_bytes());
    key
}

fn key_time(key: &[u8]) -> i64 {
    key.get(1..9)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .and_then(|t| i64::try_from(t).ok())
        .unwrap_or(0)
}

/// Counter readings the next sample's rates are computed from.
#[derive(Debug, Clone, Default)]
struct Counters {
    at_ms: i64,
    requests: u64,
    errors: u64,
    latency: Vec<u64>,
    commits: u64,
    mail_sent: u64,
    mail_failed: u64,
    logins_failed: u64,
    rate_limited: u64,
}

fn counters(app: &App, at_ms: i64) -> Counters {
    let (requests, errors, latency) = app.observe.http().map(|h| h.totals()).unwrap_or_default();
    Counters {
        at_ms,
        requests,
        errors,
        latency,
        commits: app.store.writer_stats().commits.get(),
        mail_sent: app.mail.counters().sent.get(),
        mail_failed: app.mail.counters().failed.get(),
        logins_failed: app.auth.logins.failed.get(),
        rate_limited: app.limiter.refused.get(),
    }
}

/// Reads every series now; rates against `prev`.
async fn sample(app: &App, prev: &Counters, now: &Counters) -> Map<String, Value> {
    let secs = ((now.at_ms - prev.at_ms) as f64 / 1000.0).max(0.001);
    let rate = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
    let mut s = Map::new();
    let mut put = |name: &str, v: f64| {
        s.insert(name.to_string(), json!((v * 1000.0).round() / 1000.0));
    };
    let requests = now.requests.saturating_sub(prev.requests);
    let errors = now.errors.saturating_sub(prev.errors);
    put("http_requests_per_sec", rate(prev.requests, now.requests));
    put("http_errors_per_sec", rate(prev.errors, now.errors));
    put("http_error_ratio", if requests == 0 { 0.0 } else { errors as f64 / requests as f64 });
    let delta: Vec<u64> = now
        .latency
        .iter()
        .enumerate()
        .map(|(i, n)| n.saturating_sub(prev.latency.get(i).copied().unwrap_or(0)))
        .collect();
    put("http_p99_ms", quantile_of(&LATENCY_BUCKETS, &delta, 0.99).unwrap_or(0.0) * 1000.0);
    put("http_in_flight", app.observe.http().map(|h| h.in_flight()).unwrap_or(0) as f64);
    put("store_commits_per_sec", rate(prev.commits, now.commits));
    put("store_file_bytes", app.store.file_bytes() as f64);
    if let Ok(jobs) = app.jobs.stats().await {
        put("jobs_waiting", jobs.states.waiting() as f64);
        put("jobs_running", jobs.states.get(JobState::Running) as f64);
        put("jobs_dead", jobs.states.get(JobState::Dead) as f64);
        put("jobs_oldest_waiting_secs", jobs.oldest_waiting_ms.unwrap_or(0) as f64 / 1000.0);
    }
    put("mail_sent_per_sec", rate(prev.mail_sent, now.mail_sent));
    put("mail_failed_per_sec", rate(prev.mail_failed, now.mail_failed));
    put("logins_failed_per_sec", rate(prev.logins_failed, now.logins_failed));
    put("rate_limited_per_sec", rate(prev.rate_limited, now.rate_limited));
    let host = app.observe.host.read().await;
    put("process_cpu_percent", host.process_cpu_percent);
    put("process_rss_bytes", host.process_rss_bytes as f64);
    put("host_cpu_percent", host.host_cpu_percent);
    put("host_memory_available_bytes", host.host_memory_available_bytes as f64);
    put("disk_free_bytes", host.disk_free_bytes as f64);
    if let Ok(status) = app.search.status().await {
        put("search_lag", status.lag as f64);
    }
    s
}

/// Running sums of one coarse window.
#[derive(Debug, Default)]
struct Window {
    start_ms: i64,
    sums: BTreeMap<String, (f64, u32)>,
}

impl Window {
    fn add(&mut self, sample: &Map<String, Value>) {
        for (k, v) in sample {
            let slot = self.sums.entry(k.clone()).or_default();
            slot.0 += v.as_f64().unwrap_or(0.0);
            slot.1 += 1;
        }
    }

    fn average(&self) -> Map<String, Value> {
        self.sums
            .iter()
            .map(|(k, (sum, n))| {
                (k.clone(), json!(((sum / f64::from((*n).max(1))) * 1000.0).round() / 1000.0))
            })
            .collect()
    }
}

/// Stores one fine sample (and a finished coarse window), pruning old samples.
async fn store_sample(
    app: &App,
    at_ms: i64,
    sample: Map<String, Value>,
    coarse: Option<(i64, Map<String, Value>)>,
) -> Result<(), StoreError> {
    let fine = serde_json::to_vec(&sample).unwrap_or_default();
    let coarse = coarse.map(|(t, m)| (t, serde_json::to_vec(&m).unwrap_or_default()));
    app.store
        .write(move |tx: &mut WriteTx<'_>| -> Result<(), StoreError> {
            tx.put(Table::MetricHistory, &sample_key(FINE, at_ms), fine);
            if let Some((t, bytes)) = coarse {
                tx.put(Table::MetricHistory, &sample_key(COARSE, t), bytes);
            }
            for (resolution, keep) in [(FINE, FINE_KEEP_MS), (COARSE, COARSE_KEEP_MS)] {
                let cutoff = at_ms - keep;
                let mut doomed = Vec::new();
                tx.scan_prefix(Table::MetricHistory, &[resolution], None, |k, _| {
                    if key_time(k) >= cutoff || doomed.len() >= PRUNE_PER_WRITE {
                        return ScanControl::Stop;
                    }
                    doomed.push(k.to_vec());
                    ScanControl::Continue
                })?;
                for k in doomed {
                    tx.delete(Table::MetricHistory, &k);
                }
            }
            Ok(())
        })
        .await
}

/// The sampler: runs until `stop` fires.
pub async fn run(app: Arc<App>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let every = Duration::from_secs(app.config.observe.history_sample_secs.max(1));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut prev = counters(&app, chrono::Utc::now().timestamp_millis());
    let mut window = Window::default();
    // The first tick fires at once; skip it so the first rates cover a whole interval.
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        let now = counters(&app, now_ms);
        let s = sample(&app, &prev, &now).await;
        prev = now;
        let start = now_ms - now_ms.rem_euclid(COARSE_MS);
        let finished = if window.start_ms != start && !window.sums.is_empty() {
            let done = (window.start_ms, window.average());
            window = Window { start_ms: start, ..Window::default() };
            Some(done)
        } else {
            window.start_ms = start;
            None
        };
        window.add(&s);
        if let Err(err) = store_sample(&app, now_ms, s, finished).await {
            tracing::warn!(error = %err, "metric history sample not stored");
            continue;
        }
        if let Err(err) = super::alerts::evaluate(&app).await {
            tracing::warn!(error = %err, "alert rules not evaluated");
        }
    }
}

/// A `GET /api/metrics` query.
#[derive(Debug, Clone)]
pub struct Query {
    pub series: Vec<String>,
    pub from_ms: i64,
    pub to_ms: i64,
    /// Point spacing in seconds; 0 chooses one.
    pub step_secs: i64,
}

/// The latest fine sample (for the alert evaluator and tests).
pub async fn latest(app: &App) -> Result<Option<(i64, Map<String, Value>)>, StoreError> {
    app.store
        .read(|tx| {
            let mut found = None;
            tx.scan_prefix(Table::MetricHistory, &[FINE], true, None, |k, v| {
                if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(v) {
                    found = Some((key_time(k), m));
                }
                ScanControl::Stop
            })?;
            Ok::<_, StoreError>(found)
        })
        .await
}

/// Points of the asked series, averaged per step.
pub async fn query(app: &App, q: Query, now_ms: i64) -> Result<Value, ObserveError> {
    if q.series.is_empty() {
        return Err(ObserveError::BadRequest("series names at least one series (comma-separated).".into()));
    }
    for name in &q.series {
        if !SERIES.iter().any(|(s, _)| s == name) {
            return Err(ObserveError::BadRequest(format!(
                "Unknown series {name:?}; GET /api/metrics lists them."
            )));
        }
    }
    if q.from_ms > q.to_ms {
        return Err(ObserveError::BadRequest("from must not be after to.".into()));
    }
    if q.step_secs < 0 {
        return Err(ObserveError::BadRequest("step must be a positive number of seconds.".into()));
    }
    let span = q.to_ms - q.from_ms;
    let fine_secs = i64::try_from(app.config.observe.history_sample_secs).unwrap_or(10);
    let mut step_ms = if q.step_secs > 0 { q.step_secs * 1000 } else { (span / 300).max(fine_secs * 1000) };
    let coarse = q.from_ms < now_ms - FINE_KEEP_MS || step_ms >= COARSE_MS;
    if coarse {
        step_ms = step_ms.max(COARSE_MS);
    }
    if span / step_ms.max(1) > MAX_POINTS {
        return Err(ObserveError::BadRequest(format!(
            "from..to holds more than {MAX_POINTS} steps; use a larger step."
        )));
    }
    let resolution = if coarse { COARSE } else { FINE };
    let (from, to, names) = (q.from_ms, q.to_ms, q.series.clone());
    let buckets = app
        .store
        .read(move |tx| {
            // step start → series → (sum, n)
            let mut buckets: BTreeMap<i64, Vec<(f64, u32)>> = BTreeMap::new();
            let after = sample_key(resolution, from.saturating_sub(1));
            tx.scan_prefix(Table::MetricHistory, &[resolution], false, Some(after.as_slice()), |k, v| {
                let t = key_time(k);
                if t > to {
                    return ScanControl::Stop;
                }
                let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(v) else {
                    return ScanControl::Continue;
                };
                let slot =
                    buckets.entry(t - t.rem_euclid(step_ms)).or_insert_with(|| vec![(0.0, 0); names.len()]);
                for (i, name) in names.iter().enumerate() {
                    if let (Some(v), Some(acc)) = (m.get(name).and_then(Value::as_f64), slot.get_mut(i)) {
                        acc.0 += v;
                        acc.1 += 1;
                    }
                }
                ScanControl::Continue
            })?;
            Ok::<_, StoreError>(buckets)
        })
        .await?;
    let mut series = Map::new();
    for (i, name) in q.series.iter().enumerate() {
        let points: Vec<Value> = buckets
            .iter()
            .filter_map(|(t, sums)| {
                let (sum, n) = sums.get(i).copied()?;
                (n > 0).then(|| json!([t / 1000, ((sum / f64::from(n)) * 1000.0).round() / 1000.0]))
            })
            .collect();
        series.insert(name.clone(), Value::Array(points));
    }
    Ok(json!({
        "from": q.from_ms / 1000,
        "to": q.to_ms / 1000,
        "step": step_ms / 1000,
        "resolution": if coarse { COARSE_MS / 1000 } else { fine_secs },
        "series": series,
    }))
}

/// The series the sampler stores, with descriptions.
pub fn catalog() -> Value {
    Value::Array(SERIES.iter().map(|(name, help)| json!({"name": name, "help": help})).collect())
}

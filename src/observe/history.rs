//! Metric history in the data file: a sampler stores the key series every
//! `history_sample_secs` (kept [`FINE_KEEP_MS`], 24 h) and their 5-minute averages (kept
//! [`COARSE_KEEP_MS`], 30 days); old samples are pruned as new ones are written, so the
//! table's size is bounded. `GET /api/metrics` reads them back for the admin UI's charts
//! and the alert evaluator reads the latest values.
//!
//! Rates (`*_per_sec`) and the p99 latency are computed from the difference of the
//! in-process counters between two samples; gauges are read as they are.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::alerts::Alerts;
use super::host::HostReading;
use super::ObserveError;
use crate::jobs::{model::JobState, JobStats};
use crate::store::{ScanControl, Store, StoreError, Table, WriteTx};
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

/// What the sampler reads at one instant. The composition root fills it from the services
/// (`App::metric_reading`); counters are totals since start, and the rates of a sample are
/// the differences between two readings.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    /// When it was read (ms since 1970).
    pub at_ms: i64,
    /// HTTP requests answered, and those answered 5xx.
    pub http_requests: u64,
    pub http_errors: u64,
    /// Non-cumulative HTTP latency bucket counts over [`LATENCY_BUCKETS`] (the last is `+Inf`).
    pub http_latency: Vec<u64>,
    pub http_in_flight: i64,
    pub store_commits: u64,
    pub store_file_bytes: u64,
    /// The queue's counts; `None` when they could not be read (the job series are left out).
    pub jobs: Option<JobStats>,
    pub mail_sent: u64,
    pub mail_failed: u64,
    pub logins_failed: u64,
    pub rate_limited: u64,
    pub host: HostReading,
    /// Search outbox entries not yet committed to the index; `None` when unknown.
    pub search_lag: Option<u64>,
}

/// The series of one sample: rates over `prev..now`, gauges as `now` read them.
fn sample(prev: &Reading, now: &Reading) -> Map<String, Value> {
    let secs = ((now.at_ms - prev.at_ms) as f64 / 1000.0).max(0.001);
    let rate = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
    let mut s = Map::new();
    let mut put = |name: &str, v: f64| {
        s.insert(name.to_string(), json!((v * 1000.0).round() / 1000.0));
    };
    let requests = now.http_requests.saturating_sub(prev.http_requests);
    let errors = now.http_errors.saturating_sub(prev.http_errors);
    put("http_requests_per_sec", rate(prev.http_requests, now.http_requests));
    put("http_errors_per_sec", rate(prev.http_errors, now.http_errors));
    put("http_error_ratio", if requests == 0 { 0.0 } else { errors as f64 / requests as f64 });
    let delta: Vec<u64> = now
        .http_latency
        .iter()
        .enumerate()
        .map(|(i, n)| n.saturating_sub(prev.http_latency.get(i).copied().unwrap_or(0)))
        .collect();
    put("http_p99_ms", quantile_of(&LATENCY_BUCKETS, &delta, 0.99).unwrap_or(0.0) * 1000.0);
    put("http_in_flight", now.http_in_flight as f64);
    put("store_commits_per_sec", rate(prev.store_commits, now.store_commits));
    put("store_file_bytes", now.store_file_bytes as f64);
    if let Some(jobs) = &now.jobs {
        put("jobs_waiting", jobs.states.waiting() as f64);
        put("jobs_running", jobs.states.get(JobState::Running) as f64);
        put("jobs_dead", jobs.states.get(JobState::Dead) as f64);
        put("jobs_oldest_waiting_secs", jobs.oldest_waiting_ms.unwrap_or(0) as f64 / 1000.0);
    }
    put("mail_sent_per_sec", rate(prev.mail_sent, now.mail_sent));
    put("mail_failed_per_sec", rate(prev.mail_failed, now.mail_failed));
    put("logins_failed_per_sec", rate(prev.logins_failed, now.logins_failed));
    put("rate_limited_per_sec", rate(prev.rate_limited, now.rate_limited));
    let host = &now.host;
    put("process_cpu_percent", host.process_cpu_percent);
    put("process_rss_bytes", host.process_rss_bytes as f64);
    put("host_cpu_percent", host.host_cpu_percent);
    put("host_memory_available_bytes", host.host_memory_available_bytes as f64);
    put("disk_free_bytes", host.disk_free_bytes as f64);
    if let Some(lag) = now.search_lag {
        put("search_lag", lag as f64);
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

/// A `GET /api/metrics` query.
#[derive(Debug, Clone)]
pub struct Query {
    pub series: Vec<String>,
    pub from_ms: i64,
    pub to_ms: i64,
    /// Point spacing in seconds; 0 chooses one.
    pub step_secs: i64,
}

/// The stored history: the `metric_history` table, sampled every `sample_secs`.
#[derive(Clone)]
pub struct History {
    store: Store,
    sample_secs: u64,
}

impl History {
    pub fn new(store: Store, sample_secs: u64) -> History {
        History { store, sample_secs: sample_secs.max(1) }
    }

    /// Seconds between two samples.
    pub fn sample_secs(&self) -> u64 {
        self.sample_secs
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stores one fine sample (and a finished coarse window), pruning old samples.
    async fn store_sample(
        &self,
        at_ms: i64,
        sample: Map<String, Value>,
        coarse: Option<(i64, Map<String, Value>)>,
    ) -> Result<(), StoreError> {
        let fine = serde_json::to_vec(&sample).unwrap_or_default();
        let coarse = coarse.map(|(t, m)| (t, serde_json::to_vec(&m).unwrap_or_default()));
        self.store
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

    /// The sampler: every `sample_secs` it takes a [`Reading`] from `read`, stores the
    /// sample, then evaluates `alerts`; runs until `stop` fires.
    pub async fn run<F, R>(self, alerts: Arc<Alerts>, read: F, mut stop: tokio::sync::watch::Receiver<bool>)
    where
        F: Fn() -> R,
        R: Future<Output = Reading>,
    {
        let mut tick = tokio::time::interval(Duration::from_secs(self.sample_secs));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut prev = read().await;
        let mut window = Window::default();
        // The first tick fires at once; skip it so the first rates cover a whole interval.
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            let now = read().await;
            let now_ms = now.at_ms;
            let s = sample(&prev, &now);
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
            if let Err(err) = self.store_sample(now_ms, s, finished).await {
                tracing::warn!(error = %err, "metric history sample not stored");
                continue;
            }
            if let Err(err) = alerts.evaluate().await {
                tracing::warn!(error = %err, "alert rules not evaluated");
            }
        }
    }

    /// The latest fine sample (for the alert evaluator and tests).
    pub async fn latest(&self) -> Result<Option<(i64, Map<String, Value>)>, StoreError> {
        self.store
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
    pub async fn query(&self, q: Query, now_ms: i64) -> Result<Value, ObserveError> {
        if q.series.is_empty() {
            return Err(ObserveError::BadRequest(
                "series names at least one series (comma-separated).".into(),
            ));
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
        let fine_secs = i64::try_from(self.sample_secs).unwrap_or(10);
        let mut step_ms =
            if q.step_secs > 0 { q.step_secs * 1000 } else { (span / 300).max(fine_secs * 1000) };
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
        let buckets = self
            .store
            .read(move |tx| {
                // step start → series → (sum, n)
                let mut buckets: BTreeMap<i64, Vec<(f64, u32)>> = BTreeMap::new();
                let after = sample_key(resolution, from.saturating_sub(1));
                tx.scan_prefix(
                    Table::MetricHistory,
                    &[resolution],
                    false,
                    Some(after.as_slice()),
                    |k, v| {
                        let t = key_time(k);
                        if t > to {
                            return ScanControl::Stop;
                        }
                        let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(v) else {
                            return ScanControl::Continue;
                        };
                        let slot = buckets
                            .entry(t - t.rem_euclid(step_ms))
                            .or_insert_with(|| vec![(0.0, 0); names.len()]);
                        for (i, name) in names.iter().enumerate() {
                            if let (Some(v), Some(acc)) =
                                (m.get(name).and_then(Value::as_f64), slot.get_mut(i))
                            {
                                acc.0 += v;
                                acc.1 += 1;
                            }
                        }
                        ScanControl::Continue
                    },
                )?;
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
}

/// The series the sampler stores, with descriptions.
pub fn catalog() -> Value {
    Value::Array(SERIES.iter().map(|(name, help)| json!({"name": name, "help": help})).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_turns_counter_differences_into_rates_and_reads_gauges_as_they_are() {
        let prev = Reading { at_ms: 10_000, http_requests: 100, mail_sent: 4, ..Reading::default() };
        let stats = JobStats { oldest_waiting_ms: Some(2_500), ..JobStats::default() };
        let now = Reading {
            at_ms: 20_000,
            http_requests: 150,
            http_errors: 5,
            mail_sent: 9,
            store_file_bytes: 4096,
            jobs: Some(stats),
            search_lag: Some(7),
            ..Reading::default()
        };
        let s = sample(&prev, &now);
        assert_eq!(s["http_requests_per_sec"], 5.0);
        assert_eq!(s["http_error_ratio"], 0.1);
        assert_eq!(s["mail_sent_per_sec"], 0.5);
        assert_eq!(s["store_file_bytes"], 4096.0);
        assert_eq!(s["jobs_waiting"], 0.0);
        assert_eq!(s["jobs_oldest_waiting_secs"], 2.5);
        assert_eq!(s["search_lag"], 7.0);
        let names: Vec<&str> = s.keys().map(String::as_str).collect();
        let all: Vec<&str> = SERIES.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, all, "one value per series, in catalog order");
        let unknown = sample(&prev, &Reading { jobs: None, search_lag: None, ..now });
        assert!(!unknown.contains_key("jobs_dead") && !unknown.contains_key("search_lag"));
    }
}

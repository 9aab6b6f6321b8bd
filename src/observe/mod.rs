//! Observability: metrics (Prometheus text and stored history), the request log, readiness
//! checks, process and host figures, the heartbeat, and alerts.
//!
//! This module owns no HTTP: `api/` calls it and maps [`ObserveError`] to problem+json.
//! Nor does it know the composition root: counters that belong to a domain (store commits,
//! job runs, mail deliveries, sign-ins, rate-limit refusals) live in that domain as plain
//! atomics built from [`crate::util::metrics`], and each domain renders its own `/metrics`
//! families; `App` puts the document together and fills the history sampler's
//! [`history::Reading`]. What this module's parts need (the store, the outboxes, a few
//! figures) is handed to them.
//!
//! # How it works
//!
//! Observability. `Observe` (on `App` as `app.observe`) holds the HTTP request metrics, the
//! request log, the host probe, the metric history and the alert rules. It owns no HTTP
//! (`api/guard.rs` feeds it, `api/observe.rs` and `api/health.rs` serve it) and does not
//! import `app`: it reads the domains, and what its parts need is handed to them by the
//! composition root (`App::render_metrics`, `App::metric_reading`, `App::readiness`).
//! - `crate::util::metrics` holds the primitives: `Counter` and `Histogram` (fixed buckets,
//!   relaxed atomics, no locks, no allocation per update) and the Prometheus text writer.
//!   `http.rs` — `RouteTable` (path → route template, built from the
//!   `.at(...)` calls of `api::routes` themselves, literals before parameters; anything else is
//!   `unmatched`), `HttpMetrics` (requests by template × method × status from closed sets,
//!   latency histograms by template × method, in-flight).
//!   Domain counters live in their domain and are built from these: `store::WriterStats`
//!   (commits, failures, batch sizes, commit latency), `jobs::RunMetrics` (runs, failures,
//!   durations), `search::SearchMetrics` (index commits and their duration, query duration,
//!   outbox entries applied, reindexed documents; the index lag and document count are read at
//!   scrape time), `mail::MailCounters`, `auth::LoginCounters`, `Limiter::refused`.
//! - `exposition.rs` — `GET /metrics`: the family order, and observe's own families (HTTP,
//!   shedding, request log, process, host). Each domain renders its own families into the one
//!   `Exposition` (`Store::render_metrics`, `Search::render_metrics`, `Jobs::render_metrics`
//!   (depth per queue and state and the oldest waiting age from the typed `Jobs::stats`),
//!   `MailCounters`, `LoginCounters`, `Limiter`), and `App::render_metrics` calls them in order.
//! - `requests.rs` — the request log (`request_log` table). The guard `try_send`s a small row
//!   (time, method, route template, status, duration, client IP, `none`/`token`/`apiKey`) to a
//!   bounded channel; a task writes what queued up every 500 ms in one group-commit write and
//!   prunes by age and by bytes in the same write (a running byte total lives in `meta`).
//!   Rows are stored in blocks of up to 256 (key: oldest row time + sequence; value: newest
//!   row time, then JSON lines), encoded on the blocking pool, so a flush costs one key per
//!   block, and retention drops whole blocks.
//!   A full channel drops rows and counts them. Listing (filters, paging) and per-status-class
//!   stats scan newest-first within the time range.
//! - `history.rs` — `History` and its sampler: every `history_sample_secs` it takes a typed
//!   `Reading` (counters and gauges, filled by `App::metric_reading`), computes the series in
//!   `SERIES` (rates and the p99 from counter deltas; gauges as read), stores them as one row
//!   (`metric_history`, resolution 0), keeps 5-minute averages (resolution 1), prunes 24 h /
//!   30 days, then evaluates the alert rules. `query` averages rows per step for `GET /api/metrics`.
//! - `alerts.rs` — `Alerts` (the store, the history, the mail and webhook outboxes, the public
//!   URL for links): rules (`alert_rules`, state in the same row: ok → pending → firing;
//!   defaults include "search index lagging", `search_lag` > 1000 for 2 minutes, seeded once
//!   also into data files seeded before it existed),
//!   `step` (the pure state machine: duration, cooldown, notify pairs; a rule with emails or
//!   webhooks notifies), `evaluate` (writes state changes, history rows (`alert_history`), the
//!   emails and the webhook deliveries in one transaction, through `Mail::enqueue_in` and
//!   `Webhooks::enqueue_in`), default rules seeded once, and the `alerts.check` job kind. A
//!   rule's `webhooks` (≤ 5 URLs) are checked against the target policy when saved; its
//!   signing secret lives in `webhook_secrets` (`alert/<rule id>`; generated when the rule first
//!   gets webhooks and shown once, or chosen with the write-only `webhookSecret`); the rule
//!   keeps a `webhookSecretHint` and `firingSince` (for the resolve payload). A body is a
//!   `RuleInput` (`util::invalid::parse_object`, unknown fields refused); each field keeps a
//!   wrong type as its own error, and `apply_input` collects them with `util::invalid::Collector`.
//! - `health.rs` — readiness checks: storage writable (probe write, 2 s), queue running, disk
//!   free ≥ `ready_min_disk_free_mb`, search indexer running with its last commit good (the
//!   figures arrive as a `Readiness` that `App::readiness` gathers).
//! - `host.rs` — `sysinfo` readings (process CPU/RSS/virtual, open fds, uptime; host CPU,
//!   memory, load; free space of the data dir's file system), refreshed at most once a second
//!   on the blocking pool.
//! - `heartbeat.rs` — `sd_notify` READY at start, WATCHDOG at half of `WATCHDOG_USEC` and the
//!   heartbeat URL GET (http, or https with the system roots), both only while the store is
//!   healthy; STOPPING at shutdown.
//! - `pressure.rs` — load shedding. Every request except `/api/health`, `/api/ready` and
//!   `/metrics` takes an admission slot (one atomic add); above `[limits] max_in_flight`
//!   running requests the guard answers 503 `overloaded` + `Retry-After: 1` after draining
//!   what the client is still sending (so it reads the answer instead of a reset). A task
//!   samples RSS from `/proc/self/statm` every 25 ms (inline: procfs never waits on a disk,
//!   and under overload the blocking pool is what is busy); from two thirds of `max_rss_mb` the slot
//!   count drops to `pressure_in_flight` (503 + `Retry-After: 2` beyond it) until RSS is
//!   below half the cap. The last third is headroom for the requests already
//!   admitted. Reduced, not zero: memory an allocator keeps after a burst must not lock
//!   clients out. Counted in `backbone_http_shed_total{reason}`.
//! - `api/held.rs` — a slot is held until a large answer has been handed to the connection:
//!   bodies resident in memory and over 64 KiB are sent in 64 KiB copies and the slot (and
//!   the original buffer) goes back with the last one; streamed bodies (file downloads) pass
//!   through and release at once. Without it, finished 3 MiB lists waiting on slow readers
//!   were counted nowhere (1 GiB peak under a 384 MiB cap).
//!
//! **Architecture invariant:** metric label values come from closed sets (route templates,
//! a fixed method list, a fixed status list); a raw path, query or id never becomes a label.
//! The request path never waits on storage for observability: the only work per request is a
//! few atomic adds and one non-blocking channel send.

pub mod alerts;
pub mod exposition;
pub mod health;
pub mod heartbeat;
pub mod history;
pub mod host;
pub mod http;
pub mod pressure;
pub mod requests;

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use crate::config::{Limits, ObserveSection};
use crate::store::{Store, StoreError};
use crate::util::invalid::Invalid;
use crate::util::net::{self, IpRange};

/// Why an observability request failed.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// A malformed query (bad time, unknown series, too many points).
    #[error("{0}")]
    BadRequest(String),
    /// Invalid input, per field.
    #[error("{0}")]
    Invalid(Invalid),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(StoreError),
    /// The server's own failure (500; the detail is logged, not answered).
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for ObserveError {
    fn from(err: StoreError) -> Self {
        ObserveError::Store(err)
    }
}

/// The observability services of a running server.
pub struct Observe {
    pub config: ObserveSection,
    http: OnceLock<http::HttpMetrics>,
    pub requests: Arc<requests::RequestLog>,
    pub host: Arc<host::Host>,
    /// Admission control: in-flight cap and memory shedding.
    pub pressure: Arc<pressure::Pressure>,
    /// The stored metric history (`GET /api/metrics`; written by its sampler).
    pub history: history::History,
    /// Alert rules over the history.
    pub alerts: Arc<alerts::Alerts>,
    scrapers: Vec<IpRange>,
}

/// Where alert notifications go, and the URL their emails link to.
pub struct Notifiers {
    pub mail: crate::mail::Mail,
    pub webhooks: crate::webhooks::Webhooks,
    pub public_url: alerts::PublicUrl,
}

impl Observe {
    pub fn new(
        store: Store,
        dir: &Path,
        config: &ObserveSection,
        limits: &Limits,
        notifiers: Notifiers,
    ) -> Result<Observe, String> {
        let history = history::History::new(store.clone(), config.history_sample_secs);
        let alerts =
            alerts::Alerts::new(history.clone(), notifiers.mail, notifiers.webhooks, notifiers.public_url);
        let requests = requests::RequestLog::new(
            store,
            config.request_log,
            config.request_log_keep_secs,
            config.request_log_max_mb.saturating_mul(1 << 20),
        );
        Ok(Observe {
            config: config.clone(),
            http: OnceLock::new(),
            requests: Arc::new(requests),
            host: Arc::new(host::Host::new(dir)),
            pressure: Arc::new(pressure::Pressure::new(limits)),
            history,
            alerts: Arc::new(alerts),
            scrapers: config.metrics_allowed_ips.clone(),
        })
    }

    /// Installs the route templates of the HTTP API (once, when the routes are built).
    pub fn set_routes(&self, templates: &[&str]) {
        let _ = self.http.set(http::HttpMetrics::new(http::RouteTable::new(templates)));
    }

    /// The HTTP request metrics, once the routes are installed.
    pub fn http(&self) -> Option<&http::HttpMetrics> {
        self.http.get()
    }

    /// True when `ip` may read `/metrics` without credentials.
    pub fn is_scraper(&self, ip: Option<IpAddr>) -> bool {
        ip.is_some_and(|ip| net::any_contains(&self.scrapers, ip))
    }
}

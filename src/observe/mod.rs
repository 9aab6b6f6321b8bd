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

//! Observability: metrics (Prometheus text and stored history), the request log, readiness
//! checks, process and host figures, the heartbeat, and the audit log.
//!
//! This module owns no HTTP: `api/` calls it and maps [`ObserveError`] to problem+json.
//! Counters that belong to a domain (store commits, job runs, mail deliveries, sign-ins,
//! rate-limit refusals) live in that domain as plain atomics built from [`crate::util::metrics`]; this
//! module reads them when it renders or samples.

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
use crate::util::net::{self, IpRange};

/// Why an observability request failed.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// A malformed query (bad time, unknown series, too many points).
    #[error("{0}")]
    BadRequest(String),
    /// Invalid input, per field.
    #[error("invalid input")]
    Invalid(crate::records::FieldErrors),
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
    scrapers: Vec<IpRange>,
}

impl Observe {
    pub fn new(
        store: Store,
        dir: &Path,
        config: &ObserveSection,
        limits: &Limits,
    ) -> Result<Observe, String> {
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

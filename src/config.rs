//! One `Config`, layered: built-in defaults < `backbone.toml` < `BACKBONE_*` environment
//! variables < command-line flags.
//!
//! The file is `<dir>/backbone.toml` unless `--config` names another. Unknown keys in the
//! file and unknown `BACKBONE_*` variables are errors that name the key, so a typo never
//! silently falls back to a default. Environment names are the key path in upper case
//! joined by `_`: `[limits] max_body_bytes` is `BACKBONE_LIMITS_MAX_BODY_BYTES`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::util::net::IpRange;

/// Variables read by the CLI itself rather than mapped onto config keys.
const CLI_VARIABLES: [&str; 2] = ["BACKBONE_DIR", "BACKBONE_CONFIG"];

/// Everything the server can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP API listens on.
    pub http: String,
    /// URL clients reach the server at (for links such as the setup link); derived from
    /// `http` when empty.
    pub public_url: String,
    /// Log filter, `tracing` env-filter syntax (`info`, `backbone=debug,poem=warn`).
    pub log: String,
    /// Log format: `text` or `json`.
    pub log_format: String,
    pub limits: Limits,
    pub store: StoreSection,
    pub auth: AuthSection,
    pub jobs: JobsSection,
    pub rate_limits: RateLimits,
    pub cors: CorsSection,
    pub mail: MailSection,
    pub observe: ObserveSection,
    pub files: FilesSection,
    pub webhooks: WebhooksSection,
    pub realtime: RealtimeSection,
}

/// Realtime (server-sent events) and its change feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RealtimeSection {
    /// Seconds a change stays in the feed, so a reconnecting client can catch up.
    pub retention_secs: u64,
    /// Most changes kept in the feed (the oldest go first).
    pub retention_events: u64,
    /// Events queued for one client; a client that falls this far behind is disconnected
    /// (it can resume with Last-Event-ID).
    pub client_queue: usize,
    /// Seconds without an event after which a client is closed (PocketBase: 5 minutes).
    pub idle_timeout_secs: u64,
    /// Most clients connected at once.
    pub max_clients: usize,
}

impl Default for RealtimeSection {
    fn default() -> Self {
        RealtimeSection {
            retention_secs: 24 * 3600,
            retention_events: 100_000,
            client_queue: 1024,
            idle_timeout_secs: 300,
            max_clients: 20_000,
        }
    }
}

/// Outbound webhooks (alert notifications; `webhooks::deliver`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksSection {
    /// Deliver webhooks. Off: each attempt fails with "webhook delivery is disabled" and is
    /// retried (then dead and replayable), so a copy of production data on a staging box
    /// does not call production's receivers.
    pub enabled: bool,
    /// Allow targets on loopback, private (RFC 1918), link-local (cloud metadata), CGNAT,
    /// unique-local and other non-public addresses. Off by default: a webhook URL must not
    /// reach into the server's own network.
    pub allow_private_targets: bool,
    /// Non-public addresses or CIDR ranges allowed even so (a receiver on the LAN), e.g.
    /// `["192.168.1.20", "10.0.5.0/24"]`.
    pub allowed_private_ranges: Vec<IpRange>,
    /// Seconds allowed for connecting, and for the whole request and response.
    pub timeout_secs: u64,
    /// Attempts of one delivery before it is dead (replayable from `/api/jobs`).
    pub max_attempts: u32,
    /// First retry delay in milliseconds; doubles per attempt up to `[jobs] backoff_max_ms`
    /// (defaults: 30 s, 1 min, 2 min, ... about an hour over 8 attempts).
    pub backoff_base_ms: u64,
}

impl Default for WebhooksSection {
    fn default() -> Self {
        WebhooksSection {
            enabled: true,
            allow_private_targets: false,
            allowed_private_ranges: Vec::new(),
            timeout_secs: 10,
            max_attempts: 8,
            backoff_base_ms: 30_000,
        }
    }
}

/// Uploads, downloads and image variants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilesSection {
    /// Largest accepted multipart (upload) request body, in bytes, checked on the stream.
    pub max_upload_bytes: u64,
    /// Seconds a file token (`POST /api/files/token`) stays valid.
    pub token_secs: u64,
    /// Largest image side (pixels) the variant decoder accepts.
    pub max_image_side: u32,
    /// Most memory one image decode may allocate, in MiB. With `[limits] max_rss_mb` set,
    /// all decodes at once share a quarter of that cap, and one decode gets at most that
    /// (`files::thumbs::DecodeBudget`).
    pub max_decode_mb: u64,
    /// Variants produced at once (each decode is CPU- and memory-bound).
    pub thumb_workers: usize,
}

impl Default for FilesSection {
    fn default() -> Self {
        FilesSection {
            max_upload_bytes: 32 << 20,
            token_secs: 180,
            max_image_side: 16_384,
            max_decode_mb: 512,
            thumb_workers: 2,
        }
    }
}

/// Metrics, the request log, readiness, history and the heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObserveSection {
    /// Count request metrics and serve `GET /metrics` (Prometheus text).
    pub metrics: bool,
    /// Addresses (IPs or CIDR ranges) that may read `/metrics` without credentials
    /// (a Prometheus scraper). Superusers and API keys with `metrics.read` always may.
    pub metrics_allowed_ips: Vec<IpRange>,
    /// Store one request log row per answered request (`GET /api/logs`).
    pub request_log: bool,
    /// Request log rows older than this many seconds are deleted.
    pub request_log_keep_secs: u64,
    /// The request log is kept below this many MiB (oldest rows go first).
    pub request_log_max_mb: u64,
    /// `/api/ready` fails while the data directory's disk has less free space (MiB).
    pub ready_min_disk_free_mb: u64,
    /// Seconds between metric history samples (kept 24 h; 5-minute averages kept 30 days).
    /// The alert rules are evaluated after every sample.
    pub history_sample_secs: u64,
    /// Dead-man's-switch: a URL fetched (GET) every `heartbeat_secs` while the server is
    /// healthy, so an external monitor notices when it stops. Empty: off.
    pub heartbeat_url: String,
    /// Seconds between heartbeat pings.
    pub heartbeat_secs: u64,
}

impl Default for ObserveSection {
    fn default() -> Self {
        ObserveSection {
            metrics: true,
            metrics_allowed_ips: Vec::new(),
            request_log: true,
            request_log_keep_secs: 604_800,
            request_log_max_mb: 256,
            ready_min_disk_free_mb: 100,
            history_sample_secs: 10,
            heartbeat_url: String::new(),
            heartbeat_secs: 60,
        }
    }
}

/// Per-client request limits (token buckets). A limit is `"N/Ds"`: N requests, refilled
/// evenly over D seconds (bursts up to N).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    /// Off only for benchmarks or behind a proxy that limits already.
    pub enabled: bool,
    /// Every request of one client IP.
    pub global: Rate,
    /// Sign-in, OTP, password-reset and verification requests of one client IP.
    pub auth_per_ip: Rate,
    /// Sign-in attempts for one identity (collection + email), from any IP.
    pub auth_per_identity: Rate,
    /// Verification, password-reset and one-time-code emails to one address, from any IP.
    pub mail_per_account: Rate,
    /// Extra limits per client IP by path prefix, e.g. `"/api/batch" = "20/1s"`.
    pub rules: BTreeMap<String, Rate>,
    /// Proxies (IP addresses or CIDR ranges) whose `X-Forwarded-For` names the client.
    /// Empty: the connection's peer address is the client.
    pub trusted_proxies: Vec<IpRange>,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            enabled: true,
            global: Rate { count: 1000, secs: 1 },
            auth_per_ip: Rate { count: 20, secs: 60 },
            auth_per_identity: Rate { count: 10, secs: 60 },
            mail_per_account: Rate { count: 5, secs: 3600 },
            rules: BTreeMap::from([("/api/batch".to_string(), Rate { count: 50, secs: 1 })]),
            trusted_proxies: Vec::new(),
        }
    }
}

/// Cross-origin access for browser clients on other origins.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsSection {
    /// Origins (`https://app.example.com`) allowed to call the API from a browser; `"*"`
    /// allows any origin (credentials are never allowed: clients send bearer tokens).
    /// Empty: same-origin only.
    pub allowed_origins: Vec<String>,
}

/// Outgoing email: the SMTP relay, the sender and the app identity used in templates. These
/// are the defaults; `PATCH /api/settings` overrides any of them at run time (stored in the
/// data file, see `mail::settings`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailSection {
    /// Deliver email over SMTP. While off, each attempt fails with "SMTP delivery is
    /// disabled" and is retried with backoff (up to `max_attempts`, then dead and replayable).
    pub enabled: bool,
    /// SMTP relay host name or IP address.
    pub host: String,
    /// SMTP relay port (465 implicit TLS, 587 STARTTLS, 25 local relay).
    pub port: u16,
    /// `tls` (implicit TLS), `starttls` (upgrade required) or `none` (plain; local relays only).
    pub security: String,
    /// SMTP AUTH user name; empty = no authentication.
    pub username: String,
    /// SMTP AUTH password (never returned by the settings API).
    pub password: String,
    /// `PLAIN` or `LOGIN` (PocketBase's field; the strongest mechanism the server offers wins).
    pub auth_method: String,
    /// Name sent in EHLO; empty = this host's name.
    pub local_name: String,
    /// Seconds allowed for connecting (including TLS and AUTH) and for each SMTP command.
    pub timeout_secs: u64,
    /// Display name of the `From` header.
    pub sender_name: String,
    /// Address of the `From` header and the SMTP envelope sender.
    pub sender_address: String,
    /// `{{appName}}` in templates.
    pub app_name: String,
    /// `{{appURL}}` in templates; empty = `public_url`.
    pub app_url: String,
    /// Delivery attempts of one email before it is dead (temporary failures only; a 5xx
    /// reply is final at once). Retries back off as `[jobs] backoff_*` says.
    pub max_attempts: u32,
    /// Delivery log rows older than this many seconds are deleted (a few at a time, as
    /// later emails finish).
    pub keep_log_secs: u64,
}

impl Default for MailSection {
    fn default() -> Self {
        MailSection {
            enabled: false,
            host: "127.0.0.1".into(),
            port: 587,
            security: "starttls".into(),
            username: String::new(),
            password: String::new(),
            auth_method: "PLAIN".into(),
            local_name: String::new(),
            timeout_secs: 30,
            sender_name: "Backbone".into(),
            sender_address: "noreply@example.com".into(),
            app_name: "Backbone".into(),
            app_url: String::new(),
            max_attempts: 20,
            keep_log_secs: 2_592_000,
        }
    }
}

/// Request limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest accepted JSON request body, in bytes.
    pub max_body_bytes: usize,
    /// Connections idle this long are closed, in seconds.
    pub idle_timeout_secs: u64,
    /// Seconds in-flight requests get to finish on shutdown.
    pub shutdown_grace_secs: u64,
    /// Most sub-requests in one `/api/batch`.
    pub max_batch_requests: usize,
    /// Seconds a client gets to send a whole request body (slow senders get 408).
    pub body_timeout_secs: u64,
    /// Requests processed at once; more answer 503 with Retry-After (probes and
    /// `/metrics` are always answered).
    pub max_in_flight: usize,
    /// Resident memory cap in MiB (0: none). From two thirds of it on, only
    /// `pressure_in_flight` requests run at once until memory falls below half the cap;
    /// the last third is headroom for the requests already running.
    pub max_rss_mb: u64,
    /// Requests processed at once while memory is under pressure (see `max_rss_mb`).
    pub pressure_in_flight: usize,
    /// Milliseconds one list or search request may spend evaluating filters and rules;
    /// a request that needs more answers 400 (add an index or narrow the filter).
    pub query_budget_ms: u64,
}

/// Storage tuning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// Page cache size in MiB.
    pub cache_mb: usize,
    /// Most writes in one group commit.
    pub max_batch: usize,
}

/// Authentication settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// Password hashes computed at once (each takes ~19 MiB and ~50 ms of one core).
    pub hash_concurrency: usize,
}

/// The background job queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsSection {
    /// Run job workers and cron in `serve` (off: jobs are only stored).
    pub workers: bool,
    /// Jobs of one queue running at once, for queues not listed in `queues`.
    pub default_concurrency: usize,
    /// Attempts of a job whose kind and enqueue set none.
    pub default_max_attempts: u32,
    /// Seconds a job may run before it is cancelled and counted as failed.
    pub default_timeout_secs: u64,
    /// First retry delay in milliseconds; doubles per attempt, plus up to 10 % jitter.
    pub backoff_base_ms: u64,
    /// Longest retry delay in milliseconds.
    pub backoff_max_ms: u64,
    /// Jobs claimed in one transaction (per queue).
    pub claim_batch: usize,
    /// Completed jobs are deleted this many seconds after finishing.
    pub keep_completed_secs: u64,
    /// Dead and cancelled jobs are deleted this many seconds after finishing.
    pub keep_failed_secs: u64,
    /// Register the `sleep`, `fail` and `test.effect` kinds (tests and benchmarks only).
    pub test_kinds: bool,
    /// Concurrency per named queue.
    pub queues: BTreeMap<String, usize>,
}

impl Default for JobsSection {
    fn default() -> Self {
        JobsSection {
            workers: true,
            default_concurrency: 10,
            default_max_attempts: 20,
            default_timeout_secs: 300,
            backoff_base_ms: 1000,
            backoff_max_ms: 3_600_000,
            claim_batch: 512,
            keep_completed_secs: 86_400,
            keep_failed_secs: 604_800,
            test_kinds: false,
            queues: BTreeMap::from([("default".to_string(), 10)]),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http: "127.0.0.1:8080".into(),
            public_url: String::new(),
            log: "info".into(),
            log_format: "text".into(),
            limits: Limits::default(),
            store: StoreSection::default(),
            realtime: RealtimeSection::default(),
            auth: AuthSection::default(),
            jobs: JobsSection::default(),
            rate_limits: RateLimits::default(),
            cors: CorsSection::default(),
            mail: MailSection::default(),
            observe: ObserveSection::default(),
            files: FilesSection::default(),
            webhooks: WebhooksSection::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1 << 20,
            idle_timeout_secs: 60,
            shutdown_grace_secs: 10,
            max_batch_requests: 50,
            body_timeout_secs: 30,
            max_in_flight: 1024,
            max_rss_mb: 1024,
            pressure_in_flight: 32,
            query_budget_ms: 5000,
        }
    }
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection { cache_mb: 64, max_batch: 1024 }
    }
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection { hash_concurrency: 2 }
    }
}

/// Why a configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("unknown environment variable {0}; see packaging/backbone.example.toml for the keys")]
    UnknownVariable(String),
    #[error("invalid value for {name}: {message}")]
    Value { name: String, message: String },
}

/// Flags that override everything else.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub http: Option<String>,
    pub log_format: Option<String>,
}

impl Config {
    /// Builds the layered configuration.
    pub fn load(
        dir: &Path,
        config_file: Option<&Path>,
        env: &BTreeMap<String, String>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut config = match config_file {
            Some(path) => Config::from_file(path)?,
            None => {
                let default_path = dir.join("backbone.toml");
                if default_path.exists() {
                    Config::from_file(&default_path)?
                } else {
                    Config::default()
                }
            }
        };
        config.apply_env(env)?;
        if let Some(http) = &overrides.http {
            config.http = http.clone();
        }
        if let Some(format) = &overrides.log_format {
            config.log_format = format.clone();
        }
        config.check()?;
        Ok(config)
    }

    /// Parses a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Config::from_toml(&text).map_err(|message| ConfigError::File { path: path.to_path_buf(), message })
    }

    /// Parses TOML text over the defaults.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    fn apply_env(&mut self, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
        let mut tree = toml::Value::try_from(&*self)
            .map_err(|e| ConfigError::Value { name: "config".into(), message: e.to_string() })?;
        for (name, raw) in env {
            let Some(rest) = name.strip_prefix("BACKBONE_") else {
                continue;
            };
            if CLI_VARIABLES.contains(&name.as_str()) {
                continue;
            }
            let slot =
                find_slot(&mut tree, rest).ok_or_else(|| ConfigError::UnknownVariable(name.clone()))?;
            *slot = match slot {
                toml::Value::Integer(_) => {
                    toml::Value::Integer(raw.trim().parse().map_err(|_| ConfigError::Value {
                        name: name.clone(),
                        message: format!("expected a whole number, got {raw:?}"),
                    })?)
                }
                toml::Value::Boolean(_) => {
                    toml::Value::Boolean(raw.trim().parse().map_err(|_| ConfigError::Value {
                        name: name.clone(),
                        message: format!("expected true or false, got {raw:?}"),
                    })?)
                }
                // Lists are comma-separated: BACKBONE_CORS_ALLOWED_ORIGINS=https://a,https://b
                toml::Value::Array(_) => toml::Value::Array(
                    raw.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| toml::Value::String(s.to_string()))
                        .collect(),
                ),
                _ => toml::Value::String(raw.clone()),
            };
        }
        *self = tree.try_into().map_err(|e: toml::de::Error| ConfigError::Value {
            name: "environment".into(),
            message: e.to_string(),
        })?;
        Ok(())
    }

    fn check(&self) -> Result<(), ConfigError> {
        self.http.parse::<std::net::SocketAddr>().map_err(|e| ConfigError::Value {
            name: "http".into(),
            message: format!("{e} (expected host:port such as 127.0.0.1:8080)"),
        })?;
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(ConfigError::Value {
                name: "log_format".into(),
                message: "expected text or json".into(),
            });
        }
        if self.limits.max_body_bytes < 1024 {
            return Err(ConfigError::Value {
                name: "limits.max_body_bytes".into(),
                message: "must be at least 1024".into(),
            });
        }
        if self.jobs.claim_batch == 0 || self.jobs.default_max_attempts == 0 {
            return Err(ConfigError::Value {
                name: "jobs".into(),
                message: "claim_batch and default_max_attempts must be at least 1".into(),
            });
        }
        if !matches!(self.mail.security.as_str(), "tls" | "starttls" | "none") {
            return Err(ConfigError::Value {
                name: "mail.security".into(),
                message: "expected tls, starttls or none".into(),
            });
        }
        if self.mail.max_attempts == 0 || self.mail.timeout_secs == 0 {
            return Err(ConfigError::Value {
                name: "mail".into(),
                message: "max_attempts and timeout_secs must be at least 1".into(),
            });
        }
        if self.observe.history_sample_secs == 0 || self.observe.heartbeat_secs == 0 {
            return Err(ConfigError::Value {
                name: "observe".into(),
                message: "history_sample_secs and heartbeat_secs must be at least 1".into(),
            });
        }
        let heartbeat = &self.observe.heartbeat_url;
        if !heartbeat.is_empty()
            && !url::Url::parse(heartbeat).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
        {
            return Err(ConfigError::Value {
                name: "observe.heartbeat_url".into(),
                message: format!("{heartbeat:?} is not an http(s) URL"),
            });
        }
        if self.webhooks.timeout_secs == 0 || self.webhooks.max_attempts == 0 {
            return Err(ConfigError::Value {
                name: "webhooks".into(),
                message: "timeout_secs and max_attempts must be at least 1".into(),
            });
        }
        for origin in &self.cors.allowed_origins {
            let ok = origin == "*"
                || url::Url::parse(origin).is_ok_and(|u| {
                    matches!(u.scheme(), "http" | "https")
                        && u.host_str().is_some()
                        && u.path() == "/"
                        && u.query().is_none()
                        && !origin.ends_with('/')
                });
            if !ok {
                return Err(ConfigError::Value {
                    name: "cors.allowed_origins".into(),
                    message: format!("{origin:?} is not an origin such as https://app.example.com or *"),
                });
            }
        }
        Ok(())
    }

    /// The URL to print in links.
    pub fn public_url(&self, bound: Option<std::net::SocketAddr>) -> String {
        if !self.public_url.is_empty() {
            return self.public_url.trim_end_matches('/').to_string();
        }
        format!("http://{}", bound.map(|a| a.to_string()).unwrap_or_else(|| self.http.clone()))
    }
}

/// Finds the value at the key path spelled `SECTION_KEY` (upper case) in `tree`.
fn find_slot<'a>(tree: &'a mut toml::Value, upper: &str) -> Option<&'a mut toml::Value> {
    let table = tree.as_table_mut()?;
    let exact = table.keys().find(|k| k.to_ascii_uppercase() == upper).cloned();
    if let Some(key) = exact {
        return table.get_mut(&key).filter(|v| !v.is_table());
    }
    let section = table
        .iter()
        .find(|(k, v)| v.is_table() && upper.starts_with(&format!("{}_", k.to_ascii_uppercase())))
        .map(|(k, _)| k.clone())?;
    let rest = &upper[section.len() + 1..];
    find_slot(table.get_mut(&section)?, rest)
}

/// A rate limit, `"N/Ds"` in config: at most N events per D seconds (N and D at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub secs: u64,
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(raw: &str) -> Result<Rate, String> {
        let bad = || format!("{raw:?} is not a limit such as \"100/10s\"");
        let (n, d) = raw.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        let secs: u64 = d.trim().strip_suffix('s').ok_or_else(bad)?.trim().parse().map_err(|_| bad())?;
        if count == 0 || secs == 0 {
            return Err(bad());
        }
        Ok(Rate { count, secs })
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}s", self.count, self.secs)
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Rate, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("backbone.toml"),
            "http = \"127.0.0.1:9000\"\n[limits]\nmax_body_bytes = 4096\n",
        )
        .expect("write");
        let c = Config::load(dir.path(), None, &env(&[]), &Overrides::default()).expect("load");
        assert_eq!(c.http, "127.0.0.1:9000");
        assert_eq!(c.limits.max_body_bytes, 4096);
        let c = Config::load(
            dir.path(),
            None,
            &env(&[("BACKBONE_HTTP", "127.0.0.1:9001"), ("BACKBONE_LIMITS_MAX_BODY_BYTES", "8192")]),
            &Overrides::default(),
        )
        .expect("load");
        assert_eq!(c.http, "127.0.0.1:9001");
        assert_eq!(c.limits.max_body_bytes, 8192);
        let c = Config::load(
            dir.path(),
            None,
            &env(&[("BACKBONE_HTTP", "127.0.0.1:9001")]),
            &Overrides { http: Some("127.0.0.1:9002".into()), log_format: None },
        )
        .expect("load");
        assert_eq!(c.http, "127.0.0.1:9002");
    }

    #[test]
    fn unknown_file_key_is_named() {
        let err = Config::from_toml("htpp = \"x\"").expect_err("unknown key");
        assert!(err.contains("htpp"), "{err}");
        let err = Config::from_toml("[limits]\nmax_body = 3").expect_err("unknown nested key");
        assert!(err.contains("max_body"), "{err}");
    }

    #[test]
    fn unknown_env_variable_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = Config::load(dir.path(), None, &env(&[("BACKBONE_HTPP", "x")]), &Overrides::default())
            .expect_err("unknown variable");
        assert!(err.to_string().contains("BACKBONE_HTPP"), "{err}");
        let err = Config::load(
            dir.path(),
            None,
            &env(&[("BACKBONE_LIMITS_MAX_BODY_BYTES", "lots")]),
            &Overrides::default(),
        )
        .expect_err("bad number");
        assert!(err.to_string().contains("BACKBONE_LIMITS_MAX_BODY_BYTES"), "{err}");
    }

    #[test]
    fn limits_and_ranges_are_read_once_into_typed_values() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("backbone.toml"),
            "[rate_limits]\nglobal = \"30/10s\"\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n",
        )
        .expect("write");
        let vars = env(&[("BACKBONE_RATE_LIMITS_AUTH_PER_IP", "7/60s")]);
        let config = Config::load(dir.path(), None, &vars, &Overrides::default()).expect("config");
        assert_eq!(config.rate_limits.global, Rate { count: 30, secs: 10 });
        assert_eq!(config.rate_limits.auth_per_ip, Rate { count: 7, secs: 60 });
        let proxies: Vec<String> = config.rate_limits.trusted_proxies.iter().map(|r| r.to_string()).collect();
        assert_eq!(proxies, ["10.0.0.0/8", "::1"]);
        for (file, bad) in [
            ("[rate_limits]\nglobal = \"0/1s\"\n", "\"0/1s\""),
            ("[rate_limits]\nglobal = \"ten/1s\"\n", "\"ten/1s\""),
            ("[observe]\nmetrics_allowed_ips = [\"10.0.0.0/33\"]\n", "\"10.0.0.0/33\""),
        ] {
            std::fs::write(dir.path().join("backbone.toml"), file).expect("write");
            let err = Config::load(dir.path(), None, &env(&[]), &Overrides::default()).expect_err(file);
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn example_config_parses_and_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/backbone.example.toml");
        let parsed = Config::from_file(&path).expect("example config parses");
        assert_eq!(parsed, Config::default(), "the example documents the defaults");
    }
}

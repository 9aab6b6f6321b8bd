//! Time as the job queue sees it: an injectable clock, so retries, backoff and cron
//! catch-up can be tested without waiting.

use std::sync::atomic::{AtomicI64, Ordering};

/// Milliseconds since the Unix epoch, UTC.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    pub fn new(now_ms: i64) -> ManualClock {
        ManualClock { now: AtomicI64::new(now_ms) }
    }

    pub fn set(&self, now_ms: i64) {
        self.now.store(now_ms, Ordering::SeqCst);
    }

    pub fn advance(&self, ms: i64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}

/// Formats epoch milliseconds in the API's UTC format (`YYYY-MM-DD HH:MM:SS.sssZ`).
pub fn format_ms(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => crate::util::time::format(t),
        None => String::new(),
    }
}

/// Parses a client date (RFC 3339 or the API's format) into epoch milliseconds.
pub fn parse_ms(input: &str) -> Option<i64> {
    crate::util::time::parse(input).map(|t| t.timestamp_millis())
}

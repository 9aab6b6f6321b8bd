//! The request log: one row per answered HTTP request (time, method, route template,
//! status, duration, client IP, kind of credentials) stored in the data file, with
//! retention by age and by total bytes, a filtered paginated listing and per-status-class
//! counts over time.
//!
//! Rows never hold secrets, bodies, raw paths or query strings. The guard hands each row to
//! a bounded in-memory queue (a non-blocking `try_send`; when the queue is full the row is
//! dropped and counted); a background task writes whatever queued up in one group-commit
//! write every [`FLUSH_EVERY`], and prunes in the same write. A crash loses at most the last
//! flush interval of rows, which is the price of keeping fsyncs off the request path.
//!
//! Rows are stored in blocks of up to [`BLOCK_ROWS`] (one key per block, not per row: the
//! per-row cost of a flush is then mostly encoding, done on the blocking pool). A block's
//! key is its oldest row's time and a sequence; its value is the newest row's time
//! (8 bytes, big-endian, for pruning by age without decoding) followed by the rows as JSON
//! lines, oldest first, each with its time in `t` (microseconds). Retention drops whole
//! blocks. A value starting with `{` is a single row from before blocks (its key's time).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::ObserveError;
use crate::store::{ScanControl, Store, StoreError, Table, WriteTx};
use crate::util::metrics::Counter;

/// How often queued rows are written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// Rows held in memory between flushes at most.
const QUEUE_CAPACITY: usize = 65_536;
/// Rows deleted by one flush at most (pruning catches up over later flushes).
const PRUNE_PER_FLUSH: usize = 20_000;
/// The `Meta` key holding the total bytes (keys + values) of the request log table.
const META_BYTES: &[u8] = b"request_log_bytes";
/// Most rows a single listing or stats request visits.
const MAX_SCAN: usize = 2_000_000;
/// Most buckets one stats request returns.
const MAX_BUCKETS: i64 = 2_000;
/// Rows per stored block at most.
pub const BLOCK_ROWS: usize = 256;
/// A block holds rows of one flush; its rows are at most this much newer than its key.
const BLOCK_SPAN_US: i64 = 60_000_000;

/// One answered request, as queued by the guard (cheap to build: no allocation but the route).
#[derive(Debug, Clone)]
pub struct Row {
    pub time_us: i64,
    pub method: &'static str,
    /// The route template.
    pub route: Arc<str>,
    pub status: u16,
    pub duration_us: u64,
    pub ip: Option<IpAddr>,
    /// `none`, `token` or `apiKey`: what the `Authorization` header held.
    pub auth: &'static str,
}

/// The request log service.
pub struct RequestLog {
    enabled: bool,
    store: Store,
    sender: mpsc::Sender<Row>,
    receiver: Mutex<Option<mpsc::Receiver<Row>>>,
    seq: AtomicU32,
    keep_us: i64,
    max_bytes: u64,
    /// Rows dropped because the queue was full.
    pub dropped: Counter,
    /// Rows written.
    pub written: Counter,
}

fn row_key(time_us: i64, seq: u32) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&u64::try_from(time_us.max(0)).unwrap_or(0).to_be_bytes());
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn key_time(key: &[u8]) -> i64 {
    key.get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .and_then(|t| i64::try_from(t).ok())
        .unwrap_or(0)
}

fn read_bytes(tx: &WriteTx<'_>) -> Result<u64, StoreError> {
    Ok(tx
        .get(Table::Meta, META_BYTES)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0))
}

/// The rows of a stored block (or of a single pre-block row), oldest first: (time, row).
fn decode_block(key: &[u8], value: &[u8]) -> Vec<(i64, Value)> {
    if value.first() == Some(&b'{') {
        return serde_json::from_slice::<Value>(value)
            .map(|row| vec![(key_time(key), row)])
            .unwrap_or_default();
    }
    let body = value.get(8..).unwrap_or_default();
    body.split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .filter_map(|line| {
            let mut row = serde_json::from_slice::<Value>(line).ok()?;
            let time = row.as_object_mut()?.remove("t")?.as_i64()?;
            Some((time, row))
        })
        .collect()
}

/// The newest row time of a stored block, read from its header (or the key for a single row).
fn block_newest(key: &[u8], value: &[u8]) -> i64 {
    if value.first() == Some(&b'{') {
        return key_time(key);
    }
    value
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .and_then(|t| i64::try_from(t).ok())
        .unwrap_or(0)
}

/// What a listing may filter on (all optional, combined with AND).
#[derive(Debug, Default, Clone)]
pub struct LogFilter {
    pub from_us: Option<i64>,
    pub to_us: Option<i64>,
    pub method: Option<String>,
    pub route: Option<String>,
    /// An exact status (`404`) or a class (`4xx`).
    pub status: Option<String>,
    pub ip: Option<String>,
    pub auth: Option<String>,
    pub min_duration_ms: Option<f64>,
}

impl LogFilter {
    fn check_status(raw: &str) -> Result<(), ObserveError> {
        let ok = match raw.as_bytes() {
            [c, b'x', b'x'] | [c, b'X', b'X'] => (b'1'..=b'5').contains(c),
            _ => raw.parse::<u16>().is_ok_and(|s| (100..=599).contains(&s)),
        };
        if ok {
            Ok(())
        } else {
            Err(ObserveError::BadRequest("status must be a status code (404) or a class (4xx).".into()))
        }
    }

    /// Refuses malformed values up front.
    pub fn validate(&self) -> Result<(), ObserveError> {
        if let Some(status) = &self.status {
            LogFilter::check_status(status)?;
        }
        if let (Some(from), Some(to)) = (self.from_us, self.to_us) {
            if from > to {
                return Err(ObserveError::BadRequest("from must not be after to.".into()));
            }
        }
        Ok(())
    }

    fn matches(&self, row: &Value) -> bool {
        let text = |k: &str| row.get(k).and_then(Value::as_str).unwrap_or_default();
        if self.method.as_deref().is_some_and(|m| !m.eq_ignore_ascii_case(text("method"))) {
            return false;
        }
        if self.route.as_deref().is_some_and(|r| r != text("route")) {
            return false;
        }
        if self.ip.as_deref().is_some_and(|ip| ip != text("ip")) {
            return false;
        }
        if self.auth.as_deref().is_some_and(|a| a != text("auth")) {
            return false;
        }
        let status = row.get("status").and_then(Value::as_u64).unwrap_or(0);
        if let Some(want) = &self.status {
            let ok = match want.strip_suffix("xx").or_else(|| want.strip_suffix("XX")) {
                Some(class) => class.parse::<u64>().is_ok_and(|c| status / 100 == c),
                None => want.parse::<u64>().is_ok_and(|s| s == status),
            };
            if !ok {
                return false;
            }
        }
        if let Some(min) = self.min_duration_ms {
            if row.get("durationMs").and_then(Value::as_f64).unwrap_or(0.0) < min {
                return false;
            }
        }
        true
    }
}

impl RequestLog {
    pub fn new(store: Store, enabled: bool, keep_secs: u64, max_bytes: u64) -> RequestLog {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        RequestLog {
            enabled,
            store,
            sender,
            receiver: Mutex::new(Some(receiver)),
            seq: AtomicU32::new(0),
            keep_us: i64::try_from(keep_secs.saturating_mul(1_000_000)).unwrap_or(i64::MAX),
            max_bytes,
            dropped: Counter::default(),
            written: Counter::default(),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Queues a row without waiting; a full queue drops it (counted).
    pub fn record(&self, row: Row) {
        if !self.enabled {
            return;
        }
        if self.sender.try_send(row).is_err() {
            self.dropped.inc();
        }
    }

    /// Appends the stored JSON line of a row (with its time in `t`) to `out`.
    fn encode_into(row: &Row, out: &mut Vec<u8>) {
        use std::io::Write as _;
        let route = serde_json::to_string(&*row.route).unwrap_or_else(|_| "\"\"".into());
        let ip = row.ip.map(|ip| ip.to_string()).unwrap_or_default();
        let _ = write!(
            out,
            r#"{{"t":{},"method":"{}","route":{},"status":{},"durationMs":{},"ip":"{}","auth":"{}"}}"#,
            row.time_us,
            row.method,
            route,
            row.status,
            row.duration_us as f64 / 1000.0,
            ip,
            row.auth
        );
    }

    /// Sorts `rows` by time and encodes them as blocks of at most [`BLOCK_ROWS`] rows
    /// spanning less than [`BLOCK_SPAN_US`]: (key, value).
    fn encode_blocks(&self, mut rows: Vec<Row>) -> Vec<([u8; 12], Vec<u8>)> {
        rows.sort_by_key(|r| r.time_us);
        let mut blocks = Vec::new();
        let mut start = 0;
        while start < rows.len() {
            let first_time = rows[start].time_us;
            let mut end = start + 1;
            while end < rows.len()
                && end - start < BLOCK_ROWS
                && rows[end].time_us - first_time < BLOCK_SPAN_US
            {
                end += 1;
            }
            let chunk = &rows[start..end];
            let newest = chunk.last().map_or(first_time, |r| r.time_us);
            let mut value = Vec::with_capacity(8 + chunk.len() * 120);
            value.extend_from_slice(&u64::try_from(newest.max(0)).unwrap_or(0).to_be_bytes());
            for row in chunk {
                Self::encode_into(row, &mut value);
                value.push(b'\n');
            }
            blocks.push((row_key(first_time, self.seq.fetch_add(1, Ordering::Relaxed)), value));
            start = end;
        }
        blocks
    }

    /// Writes `rows` and prunes by age (before `now_us - keep`) and by size, in one write.
    pub async fn write(self: &Arc<Self>, rows: Vec<Row>, now_us: i64) -> Result<(), StoreError> {
        let count = rows.len() as u64;
        let this = self.clone();
        let encoded = tokio::task::spawn_blocking(move || this.encode_blocks(rows))
            .await
            .map_err(|e| StoreError::Internal(format!("request log encoding failed: {e}")))?;
        let cutoff = now_us.saturating_sub(self.keep_us);
        let max_bytes = self.max_bytes;
        self.store
            .write(move |tx: &mut WriteTx<'_>| -> Result<(), StoreError> {
                let mut bytes = read_bytes(tx)?;
                for (key, value) in encoded {
                    bytes += (key.len() + value.len()) as u64;
                    tx.put(Table::RequestLog, &key, value);
                }
                let mut doomed: Vec<Vec<u8>> = Vec::new();
                let mut freed = 0u64;
                // Oldest first: drop rows past their age, then rows beyond the byte budget
                // (down to 90 % of it, so a full log is not pruned on every flush).
                let target = if bytes > max_bytes { max_bytes / 10 * 9 } else { max_bytes };
                tx.scan_prefix(Table::RequestLog, b"", None, |k, v| {
                    let size = (k.len() + v.len()) as u64;
                    let too_old = block_newest(k, v) < cutoff;
                    let too_big = bytes.saturating_sub(freed) > target;
                    if (!too_old && !too_big) || doomed.len() >= PRUNE_PER_FLUSH {
                        return ScanControl::Stop;
                    }
                    freed += size;
                    doomed.push(k.to_vec());
                    ScanControl::Continue
                })?;
                for key in &doomed {
                    tx.delete(Table::RequestLog, key);
                }
                tx.put(Table::Meta, META_BYTES, bytes.saturating_sub(freed).to_le_bytes().to_vec());
                Ok(())
            })
            .await?;
        self.written.add(count);
        Ok(())
    }

    /// Drains the queue into the store every [`FLUSH_EVERY`] until `stop` fires (then once more).
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let receiver = self.receiver.lock().ok().and_then(|mut r| r.take());
        let Some(mut receiver) = receiver else { return };
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        let mut last_write = std::time::Instant::now();
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = tokio::select! {
                _ = tick.tick() => false,
                _ = stop.changed() => true,
            };
            let mut rows = Vec::new();
            while rows.len() < QUEUE_CAPACITY {
                match receiver.try_recv() {
                    Ok(row) => rows.push(row),
                    Err(_) => break,
                }
            }
            let now = chrono::Utc::now().timestamp_micros();
            // Prune even when idle, so old rows go away on a quiet server too.
            if !rows.is_empty() || last_write.elapsed() >= Duration::from_secs(60) {
                last_write = std::time::Instant::now();
                if let Err(err) = self.write(rows, now).await {
                    tracing::warn!(error = %err, "request log rows not written");
                }
            }
            if stopping {
                break;
            }
        }
    }

    /// Total bytes of stored rows (keys and values).
    pub async fn stored_bytes(&self) -> Result<u64, StoreError> {
        self.store
            .read(|tx| {
                Ok::<_, StoreError>(
                    tx.get(Table::Meta, META_BYTES)?
                        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
                        .map(u64::from_le_bytes)
                        .unwrap_or(0),
                )
            })
            .await
    }

    /// Rows matching `filter`, newest first, page `page` of `per_page`; and the total.
    pub async fn list(
        &self,
        filter: LogFilter,
        page: usize,
        per_page: usize,
    ) -> Result<(usize, Vec<Value>), ObserveError> {
        filter.validate()?;
        let skip = (page.max(1) - 1).saturating_mul(per_page);
        let items = self
            .store
            .read(move |tx| {
                let mut total = 0usize;
                let mut items = Vec::new();
                let mut visited = 0usize;
                let upper = filter.to_us.map(|t| row_key(t.saturating_add(1), 0));
                let from = filter.from_us.unwrap_or(i64::MIN);
                let to = filter.to_us.unwrap_or(i64::MAX);
                tx.scan_prefix(
                    Table::RequestLog,
                    b"",
                    true,
                    upper.as_ref().map(|k| k.as_slice()),
                    |k, v| {
                        if key_time(k) < from.saturating_sub(BLOCK_SPAN_US) || visited > MAX_SCAN {
                            return ScanControl::Stop;
                        }
                        let block_id: String = k.iter().map(|b| format!("{b:02x}")).collect();
                        for (i, (time, mut row)) in decode_block(k, v).into_iter().enumerate().rev() {
                            visited += 1;
                            if time < from || time > to || !filter.matches(&row) {
                                continue;
                            }
                            if total >= skip && items.len() < per_page {
                                if let Some(obj) = row.as_object_mut() {
                                    obj.insert("id".into(), json!(format!("{block_id}-{i}")));
                                    obj.insert("time".into(), json!(format_time(time)));
                                }
                                items.push(row);
                            }
                            total += 1;
                        }
                        ScanControl::Continue
                    },
                )?;
                Ok::<_, ObserveError>((total, items))
            })
            .await?;
        Ok(items)
    }

    /// One row by the id [`RequestLog::list`] gives it (`<block key in hex>-<index>`).
    pub async fn get(&self, id: &str) -> Result<Value, ObserveError> {
        let missing = || ObserveError::NotFound("No log entry with this id.".into());
        let (block, index) = id.split_once('-').ok_or_else(missing)?;
        let index: usize = index.parse().map_err(|_| missing())?;
        if block.len() != 24 || !block.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(missing());
        }
        let key: Vec<u8> = (0..block.len())
            .step_by(2)
            .filter_map(|i| block.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect();
        let id = id.to_string();
        self.store
            .read(move |tx| {
                let bytes = tx.get(Table::RequestLog, &key)?.ok_or_else(missing)?;
                let (time, mut row) =
                    decode_block(&key, &bytes).into_iter().nth(index).ok_or_else(missing)?;
                if let Some(obj) = row.as_object_mut() {
                    obj.insert("id".into(), json!(id));
                    obj.insert("time".into(), json!(format_time(time)));
                }
                Ok::<_, ObserveError>(row)
            })
            .await
    }

    /// PocketBase's log statistics (what `pb.logs.getStats()` reads): the number of rows
    /// matching `filter` per hour, `[{total, date}]` oldest first, hours without rows left
    /// out; the last 24 hours unless `filter` bounds the time.
    pub async fn hourly(&self, filter: LogFilter) -> Result<Value, ObserveError> {
        let stats = self.stats(filter, 3_600_000_000).await?;
        let items = stats["items"].as_array().cloned().unwrap_or_default();
        Ok(Value::Array(
            items
                .into_iter()
                .filter(|b| b["total"].as_u64().unwrap_or(0) > 0)
                .map(|b| {
                    let date =
                        b["time"].as_str().unwrap_or_default().get(..19).unwrap_or_default().to_string();
                    json!({"total": b["total"], "date": date})
                })
                .collect(),
        ))
    }

    /// Request counts per status class in buckets of `step_us` from `from_us` to `to_us`.
    pub async fn stats(&self, filter: LogFilter, step_us: i64) -> Result<Value, ObserveError> {
        filter.validate()?;
        let to = filter.to_us.unwrap_or_else(|| chrono::Utc::now().timestamp_micros());
        let from = filter.from_us.unwrap_or(to - 86_400_000_000);
        if step_us <= 0 {
            return Err(ObserveError::BadRequest("step must be at least 1 second.".into()));
        }
        if (to - from) / step_us > MAX_BUCKETS {
            return Err(ObserveError::BadRequest(format!(
                "from..to holds more than {MAX_BUCKETS} steps; use a larger step."
            )));
        }
        let start = from - from.rem_euclid(step_us);
        self.store
            .read(move |tx| {
                let n = usize::try_from((to - start) / step_us + 1).unwrap_or(0);
                let mut buckets = vec![[0u64; 6]; n];
                let mut visited = 0usize;
                let lower = row_key(from.saturating_sub(BLOCK_SPAN_US), 0);
                tx.scan_prefix(Table::RequestLog, b"", false, Some(lower.as_slice()), |k, v| {
                    if key_time(k) > to || visited > MAX_SCAN {
                        return ScanControl::Stop;
                    }
                    for (time, row) in decode_block(k, v) {
                        visited += 1;
                        if time < from || time > to || !filter.matches(&row) {
                            continue;
                        }
                        let status = row.get("status").and_then(Value::as_u64).unwrap_or(0);
                        let class = usize::try_from((status / 100).clamp(1, 5)).unwrap_or(5);
                        let i = usize::try_from((time - start) / step_us).unwrap_or(0);
                        if let Some(b) = buckets.get_mut(i) {
                            b[class] += 1;
                            b[0] += 1;
                        }
                    }
                    ScanControl::Continue
                })?;
                let items: Vec<Value> = buckets
                    .iter()
                    .enumerate()
                    .map(|(i, b)| {
                        let t = start + step_us * i as i64;
                        json!({"time": format_time(t), "total": b[0], "1xx": b[1], "2xx": b[2], "3xx": b[3], "4xx": b[4], "5xx": b[5]})
                    })
                    .collect();
                let total: u64 = buckets.iter().map(|b| b[0]).sum();
                Ok::<_, ObserveError>(json!({"from": format_time(start), "to": format_time(to), "step": step_us / 1_000_000, "total": total, "items": items}))
            })
            .await
    }
}

/// Microseconds since 1970 in the record time format.
pub fn format_time(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us).map(crate::util::time::format).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_filters_accept_codes_and_classes_only() {
        for ok in ["404", "4xx", "5XX", "200"] {
            assert!(LogFilter::check_status(ok).is_ok(), "{ok}");
        }
        for bad in ["", "4x", "6xx", "abc", "99", "1000"] {
            assert!(LogFilter::check_status(bad).is_err(), "{bad}");
        }
        let row = json!({"status": 404, "method": "GET", "route": "/a", "durationMs": 3.0});
        let f = |status: &str| LogFilter { status: Some(status.into()), ..LogFilter::default() };
        assert!(f("4xx").matches(&row));
        assert!(f("404").matches(&row));
        assert!(!f("5xx").matches(&row));
        assert!(!LogFilter { min_duration_ms: Some(5.0), ..LogFilter::default() }.matches(&row));
        assert!(LogFilter { method: Some("get".into()), ..LogFilter::default() }.matches(&row));
    }

    #[test]
    fn rows_encode_as_json() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("d.redb"), &Default::default()).expect("open");
        let log = Arc::new(RequestLog::new(store.clone(), true, 100, 1 << 20));
        let one_row = Row { ip: "::1".parse().ok(), route: Arc::from("/a/{id}"), ..row(5) };
        let blocks = log.encode_blocks(vec![one_row.clone(), Row { time_us: 3, ..one_row }]);
        assert_eq!(blocks.len(), 1);
        let (key, value) = &blocks[0];
        assert_eq!(key_time(key), 3, "a block's key holds its oldest row's time");
        assert_eq!(block_newest(key, value), 5);
        let rows = decode_block(key, value);
        let one = json!({"method": "GET", "route": "/a/{id}", "status": 200, "durationMs": 1.5, "ip": "::1", "auth": "none"});
        assert_eq!(rows, vec![(3, one.clone()), (5, one.clone())]);
        // A row stored before blocks existed still reads back.
        let old = serde_json::to_vec(&one).expect("json");
        assert_eq!(decode_block(&row_key(7, 0), &old), vec![(7, one)]);
        // Blocks are split by count and by time span.
        let many: Vec<Row> = (0..BLOCK_ROWS as i64 + 10).map(row).collect();
        assert_eq!(log.encode_blocks(many).len(), 2);
        let spread = vec![row(0), row(BLOCK_SPAN_US + 1)];
        assert_eq!(log.encode_blocks(spread).len(), 2);
        store.shutdown();
    }

    /// Cost of the per-request observability work and of storing rows (run with
    /// `cargo test --release --lib observe_cost -- --ignored --nocapture`).
    #[tokio::test]
    #[ignore]
    async fn observe_cost() {
        use crate::observe::http::{HttpMetrics, RouteTable};
        let templates = [
            "/api/health",
            "/api/collections/:collection",
            "/api/collections/:collection/records",
            "/api/collections/:collection/records/:id",
            "/api/jobs/:id",
            "/api/docs/*path",
        ];
        let http = HttpMetrics::new(RouteTable::new(&templates));
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("d.redb"), &Default::default()).expect("open");
        let log = Arc::new(RequestLog::new(store.clone(), true, 3600, 1 << 30));
        let n = 200_000u32;
        let started = std::time::Instant::now();
        for _ in 0..n {
            let flight = http.start("GET", "/api/collections/bench/records/abcdefghijklmno");
            let route = flight.route();
            let elapsed = flight.finish(200);
            log.record(Row {
                time_us: chrono::Utc::now().timestamp_micros(),
                method: "GET",
                route: http.routes.shared_label(route),
                status: 200,
                duration_us: elapsed.as_micros() as u64,
                ip: "127.0.0.1".parse().ok(),
                auth: "token",
            });
            if log.sender.capacity() == 0 {
                break;
            }
        }
        let per_request = started.elapsed() / n;
        let mut receiver = log.receiver.lock().ok().and_then(|mut r| r.take()).expect("receiver");
        let mut rows = Vec::new();
        while let Ok(row) = receiver.try_recv() {
            rows.push(row);
        }
        let count = rows.len() as u32;
        let started = std::time::Instant::now();
        log.write(rows, chrono::Utc::now().timestamp_micros()).await.expect("write");
        let per_row = started.elapsed() / count.max(1);
        println!(
            "hot path per request: {per_request:?}; storing: {per_row:?} per row ({count} rows in one write)"
        );
        store.shutdown();
    }

    fn row(time_us: i64) -> Row {
        Row {
            time_us,
            method: "GET",
            route: Arc::from("/a"),
            status: 200,
            duration_us: 1500,
            ip: None,
            auth: "none",
        }
    }

    #[tokio::test]
    async fn retention_prunes_by_age_and_by_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("d.redb"), &Default::default()).expect("open");
        // Keep 100 s; a budget of about 40 rows (rows are ~120 bytes; whole blocks go).
        let log = Arc::new(RequestLog::new(store.clone(), true, 100, 40 * 120));
        let now = 1_000_000_000_000i64;
        let old: Vec<Row> = (0..5).map(|i| row(now - 200_000_000 + i)).collect();
        log.write(old, now - 150_000_000).await.expect("write");
        log.write(vec![row(now)], now).await.expect("write");
        let (total, items) = log.list(LogFilter::default(), 1, 100).await.expect("list");
        assert_eq!(total, 1, "rows older than 100 s are gone: {items:?}");
        // Ten flushes of ten rows: the oldest blocks go once the budget is exceeded.
        for flush in 0..10 {
            let recent: Vec<Row> = (0..10).map(|i| row(now + 1 + flush * 10 + i)).collect();
            log.write(recent, now + 200).await.expect("write");
        }
        let bytes = log.stored_bytes().await.expect("bytes");
        assert!(bytes <= 40 * 120, "{bytes}");
        let (total, items) = log.list(LogFilter::default(), 1, 5).await.expect("list");
        assert!((20..=40).contains(&total) && total % 10 == 0, "whole blocks of 10 remain: {total}");
        assert_eq!(items.len(), 5);
        // Newest first, and the newest row survived.
        assert_eq!(items[0]["time"], json!(format_time(now + 100)));
        // The byte counter matches what is stored.
        let stored = store
            .read(|tx| {
                let mut sum = 0u64;
                tx.scan_prefix(Table::RequestLog, b"", false, None, |k, v| {
                    sum += (k.len() + v.len()) as u64;
                    ScanControl::Continue
                })?;
                Ok::<_, StoreError>(sum)
            })
            .await
            .expect("sum");
        assert_eq!(stored, bytes);
        store.shutdown();
    }
}

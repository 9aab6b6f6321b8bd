//! In-process metrics: lock-free counters and histograms, the HTTP request metrics keyed by
//! route template, and the Prometheus text writer.
//!
//! Every hot-path update is one or two relaxed atomic adds on a pre-allocated slot; nothing
//! here allocates or locks per request. Label values come from closed sets (route templates
//! of the route table, a fixed method list, a fixed status list), never from raw input, so
//! the number of series is bounded no matter what clients send.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds (seconds) of the latency buckets of HTTP requests and storage commits.
pub const LATENCY_BUCKETS: [f64; 12] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];
/// Upper bounds (seconds) of the job run duration buckets.
pub const JOB_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0];
/// Upper bounds of the group-commit batch size buckets (writes per commit).
pub const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 256.0, 1024.0];

/// A cumulative histogram with fixed bucket bounds (Prometheus semantics).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Non-cumulative counts per bucket; the last slot is `+Inf`.
    buckets: Box<[AtomicU64]>,
    /// Sum of observations in millionths.
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one observation of `value` (seconds for durations).
    pub fn observe(&self, value: f64) {
        let slot = self.bounds.iter().position(|b| value <= *b).unwrap_or(self.bounds.len());
        if let Some(bucket) = self.buckets.get(slot) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        let micros = (value.max(0.0) * 1e6).round();
        self.sum_micros
            .fetch_add(if micros >= u64::MAX as f64 { u64::MAX } else { micros as u64 }, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn observe_duration(&self, elapsed: Duration) {
        self.observe(elapsed.as_secs_f64());
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn sum(&self) -> f64 {
        self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// The value below which `q` (0..1) of the observations fall, interpolated within the
    /// bucket that holds it (like PromQL's `histogram_quantile`); `None` without data.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        quantile_of(self.bounds, &counts, q)
    }

    /// Non-cumulative bucket counts (the last is `+Inf`).
    pub fn bucket_counts(&self) -> Vec<u64> {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect()
    }
}

/// The `q` quantile of non-cumulative bucket `counts` over `bounds` (last count is `+Inf`).
pub fn quantile_of(bounds: &[f64], counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut seen = 0u64;
    for (i, count) in counts.iter().enumerate() {
        let before = seen;
        seen += count;
        if (seen as f64) >= rank && *count > 0 {
            let upper = match bounds.get(i) {
                Some(b) => *b,
                // Inside +Inf: the best answer is the largest finite bound.
                None => return bounds.last().copied(),
            };
            let lower = if i == 0 { 0.0 } else { bounds.get(i - 1).copied().unwrap_or(0.0) };
            let within = (rank - before as f64) / *count as f64;
            return Some(lower + (upper - lower) * within.clamp(0.0, 1.0));
        }
    }
    bounds.last().copied()
}

/// HTTP methods with their own label value; anything else is `OTHER`.
const METHODS: [&str; 8] = ["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE", "OPTIONS", "OTHER"];

/// Status codes with their own label value; others are counted under their class (`2xx`).
const STATUSES: [u16; 27] = [
    200, 201, 202, 204, 206, 301, 302, 304, 307, 308, 400, 401, 403, 404, 405, 406, 408, 409, 410, 413, 415,
    416, 429, 500, 502, 503, 507,
];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const STATUS_SLOTS: usize = STATUSES.len() + CLASSES.len();

fn method_slot(method: &str) -> usize {
    METHODS.iter().position(|m| *m == method).unwrap_or(METHODS.len() - 1)
}

/// The label of an HTTP method (`OTHER` for methods outside the fixed list).
pub fn method_label(method: &str) -> &'static str {
    METHODS.get(method_slot(method)).copied().unwrap_or("OTHER")
}

fn status_slot(status: u16) -> usize {
    match STATUSES.iter().position(|s| *s == status) {
        Some(i) => i,
        None => STATUSES.len() + usize::from((status / 100).clamp(1, 5) - 1),
    }
}

fn status_label(slot: usize) -> String {
    match STATUSES.get(slot) {
        Some(code) => code.to_string(),
        None => CLASSES.get(slot - STATUSES.len()).copied().unwrap_or("5xx").to_string(),
    }
}

/// One path segment of a route template.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Segment {
    Literal(String),
    Param,
    Wildcard,
}

impl Segment {
    fn rank(&self) -> u8 {
        match self {
            Segment::Literal(_) => 0,
            Segment::Param => 1,
            Segment::Wildcard => 2,
        }
    }
}

/// Path segments compared one by one; deeper paths match only wildcard templates.
const MAX_DEPTH: usize = 12;

/// Label used for requests that match no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Maps request paths to the route templates of the route table
/// (`/api/collections/:collection/records/:id` → `/api/collections/{collection}/records/{id}`).
#[derive(Debug, Clone)]
pub struct RouteTable {
    /// Templates, most specific first, with their label and index.
    entries: Vec<(Vec<Segment>, usize)>,
    labels: Vec<Arc<str>>,
}

impl RouteTable {
    /// Builds the matcher from poem-style templates (`:param`, `*rest`).
    pub fn new(templates: &[&str]) -> RouteTable {
        let mut labels = Vec::with_capacity(templates.len() + 1);
        let mut entries = Vec::with_capacity(templates.len());
        for (index, template) in templates.iter().enumerate() {
            let mut segments = Vec::new();
            let mut label = String::new();
            for part in template.split('/').filter(|p| !p.is_empty()) {
                label.push('/');
                if let Some(name) = part.strip_prefix(':') {
                    segments.push(Segment::Param);
                    let _ = write!(label, "{{{name}}}");
                } else if let Some(name) = part.strip_prefix('*') {
                    segments.push(Segment::Wildcard);
                    let _ = write!(label, "{{{name}}}");
                } else {
                    segments.push(Segment::Literal(part.to_string()));
                    label.push_str(part);
                }
            }
            if label.is_empty() {
                label.push('/');
            }
            labels.push(Arc::from(label));
            entries.push((segments, index));
        }
        labels.push(Arc::from(UNMATCHED_ROUTE));
        entries.sort_by(|(a, _), (b, _)| {
            let ra: Vec<u8> = a.iter().map(Segment::rank).collect();
            let rb: Vec<u8> = b.iter().map(Segment::rank).collect();
            ra.cmp(&rb)
        });
        RouteTable { entries, labels }
    }

    /// Number of route slots (templates plus the unmatched slot).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The slot of `path`'s template (the last slot when nothing matches). The path is
    /// split once, on the stack; paths deeper than [`MAX_DEPTH`] segments match only
    /// wildcard templates.
    pub fn slot(&self, path: &str) -> usize {
        let mut parts = [""; MAX_DEPTH];
        let mut depth = 0usize;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if let Some(slot) = parts.get_mut(depth) {
                *slot = part;
            }
            depth += 1;
        }
        'entries: for (segments, index) in &self.entries {
            for (i, segment) in segments.iter().enumerate() {
                let part = if i < depth { parts.get(i).copied() } else { None };
                match segment {
                    Segment::Wildcard => return *index,
                    Segment::Param if i < depth => {}
                    Segment::Literal(lit) if i < depth && i < MAX_DEPTH && part == Some(lit.as_str()) => {}
                    _ => continue 'entries,
                }
            }
            if segments.len() == depth {
                return *index;
            }
        }
        self.labels.len() - 1
    }

    /// The label of a slot.
    pub fn label(&self, slot: usize) -> &str {
        self.labels.get(slot).map(|l| &**l).unwrap_or(UNMATCHED_ROUTE)
    }

    /// The label of a slot, shared (for request log rows).
    pub fn shared_label(&self, slot: usize) -> Arc<str> {
        self.labels.get(slot).cloned().unwrap_or_else(|| Arc::from(UNMATCHED_ROUTE))
    }

    /// The template label of `path`.
    pub fn template(&self, path: &str) -> &str {
        self.label(self.slot(path))
    }
}

/// Request counts by route × method × status, latency by route × method, and in-flight.
pub struct HttpMetrics {
    pub routes: RouteTable,
    requests: Box<[AtomicU64]>,
    latency: Box<[Histogram]>,
    in_flight: AtomicI64,
    /// Answered 429 by the rate limiter (before any handler ran).
    pub rate_limited: Counter,
}

/// What [`HttpMetrics::start`] hands back: finish it with the response status.
pub struct InFlight<'a> {
    metrics: &'a HttpMetrics,
    route: usize,
    method: usize,
    started: std::time::Instant,
    done: bool,
}

impl InFlight<'_> {
    /// The route template slot of this request.
    pub fn route(&self) -> usize {
        self.route
    }

    /// Records the request's outcome; returns its duration.
    pub fn finish(mut self, status: u16) -> Duration {
        let elapsed = self.started.elapsed();
        let m = self.metrics;
        let cell = (self.route * METHODS.len() + self.method) * STATUS_SLOTS + status_slot(status);
        if let Some(c) = m.requests.get(cell) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(h) = m.latency.get(self.route * METHODS.len() + self.method) {
            h.observe_duration(elapsed);
        }
        self.done = true;
        m.in_flight.fetch_sub(1, Ordering::Relaxed);
        elapsed
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.done {
            // The client went away before an answer: no status, but no longer in flight.
            self.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl HttpMetrics {
    pub fn new(routes: RouteTable) -> HttpMetrics {
        let combos = routes.len() * METHODS.len();
        HttpMetrics {
            requests: (0..combos * STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            latency: (0..combos).map(|_| Histogram::new(&LATENCY_BUCKETS)).collect(),
            routes,
            in_flight: AtomicI64::new(0),
            rate_limited: Counter::default(),
        }
    }

    /// Counts a request as in flight until the returned guard is finished or dropped.
    pub fn start(&self, method: &str, path: &str) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            metrics: self,
            route: self.routes.slot(path),
            method: method_slot(method),
            started: std::time::Instant::now(),
            done: false,
        }
    }

    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Totals over every route: (requests, 5xx answers), and the merged latency buckets.
    pub fn totals(&self) -> (u64, u64, Vec<u64>) {
        let mut requests = 0;
        let mut errors = 0;
        for (cell, count) in self.requests.iter().enumerate() {
            let n = count.load(Ordering::Relaxed);
            requests += n;
            let slot = cell % STATUS_SLOTS;
            let is_5xx = STATUSES.get(slot).map_or(slot == STATUS_SLOTS - 1, |s| *s >= 500);
            if is_5xx {
                errors += n;
            }
        }
        let mut buckets = vec![0u64; LATENCY_BUCKETS.len() + 1];
        for h in self.latency.iter() {
            for (i, n) in h.bucket_counts().into_iter().enumerate() {
                if let Some(b) = buckets.get_mut(i) {
                    *b += n;
                }
            }
        }
        (requests, errors, buckets)
    }

    /// Writes the HTTP families in Prometheus text format.
    pub fn render(&self, out: &mut Exposition) {
        out.family(
            "backbone_http_requests_total",
            "counter",
            "HTTP requests answered, by route template, method and status.",
        );
        for (cell, count) in self.requests.iter().enumerate() {
            let n = count.load(Ordering::Relaxed);
            if n == 0 {
                continue;
            }
            let status = cell % STATUS_SLOTS;
            let method = (cell / STATUS_SLOTS) % METHODS.len();
            let route = cell / STATUS_SLOTS / METHODS.len();
            out.sample(
                "backbone_http_requests_total",
                &[
                    ("route", self.routes.label(route)),
                    ("method", METHODS.get(method).copied().unwrap_or("OTHER")),
                    ("status", &status_label(status)),
                ],
                n as f64,
            );
        }
        out.family(
            "backbone_http_request_duration_seconds",
            "histogram",
            "Time from receiving a request to its answer, by route template and method.",
        );
        for (combo, h) in self.latency.iter().enumerate() {
            if h.count() == 0 {
                continue;
            }
            let route = self.routes.label(combo / METHODS.len());
            let method = METHODS.get(combo % METHODS.len()).copied().unwrap_or("OTHER");
            out.histogram(
                "backbone_http_request_duration_seconds",
                &[("route", route), ("method", method)],
                h,
            );
        }
        out.family("backbone_http_requests_in_flight", "gauge", "HTTP requests being handled right now.");
        out.sample("backbone_http_requests_in_flight", &[], self.in_flight() as f64);
        out.family(
            "backbone_http_rate_limited_total",
            "counter",
            "Requests refused with 429 by the per-client rate limits.",
        );
        out.sample("backbone_http_rate_limited_total", &[], self.rate_limited.get() as f64);
    }
}

/// A Prometheus text-format (0.0.4) document being written.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

/// Escapes a label value (backslash, double quote, newline).
fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

impl Exposition {
    /// Starts a metric family: `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", help.replace('\\', "\\\\").replace('\n', "\\n"));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// One sample line.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape_label(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", format_value(value));
    }

    /// A whole family with one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// The `_bucket`, `_sum` and `_count` samples of one histogram series.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let counts = h.bucket_counts();
        let mut cumulative = 0u64;
        let bucket = format!("{name}_bucket");
        for (i, n) in counts.iter().enumerate() {
            cumulative += n;
            let le = match h.bounds.get(i) {
                Some(b) => format_value(*b),
                None => "+Inf".to_string(),
            };
            let mut with_le: Vec<(&str, &str)> = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, cumulative as f64);
        }
        // The +Inf bucket and _count must agree even if observations raced the read.
        self.sample(&format!("{name}_sum"), labels, h.sum());
        self.sample(&format!("{name}_count"), labels, cumulative as f64);
    }

    pub fn finish(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATES: [&str; 6] = [
        "/api/health",
        "/api/jobs/:id",
        "/api/jobs/stats",
        "/api/collections/:collection/records/:id",
        "/api/docs/*path",
        "/metrics",
    ];

    #[test]
    fn paths_map_to_templates_and_literals_win_over_params() {
        let t = RouteTable::new(&TEMPLATES);
        assert_eq!(t.template("/api/health"), "/api/health");
        assert_eq!(t.template("/api/jobs/42"), "/api/jobs/{id}");
        assert_eq!(t.template("/api/jobs/stats"), "/api/jobs/stats");
        assert_eq!(
            t.template("/api/collections/posts/records/abc"),
            "/api/collections/{collection}/records/{id}"
        );
        assert_eq!(t.template("/api/docs/a/b.css"), "/api/docs/{path}");
        assert_eq!(t.template("/metrics"), "/metrics");
    }

    #[test]
    fn unknown_paths_share_one_label() {
        let t = RouteTable::new(&TEMPLATES);
        for path in ["/", "/wp-admin.php", "/api/jobs/1/2/3", "/api/collections/x/records", "/api/healthz"] {
            assert_eq!(t.template(path), UNMATCHED_ROUTE, "{path}");
        }
    }

    #[test]
    fn histogram_quantile_interpolates_within_the_bucket() {
        let h = Histogram::new(&LATENCY_BUCKETS);
        for _ in 0..99 {
            h.observe(0.0007);
        }
        h.observe(0.3);
        let p50 = h.quantile(0.5).expect("data");
        assert!(p50 > 0.0005 && p50 <= 0.001, "{p50}");
        let p100 = h.quantile(1.0).expect("data");
        assert!(p100 > 0.25 && p100 <= 0.5, "{p100}");
        assert!((h.sum() - (99.0 * 0.0007 + 0.3)).abs() < 1e-4);
    }

    #[test]
    fn requests_are_counted_per_route_method_and_status() {
        let m = HttpMetrics::new(RouteTable::new(&TEMPLATES));
        m.start("GET", "/api/jobs/7").finish(200);
        m.start("GET", "/api/jobs/8").finish(200);
        m.start("DELETE", "/api/jobs/8").finish(404);
        m.start("BREW", "/nope").finish(418);
        let dropped = m.start("GET", "/api/health");
        assert_eq!(m.in_flight(), 1);
        drop(dropped);
        assert_eq!(m.in_flight(), 0);
        let mut out = Exposition::default();
        m.render(&mut out);
        let text = out.finish();
        assert!(
            text.contains(
                "backbone_http_requests_total{route=\"/api/jobs/{id}\",method=\"GET\",status=\"200\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "backbone_http_requests_total{route=\"/api/jobs/{id}\",method=\"DELETE\",status=\"404\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "backbone_http_requests_total{route=\"unmatched\",method=\"OTHER\",status=\"4xx\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "backbone_http_request_duration_seconds_count{route=\"/api/jobs/{id}\",method=\"GET\"} 2\n"
            ),
            "{text}"
        );
        let (total, errors, _) = m.totals();
        assert_eq!((total, errors), (4, 0));
    }
}

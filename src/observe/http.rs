//! HTTP request metrics keyed by route template.
//!
//! Label values come from closed sets (route templates of the route table, a fixed method
//! list, a fixed status list), never from raw input, so the number of series is bounded no
//! matter what clients send. Every hot-path update is one or two relaxed atomic adds on a
//! pre-allocated slot.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::util::metrics::{Counter, Exposition, Histogram, LATENCY_BUCKETS};

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

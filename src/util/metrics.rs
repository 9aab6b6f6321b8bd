//! Metric primitives: lock-free counters and histograms, and the Prometheus text writer.
//!
//! Every hot-path update is one or two relaxed atomic adds on a pre-allocated slot; nothing
//! here allocates or locks per update. Domains keep their counters as plain fields built
//! from these and render their own families into an [`Exposition`].

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
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
}

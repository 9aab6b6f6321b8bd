//! `GET /metrics`: every metric of the server in the Prometheus text format (version 0.0.4).
//!
//! Families, in document order: `backbone_up`, `backbone_http_*` (requests by route
//! template, method and status; latency histograms; in-flight), `backbone_rate_limited_total`,
//! load shedding (`backbone_http_shed_total`, `backbone_http_admitted_in_flight`,
//! `backbone_memory_pressure`), `backbone_store_*` (file size, commits, batch sizes, commit
//! latency), `backbone_search_*` (index lag, documents, commits, query latency),
//! `backbone_jobs_*` (depth per queue and state, oldest waiting age, runs, failures, run
//! durations), `backbone_mail_*`, `backbone_auth_*`, `backbone_request_log_*`,
//! `backbone_process_*`, `backbone_host_*` and `backbone_disk_*`.
//!
//! Each part renders its own families into one [`Exposition`]: the domains theirs
//! (`Store::render_metrics`, `Jobs::render_metrics`, ...), this module those of the HTTP
//! layer, the request log and the host (below); `App::render_metrics` calls them in this
//! order.

use super::pressure::Pressure;
use super::Observe;
use crate::util::metrics::Exposition;

impl Observe {
    /// `backbone_up` and the `backbone_http_*` request families.
    pub fn render_http_metrics(&self, out: &mut Exposition) {
        out.single("backbone_up", "gauge", "1 while the server answers.", 1.0);
        if let Some(http) = self.http() {
            http.render(out);
        }
    }

    /// `backbone_request_log_*`, `backbone_process_*`, `backbone_host_*` and `backbone_disk_*`.
    pub async fn render_process_metrics(&self, out: &mut Exposition) {
        let log = &self.requests;
        for (name, help, counter) in [
            ("backbone_request_log_written_total", "Request log rows stored.", &log.written),
            (
                "backbone_request_log_dropped_total",
                "Request log rows dropped because the in-memory queue was full.",
                &log.dropped,
            ),
        ] {
            out.single(name, "counter", help, counter.get() as f64);
        }
        let host = self.host.read().await;
        for (name, help, value) in [
            (
                "backbone_process_cpu_percent",
                "CPU used by the server process, percent of one core.",
                host.process_cpu_percent,
            ),
            (
                "backbone_process_resident_memory_bytes",
                "Resident memory of the server process.",
                host.process_rss_bytes as f64,
            ),
            (
                "backbone_process_virtual_memory_bytes",
                "Virtual memory of the server process.",
                host.process_virtual_bytes as f64,
            ),
            ("backbone_process_open_fds", "Open file descriptors.", host.process_open_files as f64),
            (
                "backbone_process_uptime_seconds",
                "Seconds since the server started.",
                host.process_uptime_secs as f64,
            ),
            ("backbone_host_cpu_percent", "CPU used by the whole host, percent.", host.host_cpu_percent),
            ("backbone_host_memory_total_bytes", "Memory of the host.", host.host_memory_total_bytes as f64),
            (
                "backbone_host_memory_available_bytes",
                "Memory available for new work on the host.",
                host.host_memory_available_bytes as f64,
            ),
            ("backbone_host_load1", "Host load average over one minute.", host.host_load1),
            ("backbone_host_uptime_seconds", "Seconds since the host booted.", host.host_uptime_secs as f64),
            (
                "backbone_disk_free_bytes",
                "Free space of the file system holding the data directory.",
                host.disk_free_bytes as f64,
            ),
            (
                "backbone_disk_total_bytes",
                "Size of the file system holding the data directory.",
                host.disk_total_bytes as f64,
            ),
        ] {
            out.single(name, "gauge", help, value);
        }
    }
}

impl Pressure {
    /// Load shedding: `backbone_http_shed_total` by reason, admitted requests, memory pressure.
    pub fn render_metrics(&self, out: &mut Exposition) {
        out.family(
            "backbone_http_shed_total",
            "counter",
            "Requests refused by load shedding (503), by reason.",
        );
        for (shed, count) in self.shed_counts() {
            out.sample("backbone_http_shed_total", &[("reason", shed.label())], count as f64);
        }
        out.single(
            "backbone_http_admitted_in_flight",
            "gauge",
            "Requests holding an admission slot now.",
            self.in_flight() as f64,
        );
        out.single(
            "backbone_memory_pressure",
            "gauge",
            "1 while resident memory is above [limits] max_rss_mb and concurrency is reduced.",
            if self.is_over_memory() { 1.0 } else { 0.0 },
        );
    }
}

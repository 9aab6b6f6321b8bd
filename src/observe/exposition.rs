//! `GET /metrics`: every metric of the server in the Prometheus text format (version 0.0.4).
//!
//! Families: `backbone_http_*` (requests by route template, method and status; latency
//! histograms; in-flight), `backbone_store_*` (file size, commits, batch sizes, commit
//! latency), `backbone_jobs_*` (depth per queue and state, oldest waiting age, runs,
//! failures, run durations), `backbone_search_*` (index lag, documents, commits, query
//! latency), `backbone_mail_*`, `backbone_auth_*`, `backbone_request_log_*`,
//! `backbone_process_*` and `backbone_host_*`.

use serde_json::Value;

use super::ObserveError;
use crate::app::App;
use crate::util::metrics::Exposition;

/// `backbone_search_*`: index lag, documents, commits, query latency.
async fn render_search(app: &App, out: &mut Exposition) {
    let metrics = app.search.metrics();
    if let Ok(status) = app.search.status().await {
        out.single(
            "backbone_search_index_lag",
            "gauge",
            "Outbox sequence minus the sequence committed to the search index (changes not yet searchable).",
            status.lag as f64,
        );
        out.single(
            "backbone_search_documents",
            "gauge",
            "Documents in the search index.",
            status.documents as f64,
        );
        out.single(
            "backbone_search_indexer_healthy",
            "gauge",
            "1 while the indexer runs and its last commit succeeded.",
            if status.healthy { 1.0 } else { 0.0 },
        );
    }
    out.single(
        "backbone_search_commits_total",
        "counter",
        "Search index commits that succeeded.",
        metrics.commits.get() as f64,
    );
    out.single(
        "backbone_search_commit_failures_total",
        "counter",
        "Search index commits that failed.",
        metrics.commit_failures.get() as f64,
    );
    out.single(
        "backbone_search_outbox_applied_total",
        "counter",
        "Search outbox entries applied to the index.",
        metrics.outbox_applied.get() as f64,
    );
    out.single(
        "backbone_search_reindexed_documents_total",
        "counter",
        "Documents written by reindex jobs.",
        metrics.reindexed_docs.get() as f64,
    );
    out.family("backbone_search_commit_duration_seconds", "histogram", "Time to commit the search index.");
    out.histogram("backbone_search_commit_duration_seconds", &[], &metrics.commit_seconds);
    out.family("backbone_search_query_duration_seconds", "histogram", "Time to answer a search.");
    out.histogram("backbone_search_query_duration_seconds", &[], &metrics.query_seconds);
}

/// Renders the whole document.
pub async fn render(app: &App) -> Result<String, ObserveError> {
    let mut out = Exposition::default();
    out.single("backbone_up", "gauge", "1 while the server answers.", 1.0);
    if let Some(http) = app.observe.http() {
        http.render(&mut out);
    }
    out.single(
        "backbone_rate_limited_total",
        "counter",
        "Requests and sign-in attempts refused by a rate limit (429).",
        app.limiter.refused.get() as f64,
    );
    let pressure = &app.observe.pressure;
    out.family("backbone_http_shed_total", "counter", "Requests refused by load shedding (503), by reason.");
    for (shed, count) in pressure.shed_counts() {
        out.sample("backbone_http_shed_total", &[("reason", shed.label())], count as f64);
    }
    out.single(
        "backbone_http_admitted_in_flight",
        "gauge",
        "Requests holding an admission slot now.",
        pressure.in_flight() as f64,
    );
    out.single(
        "backbone_memory_pressure",
        "gauge",
        "1 while resident memory is above [limits] max_rss_mb and concurrency is reduced.",
        if pressure.is_over_memory() { 1.0 } else { 0.0 },
    );

    let store = &app.store;
    let stats = store.writer_stats();
    out.single("backbone_store_file_bytes", "gauge", "Size of the data file.", store.file_bytes() as f64);
    out.single(
        "backbone_store_healthy",
        "gauge",
        "1 while the store takes writes (0 after a failed commit until the file is reopened).",
        if store.is_healthy() { 1.0 } else { 0.0 },
    );
    out.single(
        "backbone_store_commits_total",
        "counter",
        "Group commits that succeeded.",
        stats.commits.get() as f64,
    );
    out.single(
        "backbone_store_commit_failures_total",
        "counter",
        "Group commits that failed.",
        stats.failed_commits.get() as f64,
    );
    out.family("backbone_store_batch_size", "histogram", "Writes per group commit.");
    out.histogram("backbone_store_batch_size", &[], &stats.batch_size);
    out.family(
        "backbone_store_commit_duration_seconds",
        "histogram",
        "Time to apply and durably commit a batch.",
    );
    out.histogram("backbone_store_commit_duration_seconds", &[], &stats.commit_seconds);

    render_search(app, &mut out).await;

    let jobs = app.jobs.stats().await.map_err(|e| match e {
        crate::jobs::JobsError::Store(s) => ObserveError::Store(s),
        other => ObserveError::Store(crate::store::StoreError::Internal(other.to_string())),
    })?;
    out.family("backbone_jobs", "gauge", "Jobs by queue and state.");
    if let Some(queues) = jobs.get("queues").and_then(Value::as_object) {
        for (queue, q) in queues {
            if let Some(states) = q.get("states").and_then(Value::as_object) {
                for (state, n) in states {
                    out.sample(
                        "backbone_jobs",
                        &[("queue", queue), ("state", state)],
                        n.as_f64().unwrap_or(0.0),
                    );
                }
            }
        }
    }
    out.family(
        "backbone_jobs_oldest_waiting_seconds",
        "gauge",
        "Age of the oldest job that is due but not yet running, per queue (0 when none).",
    );
    if let Some(queues) = jobs.get("queues").and_then(Value::as_object) {
        for (queue, q) in queues {
            let age = q.get("oldestWaitingMs").and_then(Value::as_f64).unwrap_or(0.0) / 1000.0;
            out.sample("backbone_jobs_oldest_waiting_seconds", &[("queue", queue)], age);
        }
    }
    let runs = app.jobs.run_metrics();
    out.single(
        "backbone_jobs_runs_total",
        "counter",
        "Job handler runs that finished.",
        runs.runs.get() as f64,
    );
    out.single(
        "backbone_jobs_failures_total",
        "counter",
        "Job runs that failed (retried or dead).",
        runs.failures.get() as f64,
    );
    out.family("backbone_jobs_run_duration_seconds", "histogram", "Time a job handler ran.");
    out.histogram("backbone_jobs_run_duration_seconds", &[], &runs.duration);

    let mail = app.mail.counters();
    out.single(
        "backbone_mail_sent_total",
        "counter",
        "Emails the SMTP server accepted.",
        mail.sent.get() as f64,
    );
    out.single(
        "backbone_mail_failed_total",
        "counter",
        "Email delivery attempts that failed.",
        mail.failed.get() as f64,
    );
    out.single(
        "backbone_mail_dead_total",
        "counter",
        "Emails given up on (permanent failure or attempts exhausted).",
        mail.dead.get() as f64,
    );

    let logins = &app.auth.logins;
    out.family("backbone_auth_logins_total", "counter", "Password sign-ins by outcome.");
    out.sample("backbone_auth_logins_total", &[("outcome", "ok")], logins.ok.get() as f64);
    out.sample("backbone_auth_logins_total", &[("outcome", "failed")], logins.failed.get() as f64);

    let log = &app.observe.requests;
    out.single(
        "backbone_request_log_written_total",
        "counter",
        "Request log rows stored.",
        log.written.get() as f64,
    );
    out.single(
        "backbone_request_log_dropped_total",
        "counter",
        "Request log rows dropped because the in-memory queue was full.",
        log.dropped.get() as f64,
    );

    let host = app.observe.host.read().await;
    out.single(
        "backbone_process_cpu_percent",
        "gauge",
        "CPU used by the server process, percent of one core.",
        host.process_cpu_percent,
    );
    out.single(
        "backbone_process_resident_memory_bytes",
        "gauge",
        "Resident memory of the server process.",
        host.process_rss_bytes as f64,
    );
    out.single(
        "backbone_process_virtual_memory_bytes",
        "gauge",
        "Virtual memory of the server process.",
        host.process_virtual_bytes as f64,
    );
    out.single(
        "backbone_process_open_fds",
        "gauge",
        "Open file descriptors.",
        host.process_open_files as f64,
    );
    out.single(
        "backbone_process_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
        host.process_uptime_secs as f64,
    );
    out.single(
        "backbone_host_cpu_percent",
        "gauge",
        "CPU used by the whole host, percent.",
        host.host_cpu_percent,
    );
    out.single(
        "backbone_host_memory_total_bytes",
        "gauge",
        "Memory of the host.",
        host.host_memory_total_bytes as f64,
    );
    out.single(
        "backbone_host_memory_available_bytes",
        "gauge",
        "Memory available for new work on the host.",
        host.host_memory_available_bytes as f64,
    );
    out.single("backbone_host_load1", "gauge", "Host load average over one minute.", host.host_load1);
    out.single(
        "backbone_host_uptime_seconds",
        "gauge",
        "Seconds since the host booted.",
        host.host_uptime_secs as f64,
    );
    out.single(
        "backbone_disk_free_bytes",
        "gauge",
        "Free space of the file system holding the data directory.",
        host.disk_free_bytes as f64,
    );
    out.single(
        "backbone_disk_total_bytes",
        "gauge",
        "Size of the file system holding the data directory.",
        host.disk_total_bytes as f64,
    );
    Ok(out.finish())
}

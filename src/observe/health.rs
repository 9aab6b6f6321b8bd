//! Readiness: may this server take traffic? Each check says yes or no with a reason:
//! `storage` (a durable write goes through within 2 s), `queue` (job workers run),
//! `disk` (free space of the data directory's disk above `ready_min_disk_free_mb`),
//! `search` (the indexer thread runs and its last index commit succeeded).

use std::time::Duration;

use serde_json::{json, Value};

use crate::app::App;

/// One check's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// Runs every readiness check.
pub async fn checks(app: &App) -> Vec<Check> {
    let storage = match tokio::time::timeout(Duration::from_secs(2), app.probe_write()).await {
        Ok(Ok(())) => Check { name: "storage", ok: true, detail: "writable".into() },
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness probe failed");
            Check { name: "storage", ok: false, detail: "Storage is not writable.".into() }
        }
        Err(_) => {
            Check { name: "storage", ok: false, detail: "Storage did not answer within 2 seconds.".into() }
        }
    };
    let queue = if !app.config.jobs.workers {
        Check { name: "queue", ok: true, detail: "workers are off ([jobs] workers = false)".into() }
    } else if app.jobs.is_started() {
        Check { name: "queue", ok: true, detail: "running".into() }
    } else {
        Check { name: "queue", ok: false, detail: "Job workers are not running.".into() }
    };
    let host = app.observe.host.read().await;
    let min = app.config.observe.ready_min_disk_free_mb.saturating_mul(1 << 20);
    let free_mb = host.disk_free_bytes >> 20;
    let disk = if host.disk_free_bytes >= min {
        Check { name: "disk", ok: true, detail: format!("{free_mb} MiB free") }
    } else {
        Check {
            name: "disk",
            ok: false,
            detail: format!(
                "Only {free_mb} MiB free on the data directory's disk (needs {}).",
                app.config.observe.ready_min_disk_free_mb
            ),
        }
    };
    let search = match app.search.is_healthy() {
        None => Check { name: "search", ok: true, detail: "not started".into() },
        Some(true) => Check { name: "search", ok: true, detail: "indexer running".into() },
        Some(false) => Check { name: "search", ok: false, detail: "The search indexer is failing.".into() },
    };
    vec![storage, queue, disk, search]
}

/// The checks as a JSON object `{name: {ok, detail}}`.
pub fn to_json(checks: &[Check]) -> Value {
    let map: serde_json::Map<String, Value> =
        checks.iter().map(|c| (c.name.to_string(), json!({"ok": c.ok, "detail": c.detail}))).collect();
    Value::Object(map)
}

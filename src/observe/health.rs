//! Readiness: may this server take traffic? Each check says yes or no with a reason:
//! `storage` (a durable write goes through within 2 s), `queue` (job workers run),
//! `disk` (free space of the data directory's disk above `ready_min_disk_free_mb`),
//! `search` (the indexer thread runs and its last index commit succeeded).

use std::time::Duration;

use serde_json::{json, Value};

use crate::store::{Store, StoreError, Table, WriteTx};

/// One check's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// What the checks other than storage look at, gathered by the composition root.
#[derive(Debug, Clone, PartialEq)]
pub struct Readiness {
    /// Whether job workers are meant to run (`[jobs] workers`).
    pub workers_enabled: bool,
    /// Whether they do.
    pub workers_running: bool,
    /// Free bytes of the data directory's disk.
    pub disk_free_bytes: u64,
    /// `[observe] ready_min_disk_free_mb`.
    pub min_disk_free_mb: u64,
    /// The search indexer's health; `None` when search was never started.
    pub search_healthy: Option<bool>,
}

/// A tiny durable write through the group-commit writer.
async fn probe_write(store: &Store) -> Result<(), StoreError> {
    store
        .write(|tx: &mut WriteTx<'_>| -> Result<(), StoreError> {
            tx.put(Table::Meta, b"ready_probe", chrono::Utc::now().timestamp().to_le_bytes().to_vec());
            Ok(())
        })
        .await
}

/// Runs every readiness check: a probe write to `store`, then the figures of `state`.
pub async fn checks(store: &Store, state: &Readiness) -> Vec<Check> {
    let storage = match tokio::time::timeout(Duration::from_secs(2), probe_write(store)).await {
        Ok(Ok(())) => Check { name: "storage", ok: true, detail: "writable".into() },
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness probe failed");
            Check { name: "storage", ok: false, detail: "Storage is not writable.".into() }
        }
        Err(_) => {
            Check { name: "storage", ok: false, detail: "Storage did not answer within 2 seconds.".into() }
        }
    };
    let queue = if !state.workers_enabled {
        Check { name: "queue", ok: true, detail: "workers are off ([jobs] workers = false)".into() }
    } else if state.workers_running {
        Check { name: "queue", ok: true, detail: "running".into() }
    } else {
        Check { name: "queue", ok: false, detail: "Job workers are not running.".into() }
    };
    let min = state.min_disk_free_mb.saturating_mul(1 << 20);
    let free_mb = state.disk_free_bytes >> 20;
    let disk = if state.disk_free_bytes >= min {
        Check { name: "disk", ok: true, detail: format!("{free_mb} MiB free") }
    } else {
        Check {
            name: "disk",
            ok: false,
            detail: format!(
                "Only {free_mb} MiB free on the data directory's disk (needs {}).",
                state.min_disk_free_mb
            ),
        }
    };
    let search = match state.search_healthy {
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

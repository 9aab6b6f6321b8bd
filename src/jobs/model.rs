//! The job record, its states, its storage keys, and the index bookkeeping every state
//! change goes through ([`save`]), so the tables never disagree with the job bodies.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::clock::format_ms;
use super::JobsError;
use crate::store::{ReadTx, ScanControl, StoreError, Table, WriteTx};

/// Most attempt errors kept on a job (the oldest are dropped).
const KEPT_ERRORS: usize = 10;
/// Longest error message kept, in characters.
const ERROR_CHARS: usize = 2000;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for a `run_at` in the future (enqueued with a delay, or snoozed).
    Scheduled,
    /// Waiting to be claimed.
    Available,
    /// Claimed by a worker.
    Running,
    /// Finished successfully.
    Completed,
    /// Failed; waiting for its next attempt at `run_at`.
    Retrying,
    /// Failed its last attempt (or was discarded); kept for inspection and replay.
    Dead,
    /// Cancelled before or while running.
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 7] = [
        JobState::Scheduled,
        JobState::Available,
        JobState::Running,
        JobState::Completed,
        JobState::Retrying,
        JobState::Dead,
        JobState::Cancelled,
    ];

    /// One-byte code used in index keys.
    pub fn code(self) -> u8 {
        match self {
            JobState::Scheduled => 1,
            JobState::Available => 2,
            JobState::Running => 3,
            JobState::Completed => 4,
            JobState::Retrying => 5,
            JobState::Dead => 6,
            JobState::Cancelled => 7,
        }
    }

    pub fn from_code(code: u8) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.code() == code)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Scheduled => "scheduled",
            JobState::Available => "available",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Retrying => "retrying",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(name: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Waiting in the ready index for its `run_at`.
    pub fn is_waiting(self) -> bool {
        matches!(self, JobState::Scheduled | JobState::Available | JobState::Retrying)
    }

    /// Done for good (until replayed); subject to retention pruning.
    pub fn is_finished(self) -> bool {
        matches!(self, JobState::Completed | JobState::Dead | JobState::Cancelled)
    }
}

/// The error of one failed attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptError {
    pub attempt: u32,
    pub at: i64,
    pub error: String,
}

/// A job as stored in [`Table::Jobs`]. Times are epoch milliseconds (UTC).
///
/// Stored as compact JSON: the id lives only in the key, and every field but `state` and
/// `attempt` has a one- or two-letter name (the long camelCase names are still read, as
/// aliases). Smaller rows mean fewer B-tree pages rewritten per state change, which is most
/// of the writer's work on the claim and completion path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Not stored in the body: [`Job::decode`] takes it from the key.
    #[serde(skip)]
    pub id: u64,
    #[serde(rename = "k", alias = "kind")]
    pub kind: String,
    #[serde(rename = "q", alias = "queue")]
    pub queue: String,
    #[serde(rename = "p", alias = "payload")]
    pub payload: Value,
    #[serde(rename = "pr", alias = "priority")]
    pub priority: u8,
    pub state: JobState,
    /// Attempts started so far (incremented when claimed).
    pub attempt: u32,
    #[serde(rename = "ma", alias = "maxAttempts")]
    pub max_attempts: u32,
    #[serde(rename = "uk", alias = "uniqueKey", default, skip_serializing_if = "Option::is_none")]
    pub unique_key: Option<String>,
    #[serde(rename = "to", alias = "timeoutMs")]
    pub timeout_ms: u64,
    #[serde(rename = "r", alias = "runAt")]
    pub run_at: i64,
    #[serde(rename = "c", alias = "created")]
    pub created: i64,
    #[serde(rename = "u", alias = "updated")]
    pub updated: i64,
    #[serde(rename = "s", alias = "startedAt", default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    #[serde(rename = "f", alias = "finishedAt", default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    #[serde(rename = "g", alias = "progress", default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Value>,
    #[serde(rename = "e", alias = "errors", default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<AttemptError>,
    #[serde(rename = "x", alias = "cancelRequested", default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel_requested: bool,
}

impl Job {
    pub fn encode(&self) -> Result<Vec<u8>, JobsError> {
        serde_json::to_vec(self).map_err(|e| JobsError::Internal(format!("cannot encode job: {e}")))
    }

    /// Decodes the body stored under job `id`.
    pub fn decode(id: u64, bytes: &[u8]) -> Result<Job, JobsError> {
        let mut job: Job = serde_json::from_slice(bytes)
            .map_err(|e| JobsError::Internal(format!("cannot decode job {id}: {e}")))?;
        job.id = id;
        Ok(job)
    }

    /// Records the error of the current attempt.
    pub fn push_error(&mut self, at: i64, error: &str) {
        let error: String = error.chars().take(ERROR_CHARS).collect();
        self.errors.push(AttemptError { attempt: self.attempt, at, error });
        if self.errors.len() > KEPT_ERRORS {
            let extra = self.errors.len() - KEPT_ERRORS;
            self.errors.drain(..extra);
        }
    }

    pub fn last_error(&self) -> Option<&str> {
        self.errors.last().map(|e| e.error.as_str())
    }

    /// The API representation.
    pub fn to_json(&self) -> Value {
        let opt_time = |t: Option<i64>| t.map(format_ms).map_or(Value::Null, Value::String);
        json!({
            "id": self.id.to_string(),
            "kind": self.kind,
            "queue": self.queue,
            "state": self.state.as_str(),
            "payload": self.payload,
            "priority": self.priority,
            "attempt": self.attempt,
            "maxAttempts": self.max_attempts,
            "uniqueKey": self.unique_key,
            "timeoutMs": self.timeout_ms,
            "runAt": format_ms(self.run_at),
            "created": format_ms(self.created),
            "updated": format_ms(self.updated),
            "startedAt": opt_time(self.started_at),
            "finishedAt": opt_time(self.finished_at),
            "progress": self.progress,
            "lastError": self.last_error(),
            "errors": self.errors.iter().map(|e| json!({
                "attempt": e.attempt, "at": format_ms(e.at), "error": e.error,
            })).collect::<Vec<_>>(),
            "cancelRequested": self.cancel_requested,
        })
    }
}

pub fn job_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// Epoch ms as an order-preserving key part (times before 1970 sort first, as 0).
fn time_bytes(ms: i64) -> [u8; 8] {
    (ms.max(0) as u64).to_be_bytes()
}

pub fn queue_prefix(queue: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(queue.len() + 1);
    key.extend_from_slice(queue.as_bytes());
    key.push(0);
    key
}

pub fn ready_key(job: &Job) -> Vec<u8> {
    let mut key = queue_prefix(&job.queue);
    key.push(job.priority);
    key.extend_from_slice(&time_bytes(job.run_at));
    key.extend_from_slice(&job.id.to_be_bytes());
    key
}

/// Splits a ready key into (priority, run_at, id).
pub fn parse_ready_key(key: &[u8]) -> Option<(&str, u8, i64, u64)> {
    let split = key.iter().position(|&b| b == 0)?;
    let queue = std::str::from_utf8(&key[..split]).ok()?;
    let rest = &key[split + 1..];
    if rest.len() != 17 {
        return None;
    }
    let run_at = u64::from_be_bytes(rest[1..9].try_into().ok()?) as i64;
    let id = u64::from_be_bytes(rest[9..17].try_into().ok()?);
    Some((queue, rest[0], run_at, id))
}

pub fn state_key(state: JobState, queue: &str, id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(queue.len() + 10);
    key.push(state.code());
    key.extend_from_slice(queue.as_bytes());
    key.push(0);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// Splits a state key into (state, queue, id).
pub fn parse_state_key(key: &[u8]) -> Option<(JobState, &str, u64)> {
    let (&code, rest) = key.split_first()?;
    let state = JobState::from_code(code)?;
    if rest.len() < 9 {
        return None;
    }
    let (queue, id) = rest.split_at(rest.len() - 9);
    let queue = std::str::from_utf8(queue).ok()?;
    let id = u64::from_be_bytes(id[1..].try_into().ok()?);
    Some((state, queue, id))
}

pub fn finished_key(at: i64, id: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&time_bytes(at));
    key[8..].copy_from_slice(&id.to_be_bytes());
    key
}

/// Loads a job inside a write.
pub fn load(tx: &WriteTx<'_>, id: u64) -> Result<Option<Job>, JobsError> {
    match tx.get(Table::Jobs, &job_key(id))? {
        Some(bytes) => Ok(Some(Job::decode(id, &bytes)?)),
        None => Ok(None),
    }
}

/// Where `job` sits in the state indexes: every job is in exactly one of them, by state.
///
/// - waiting (scheduled, available, retrying): [`Table::JobsReady`], key [`ready_key`],
///   value the state code then the kind — the dispatcher claims from it in priority and
///   `run_at` order, and lists and counts read the state from the value;
/// - running: [`Table::JobsByState`], key [`state_key`], value the kind (orphan recovery
///   scans it at startup);
/// - finished (completed, dead, cancelled): [`Table::JobsFinished`], key [`finished_key`],
///   value the state code, the queue, `0`, the kind — retention pruning walks it by age.
///
/// One entry per job (not a by-state entry besides its ready or finished one) keeps a job's
/// life at 8 key writes: enqueue 2, claim 3, completion 3.
pub fn index_key(job: &Job) -> Option<(Table, Vec<u8>)> {
    if job.state.is_waiting() {
        Some((Table::JobsReady, ready_key(job)))
    } else if job.state == JobState::Running {
        Some((Table::JobsByState, state_key(job.state, &job.queue, job.id)))
    } else {
        job.finished_at.map(|at| (Table::JobsFinished, finished_key(at, job.id).to_vec()))
    }
}

/// The value stored under [`index_key`] for `job`.
pub fn index_value(job: &Job) -> Vec<u8> {
    let mut value = Vec::with_capacity(job.queue.len() + job.kind.len() + 2);
    if job.state.is_finished() {
        value.push(job.state.code());
        value.extend_from_slice(job.queue.as_bytes());
        value.push(0);
    } else if job.state.is_waiting() {
        value.push(job.state.code());
    }
    value.extend_from_slice(job.kind.as_bytes());
    value
}

/// Splits a ready-queue value into (state, kind).
pub fn parse_ready_value(value: &[u8]) -> Option<(JobState, &[u8])> {
    let (&code, kind) = value.split_first()?;
    Some((JobState::from_code(code)?, kind))
}

/// Splits a finished-index value into (state, queue, kind).
pub fn parse_finished_value(value: &[u8]) -> Option<(JobState, &str, &[u8])> {
    let (&code, rest) = value.split_first()?;
    let split = rest.iter().position(|&b| b == 0)?;
    let queue = std::str::from_utf8(&rest[..split]).ok()?;
    Some((JobState::from_code(code)?, queue, &rest[split + 1..]))
}

/// Splits a finished-index key into (finished_at, id).
pub fn parse_finished_key(key: &[u8]) -> Option<(i64, u64)> {
    let at: [u8; 8] = key.get(..8)?.try_into().ok()?;
    let id: [u8; 8] = key.get(8..)?.try_into().ok()?;
    Some((u64::from_be_bytes(at) as i64, u64::from_be_bytes(id)))
}

/// Stores `new` (the job after a change; `old` is what was stored before, if anything) and
/// moves its index entries accordingly.
pub fn save(tx: &mut WriteTx<'_>, old: Option<&Job>, new: &Job) -> Result<(), JobsError> {
    save_encoded(tx, old, new, new.encode()?)
}

/// [`save`] with `new` already encoded (`bytes` must be `new.encode()`).
pub fn save_encoded(
    tx: &mut WriteTx<'_>,
    old: Option<&Job>,
    new: &Job,
    bytes: Vec<u8>,
) -> Result<(), JobsError> {
    if let Some(old) = old {
        remove_indexes(tx, old, new.state.is_finished() || old.unique_key != new.unique_key)?;
    }
    if let Some((table, key)) = index_key(new) {
        tx.put(table, &key, index_value(new));
    }
    if let (Some(key), false) = (&new.unique_key, new.state.is_finished()) {
        tx.put(Table::JobsUnique, key.as_bytes(), new.id.to_be_bytes().to_vec());
    }
    tx.put(Table::Jobs, &job_key(new.id), bytes);
    Ok(())
}

/// Removes the job and all its index entries.
pub fn remove(tx: &mut WriteTx<'_>, job: &Job) -> Result<(), JobsError> {
    remove_indexes(tx, job, true)?;
    tx.delete(Table::Jobs, &job_key(job.id));
    Ok(())
}

fn remove_indexes(tx: &mut WriteTx<'_>, job: &Job, release_unique: bool) -> Result<(), JobsError> {
    if let Some((table, key)) = index_key(job) {
        tx.delete(table, &key);
    }
    if let (Some(key), true) = (&job.unique_key, release_unique) {
        let holder = tx.get(Table::JobsUnique, key.as_bytes())?;
        if holder.as_deref() == Some(job.id.to_be_bytes().as_slice()) {
            tx.delete(Table::JobsUnique, key.as_bytes());
        }
    }
    Ok(())
}

/// Rebuilds the state indexes (ready, running, finished) from the stored jobs, as after the
/// schema 2 → 3 upgrade dropped them (see `store::JOBS_INDEX_REBUILD_FLAG`). Unique keys
/// are untouched. Returns the number of jobs indexed.
pub fn rebuild_indexes(tx: &mut WriteTx<'_>) -> Result<u64, JobsError> {
    for table in [Table::JobsReady, Table::JobsByState, Table::JobsFinished] {
        for (key, _) in tx.collect_prefix(table, b"")? {
            tx.delete(table, &key);
        }
    }
    let mut count = 0u64;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let mut chunk: Vec<(u64, Vec<u8>)> = Vec::new();
        tx.scan_prefix(Table::Jobs, b"", after.as_deref(), |k, v| {
            if let Ok(id) = <[u8; 8]>::try_from(k) {
                chunk.push((u64::from_be_bytes(id), v.to_vec()));
            }
            if chunk.len() >= 1024 {
                ScanControl::Stop
            } else {
                ScanControl::Continue
            }
        })?;
        let Some((last, _)) = chunk.last() else { break };
        after = Some(job_key(*last).to_vec());
        for (id, bytes) in chunk {
            let Ok(job) = Job::decode(id, &bytes) else {
                tracing::error!(job = id, "a stored job does not decode; left out of the indexes");
                continue;
            };
            if let Some((table, key)) = index_key(&job) {
                tx.put(table, &key, index_value(&job));
            }
            count += 1;
        }
    }
    Ok(count)
}

/// The delay before retry `attempt` (1-based: the delay after the first failure is
/// `attempt = 1`): `base * 2^(attempt-1)`, capped at `max`, plus `jitter` (0..1) times 10 %.
pub fn backoff_ms(attempt: u32, base: u64, max: u64, jitter: f64) -> u64 {
    let shift = attempt.saturating_sub(1).min(40);
    let delay = base.saturating_mul(1u64 << shift).min(max);
    let jitter = jitter.clamp(0.0, 1.0);
    delay.saturating_add((delay as f64 * 0.1 * jitter) as u64)
}

/// Visits every job's state-index entry as (state, queue, kind, id) without loading job
/// bodies. `state` and `queue` narrow which index and key range are read (the caller still
/// filters: a waiting state shares its index with the other waiting states).
pub fn visit_states(
    tx: &ReadTx,
    state: Option<JobState>,
    queue: Option<&str>,
    mut visit: impl FnMut(JobState, &str, &[u8], u64),
) -> Result<(), StoreError> {
    let wanted = |test: fn(JobState) -> bool| state.is_none_or(test);
    if wanted(JobState::is_waiting) {
        let prefix = queue.map(queue_prefix).unwrap_or_default();
        tx.scan_prefix(Table::JobsReady, &prefix, false, None, |k, v| {
            if let (Some((q, _, _, id)), Some((s, kind))) = (parse_ready_key(k), parse_ready_value(v)) {
                visit(s, q, kind, id);
            }
            ScanControl::Continue
        })?;
    }
    if wanted(|s| s == JobState::Running) {
        let mut prefix = vec![JobState::Running.code()];
        if let Some(q) = queue {
            prefix.extend_from_slice(&queue_prefix(q));
        }
        tx.scan_prefix(Table::JobsByState, &prefix, false, None, |k, v| {
            if let Some((s, q, id)) = parse_state_key(k) {
                visit(s, q, v, id);
            }
            ScanControl::Continue
        })?;
    }
    if wanted(JobState::is_finished) {
        tx.scan_prefix(Table::JobsFinished, b"", false, None, |k, v| {
            if let (Some((_, id)), Some((s, q, kind))) = (parse_finished_key(k), parse_finished_value(v)) {
                visit(s, q, kind, id);
            }
            ScanControl::Continue
        })?;
    }
    Ok(())
}

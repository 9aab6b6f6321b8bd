//! The job record, its states, its storage keys, and the index bookkeeping every state
//! change goes through ([`save`]), so the tables never disagree with the job bodies.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::clock::format_ms;
use super::JobsError;
use crate::store::{Table, WriteTx};

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
    if new.state.is_waiting() {
        tx.put(Table::JobsReady, &ready_key(new), Vec::new());
    }
    tx.put(Table::JobsByState, &state_key(new.state, &new.queue, new.id), new.kind.as_bytes().to_vec());
    if let (Some(at), true) = (new.finished_at, new.state.is_finished()) {
        tx.put(Table::JobsFinished, &finished_key(at, new.id), vec![new.state.code()]);
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
    if job.state.is_waiting() {
        tx.delete(Table::JobsReady, &ready_key(job));
    }
    tx.delete(Table::JobsByState, &state_key(job.state, &job.queue, job.id));
    if let (Some(at), true) = (job.finished_at, job.state.is_finished()) {
        tx.delete(Table::JobsFinished, &finished_key(at, job.id));
    }
    if let (Some(key), true) = (&job.unique_key, release_unique) {
        let holder = tx.get(Table::JobsUnique, key.as_bytes())?;
        if holder.as_deref() == Some(job.id.to_be_bytes().as_slice()) {
            tx.delete(Table::JobsUnique, key.as_bytes());
        }
    }
    Ok(())
}

/// The delay before retry `attempt` (1-based: the delay after the first failure is
/// `attempt = 1`): `base * 2^(attempt-1)`, capped at `max`, plus `jitter` (0..1) times 10 %.
pub fn backoff_ms(attempt: u32, base: u64, max: u64, jitter: f64) -> u64 {
    let shift = attempt.saturating_sub(1).min(40);
    let delay = base.saturating_mul(1u64 << shift).min(max);
    let jitter = jitter.clamp(0.0, 1.0);
    delay.saturating_add((delay as f64 * 0.1 * jitter) as u64)
}

//! Job kinds: the handlers (plain async Rust functions) and their defaults, registered in
//! code, plus the built-in kinds (`noop`, and with `jobs.test_kinds` on: `sleep`, `fail`,
//! `test.effect`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{Jobs, JobsError};
use crate::store::{Table, WriteTx};

/// Extra writes applied in the transaction that marks the job completed: they commit
/// together or not at all. Returning an error fails the attempt (it is retried).
pub type Effect = Box<dyn for<'a, 'b> FnOnce(&'a mut WriteTx<'b>) -> Result<(), JobsError> + Send>;

/// How a handler finished.
pub enum Done {
    /// Success, with optional writes committed together with the completion.
    Complete(Option<Effect>),
    /// Not now: run again after this delay. The attempt counts, and `max_attempts` grows by
    /// one so a snooze never uses up the job's retries.
    Snooze(Duration),
    /// The attempt failed (retried or dead exactly as for `Err(failure)`), with writes
    /// committed together with the failed attempt (e.g. a delivery log row that records the
    /// reply). If the effect itself fails, a plain retryable failure is recorded instead.
    FailWith(JobFailure, Effect),
}

impl Done {
    pub fn complete() -> Result<Done, JobFailure> {
        Ok(Done::Complete(None))
    }

    /// Completes with `effect` applied in the completing transaction.
    pub fn complete_with(
        effect: impl for<'a, 'b> FnOnce(&'a mut WriteTx<'b>) -> Result<(), JobsError> + Send + 'static,
    ) -> Result<Done, JobFailure> {
        Ok(Done::Complete(Some(Box::new(effect))))
    }

    /// Fails the attempt with `effect` applied in the transaction that records the failure.
    pub fn fail_with(
        failure: JobFailure,
        effect: impl for<'a, 'b> FnOnce(&'a mut WriteTx<'b>) -> Result<(), JobsError> + Send + 'static,
    ) -> Result<Done, JobFailure> {
        Ok(Done::FailWith(failure, Box::new(effect)))
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone)]
pub struct JobFailure {
    pub message: String,
    /// Do not retry: the job goes straight to `dead`.
    pub discard: bool,
}

impl JobFailure {
    /// A failure that will be retried while attempts remain.
    pub fn retry(message: impl Into<String>) -> JobFailure {
        JobFailure { message: message.into(), discard: false }
    }

    /// A permanent failure: the job is dead at once.
    pub fn discard(message: impl Into<String>) -> JobFailure {
        JobFailure { message: message.into(), discard: true }
    }
}

/// What a handler gets: the job, its cancellation, progress reporting, and the queue
/// (to enqueue follow-up jobs, e.g. inside its completion [`Effect`]).
#[derive(Clone)]
pub struct JobContext {
    pub id: u64,
    pub kind: String,
    pub queue: String,
    pub attempt: u32,
    pub max_attempts: u32,
    pub payload: Value,
    cancel: CancellationToken,
    progress: Arc<Mutex<Option<Value>>>,
    jobs: Jobs,
}

impl JobContext {
    pub(super) fn new(
        job: &super::model::Job,
        cancel: CancellationToken,
        progress: Arc<Mutex<Option<Value>>>,
        jobs: Jobs,
    ) -> JobContext {
        JobContext {
            id: job.id,
            kind: job.kind.clone(),
            queue: job.queue.clone(),
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            payload: job.payload.clone(),
            cancel,
            progress,
            jobs,
        }
    }

    /// Fires when the job is cancelled, times out, or the server shuts down. Handlers that
    /// run long should select on it; a handler that ignores it is dropped after a grace period.
    pub fn cancelled(&self) -> &CancellationToken {
        &self.cancel
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Reports progress (any JSON, e.g. a percentage). Visible at once through the API;
    /// stored with the job when the attempt ends.
    pub fn progress(&self, value: Value) {
        self.jobs.note_progress(self.id, || {
            serde_json::json!({
                "id": self.id.to_string(),
                "kind": self.kind,
                "queue": self.queue,
                "state": "running",
                "attempt": self.attempt,
                "progress": value.clone(),
            })
        });
        if let Ok(mut slot) = self.progress.lock() {
            *slot = Some(value);
        }
    }

    /// The queue, for follow-up enqueues (use [`Jobs::enqueue_in`] inside an [`Effect`]).
    pub fn jobs(&self) -> &Jobs {
        &self.jobs
    }
}

/// The future a handler returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Done, JobFailure>> + Send>>;
/// A job handler.
pub type Handler = Arc<dyn Fn(JobContext) -> HandlerFuture + Send + Sync>;

/// Defaults of one kind (an enqueue may override them).
#[derive(Debug, Clone, Default)]
pub struct KindOptions {
    pub queue: Option<String>,
    pub max_attempts: Option<u32>,
    pub timeout: Option<Duration>,
    /// First retry delay of this kind (doubling per attempt, capped at `[jobs]
    /// backoff_max_ms`); `None`: `[jobs] backoff_base_ms`. For kinds whose failures are
    /// someone else's outage (a webhook receiver), where a second-scale start wastes attempts.
    pub backoff_base: Option<Duration>,
}

#[derive(Clone)]
pub(super) struct Kind {
    pub handler: Handler,
    pub options: KindOptions,
}

/// Every job kind this build can run.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: HashMap<String, Kind>,
}

impl Registry {
    /// The built-in kinds; the test kinds only when `test_kinds` is set.
    pub fn with_builtins(test_kinds: bool) -> Registry {
        let mut registry = Registry::default();
        registry.register("noop", KindOptions::default(), |_ctx| async { Done::complete() });
        if test_kinds {
            registry.register("sleep", KindOptions::default(), sleep_kind);
            registry.register("fail", KindOptions::default(), fail_kind);
            registry.register("test.effect", KindOptions::default(), effect_kind);
        }
        registry
    }

    /// Registers (or replaces) a kind.
    pub fn register<F, Fut>(&mut self, kind: &str, options: KindOptions, handler: F)
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Done, JobFailure>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |ctx| Box::pin(handler(ctx)));
        self.kinds.insert(kind.to_string(), Kind { handler, options });
    }

    pub(super) fn get(&self, kind: &str) -> Option<&Kind> {
        self.kinds.get(kind)
    }

    pub fn contains(&self, kind: &str) -> bool {
        self.kinds.contains_key(kind)
    }

    /// Registered kind names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.kinds.keys().cloned().collect();
        names.sort();
        names
    }
}

/// `sleep`: waits `payload.ms` milliseconds (default 100), reporting progress; stops when
/// cancelled. `payload.snoozeMs` snoozes the first attempt instead.
async fn sleep_kind(ctx: JobContext) -> Result<Done, JobFailure> {
    if let Some(ms) = ctx.payload.get("snoozeMs").and_then(Value::as_u64) {
        if ctx.attempt == 1 {
            return Ok(Done::Snooze(Duration::from_millis(ms)));
        }
    }
    let total = ctx.payload.get("ms").and_then(Value::as_u64).unwrap_or(100);
    let steps = 10u64;
    for step in 1..=steps {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(total / steps)) => {}
            () = ctx.cancelled().cancelled() => return Err(JobFailure::retry("cancelled while sleeping")),
        }
        ctx.progress(serde_json::json!(step * 100 / steps));
    }
    Done::complete()
}

/// `fail`: fails every attempt with `payload.message`; succeeds from attempt
/// `payload.succeedAt` on; `payload.discard` makes the failure permanent.
async fn fail_kind(ctx: JobContext) -> Result<Done, JobFailure> {
    if let Some(at) = ctx.payload.get("succeedAt").and_then(Value::as_u64) {
        if u64::from(ctx.attempt) >= at {
            return Done::complete();
        }
    }
    let message =
        ctx.payload.get("message").and_then(Value::as_str).unwrap_or("failed on purpose").to_string();
    if ctx.payload.get("discard").and_then(Value::as_bool).unwrap_or(false) {
        Err(JobFailure::discard(message))
    } else {
        Err(JobFailure::retry(message))
    }
}

/// `test.effect`: appends `(job id, attempt) → pid` to `JobEffects` in the completing
/// transaction, after an optional `payload.ms` wait; with `payload.log` set to a file path it
/// first appends `start <id> <attempt> <pid>` to that file (a non-transactional side effect).
async fn effect_kind(ctx: JobContext) -> Result<Done, JobFailure> {
    let pid = std::process::id();
    if let Some(path) = ctx.payload.get("log").and_then(Value::as_str) {
        let line = format!("start {} {} {}\n", ctx.id, ctx.attempt, pid);
        let path = path.to_string();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            std::fs::OpenOptions::new().create(true).append(true).open(path)?.write_all(line.as_bytes())
        })
        .await
        .map_err(|e| JobFailure::retry(e.to_string()))?
        .map_err(|e| JobFailure::retry(format!("cannot write the start log: {e}")))?;
    }
    if let Some(ms) = ctx.payload.get("ms").and_then(Value::as_u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let (id, attempt) = (ctx.id, ctx.attempt);
    Done::complete_with(move |tx| {
        let mut key = id.to_be_bytes().to_vec();
        key.extend_from_slice(&attempt.to_be_bytes());
        tx.put(Table::JobEffects, &key, pid.to_be_bytes().to_vec());
        Ok(())
    })
}

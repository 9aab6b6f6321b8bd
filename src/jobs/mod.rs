//! The durable background job queue, its workers and cron schedules, stored in the same
//! redb file as the data.
//!
//! Owns: the job model and states (`model.rs`), the kind registry and handler context
//! (`registry.rs`), dispatchers, runners, the completer, orphan recovery and retention
//! (`worker.rs`), cron schedules and their run history (`cron.rs`), and the injectable
//! clock (`clock.rs`). Enqueue can join the caller's own write transaction
//! ([`Jobs::enqueue_in`]); completion is recorded in one transaction with the handler's
//! [`registry::Effect`]. Knows nothing of HTTP; errors are [`JobsError`].
//!
//! # How it works
//!
//! The durable job queue, its workers and cron, in `data.redb` with the data.
//! `model.rs` (job, states, keys, the one `save` that moves index entries with every state
//! change), `registry.rs` (kinds → async handlers, `JobContext`, `Done`/`Effect`, built-in
//! kinds), `worker.rs` (dispatchers, runners, completer, orphan recovery, pruner), `cron.rs`,
//! `clock.rs` (injectable clock for backoff and cron tests).
//! - Tables: `jobs` (id → JSON body) and three state indexes, each job in exactly one
//!   (`model::index_key`): `jobs_ready` (queue, priority, run_at, id → state, kind: waiting
//!   jobs), `jobs_by_state` (running, queue, id → kind: running jobs, for orphan recovery) and
//!   `jobs_finished` (finished at, id → state, queue, kind: retention). Listing and stats read
//!   the three (`model::visit_states`) without decoding bodies. Plus `jobs_unique` (unique
//!   key → id while waiting or running), `crons`, `cron_runs`, `job_effects` (test kinds
//!   only). A job's life is 8 key writes (enqueue 2, claim 3, completion 3); until schema 3
//!   every job also had a by-state entry (11 writes) — the 2 → 3 upgrade drops the state
//!   indexes and `Jobs::open` rebuilds them. Ids are `max(last + 1, now_ms << 10)`:
//!   time-ordered, and above every stored id.
//! - States: `scheduled`/`available`/`retrying` (waiting in `jobs_ready`) → `running` →
//!   `completed` | `retrying` | `dead` | `cancelled`; `scheduled` again after a snooze. Retry
//!   delay `base · 2^(attempt-1)`, capped, + ≤10 % jitter. `dead`/`cancelled`/`completed` jobs
//!   are kept until retention and can be replayed (attempts reset). A kind may set its own
//!   base delay (`KindOptions::backoff_base`; `webhooks.deliver` starts at 30 s), still capped
//!   by `[jobs] backoff_max_ms`.
//! - Enqueue: `Jobs::enqueue_in(tx, spec)` stages the job in the caller's `WriteTx`; a
//!   `WriteTx::after_commit` hook wakes the queue's dispatcher only once the commit is durable.
//! - Claim: one dispatcher task per queue takes up to `free slots` due jobs (priority, then
//!   run_at, then id) in one write that sets `running`, `attempt + 1`; the runners start as
//!   soon as the writer has *applied* that write (before its fsync): a crash before the claim
//!   commits leaves the jobs `available`, and a completion always commits in a later batch.
//!   Dispatchers sleep on a `Notify` (enqueue, freed slot) or until the next `run_at` they
//!   saw — no polling. The pruner sleeps until the next expiry; cron until the next occurrence.
//! - Complete: the completer writes outcomes, batching plain ones; a handler's `Effect` runs in
//!   the completing transaction (its own write, so a failing effect discards only its writes
//!   and is recorded as a failed attempt). Completions are fenced: they apply only while the
//!   job is `running` with the same attempt (a zombie or duplicate completion is dropped).
//! - Cancel: a waiting job is cancelled at once; a running one gets `cancelRequested` and its
//!   runner's token fires; a handler that ignores it is dropped after 2 s. Timeouts use the
//!   same token. Graceful shutdown stops claiming, gives runners the grace period, then
//!   requeues the rest without counting the attempt.
//! - Orphans: redb's file lock means one process owns the queue, so at `Jobs::start` every
//!   `running` job is an orphan: requeued at once (the attempt counts; out of attempts → dead)
//!   before any dispatcher starts. CLI commands open the file without starting workers.
//! - Cron: the next occurrence is stored; firing enqueues the job, records the run and stores
//!   the next occurrence *after now* in one transaction: one run per occurrence, and one
//!   catch-up run after downtime however many occurrences were missed.
//!
//! - Handlers end with `Ok(Done::Complete(effect?))`, `Ok(Done::Snooze(d))`,
//!   `Err(JobFailure::retry|discard)`, or `Ok(Done::FailWith(failure, effect))`: a failed
//!   attempt whose effect (e.g. the mail log row with the SMTP reply) commits in the same
//!   transaction as the retry or death.
//!
//! **Architecture invariant:** a job's body and its index entries change only through
//! `model::save`/`model::remove`, inside the writer.

pub mod check;
pub mod clock;
pub mod cron;
mod metrics;
pub mod model;
pub mod registry;
mod worker;

pub use metrics::{JobStats, QueueStats, StateCounts};
pub use worker::RunMetrics;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::config::JobsSection;
use crate::store::{ScanControl, Store, StoreError, Table, WriteTx};
use crate::util::invalid::{parse_object, Collector, FieldError, Invalid, Summary, Typed};
use clock::{parse_ms, Clock};
use model::{job_key, load, save, visit_states, Job, JobState};
pub use registry::{Done, JobContext, JobFailure, KindOptions, Registry};

/// Highest priority number (lowest urgency); priority 0 runs first.
pub const MAX_PRIORITY: u8 = 9;
/// Most jobs per page in listings.
pub const MAX_PER_PAGE: usize = 1000;

/// What can go wrong in the jobs domain.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    /// No job or cron with that id.
    #[error("{0}")]
    NotFound(String),
    /// The input is invalid; the failure says where (summarized by its first problem).
    #[error("{0}")]
    Validation(Invalid),
    /// A malformed request parameter (filter, paging).
    #[error("{0}")]
    BadRequest(String),
    /// The job's state does not allow the action (e.g. deleting a running job).
    #[error("{0}")]
    Conflict(String),
    /// A completion or claim found the job changed underneath it (internal; never reaches
    /// a client in practice).
    #[error("the job changed while its attempt ran")]
    Stale,
    /// Encoding or invariant failure; details for the log only.
    #[error("{0}")]
    Internal(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Invalid> for JobsError {
    fn from(invalid: Invalid) -> JobsError {
        JobsError::Validation(invalid)
    }
}

fn job_not_found() -> JobsError {
    JobsError::NotFound("The requested job wasn't found.".into())
}

/// What to enqueue. Unset options fall back to the kind's defaults, then to `[jobs]` config.
#[derive(Debug, Clone, Default)]
pub struct JobSpec {
    pub kind: String,
    pub payload: Value,
    pub queue: Option<String>,
    pub priority: Option<u8>,
    /// Epoch ms; `None` = now.
    pub run_at: Option<i64>,
    pub max_attempts: Option<u32>,
    pub unique_key: Option<String>,
    pub timeout_ms: Option<u64>,
}

impl JobSpec {
    pub fn new(kind: &str, payload: Value) -> JobSpec {
        JobSpec { kind: kind.to_string(), payload, ..JobSpec::default() }
    }

    pub fn queue(mut self, queue: &str) -> JobSpec {
        self.queue = Some(queue.to_string());
        self
    }

    pub fn priority(mut self, priority: u8) -> JobSpec {
        self.priority = Some(priority);
        self
    }

    pub fn run_at(mut self, ms: i64) -> JobSpec {
        self.run_at = Some(ms);
        self
    }

    pub fn max_attempts(mut self, n: u32) -> JobSpec {
        self.max_attempts = Some(n);
        self
    }

    pub fn unique_key(mut self, key: &str) -> JobSpec {
        self.unique_key = Some(key.to_string());
        self
    }

    pub fn timeout_ms(mut self, ms: u64) -> JobSpec {
        self.timeout_ms = Some(ms);
        self
    }

    /// Reads the API's enqueue body: `kind`, `payload`, `queue`, `priority`, `runAt` (date)
    /// or `delayMs`, `maxAttempts`, `uniqueKey`, `timeoutMs`. Every problem is reported at
    /// once, summarized by the first.
    pub fn from_json(body: &Map<String, Value>, now_ms: i64) -> Result<JobSpec, JobsError> {
        let input: EnqueueInput = parse_object(Value::Object(body.clone()), Summary::FirstProblem)?;
        let mut c = Collector::new();
        let kind = c.typed("kind", input.kind, "validation_required", "Cannot be blank.").unwrap_or_default();
        if kind.is_empty() {
            c.add("kind", "validation_required", "Cannot be blank.");
        }
        let mut spec = JobSpec::new(&kind, input.payload);
        spec.queue = c.typed("queue", input.queue, "validation_invalid_type", "Must be a string.");
        spec.unique_key =
            c.typed("uniqueKey", input.unique_key, "validation_invalid_type", "Must be a string.");
        spec.priority =
            whole_number(&mut c, "priority", input.priority, u64::from(MAX_PRIORITY)).map(|p| p as u8);
        spec.max_attempts = whole_number(&mut c, "maxAttempts", input.max_attempts, 1000).map(|n| n as u32);
        spec.timeout_ms = whole_number(&mut c, "timeoutMs", input.timeout_ms, 7 * 86_400_000);
        let delay = whole_number(&mut c, "delayMs", input.delay_ms, 366 * 86_400_000);
        match (input.run_at, delay) {
            (Some(Typed::Ok(date)), None) => {
                spec.run_at = c.check("runAt", parse_ms(&date).ok_or_else(|| date_error("Invalid date.")))
            }
            (None, None) => {}
            (None, Some(delay)) => spec.run_at = Some(now_ms + delay as i64),
            (Some(Typed::Ok(_)), Some(_)) => {
                c.add("runAt", "validation_conflict", "Give runAt or delayMs, not both.")
            }
            (Some(Typed::Wrong(_)), _) => c.add_error("runAt", date_error("Must be a date string.")),
        }
        c.finish(Summary::FirstProblem)?;
        Ok(spec)
    }
}

/// The enqueue body of `POST /api/jobs`; members sent as `null` count as absent.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EnqueueInput {
    #[serde(default)]
    kind: Option<Typed<String>>,
    /// Any JSON (`null` included); `{}` when absent.
    #[serde(default = "empty_object")]
    payload: Value,
    #[serde(default)]
    queue: Option<Typed<String>>,
    #[serde(default)]
    priority: Option<Typed<u64>>,
    #[serde(default)]
    run_at: Option<Typed<String>>,
    #[serde(default)]
    delay_ms: Option<Typed<u64>>,
    #[serde(default)]
    max_attempts: Option<Typed<u64>>,
    #[serde(default)]
    unique_key: Option<Typed<String>>,
    #[serde(default)]
    timeout_ms: Option<Typed<u64>>,
}

fn empty_object() -> Value {
    json!({})
}

fn date_error(message: &str) -> FieldError {
    FieldError::new("validation_invalid_date", message)
}

/// An optional whole number from 0 to `max`, or a problem noted for `field`.
fn whole_number(c: &mut Collector, field: &str, value: Option<Typed<u64>>, max: u64) -> Option<u64> {
    match value? {
        Typed::Ok(n) if n <= max => Some(n),
        _ => {
            c.add(field, "validation_invalid_number", format!("Must be a whole number from 0 to {max}."));
            None
        }
    }
}

/// True for queue names of 1–64 characters `[A-Za-z0-9_.-]`.
fn valid_queue_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// The result of an enqueue.
#[derive(Debug, Clone)]
pub struct Enqueued {
    pub job: Job,
    /// True when a job with the same unique key was already waiting or running; `job` is that job.
    pub duplicate: bool,
}

/// Filters and paging of a job listing.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub state: Option<String>,
    pub kind: Option<String>,
    pub queue: Option<String>,
    pub page: Option<String>,
    pub per_page: Option<String>,
}

/// One page of jobs, newest first.
#[derive(Debug)]
pub struct JobPage {
    pub page: usize,
    pub per_page: usize,
    pub total_items: usize,
    pub items: Vec<Job>,
}

/// Parses PocketBase-style paging parameters.
pub fn paging(page: Option<&str>, per_page: Option<&str>) -> Result<(usize, usize), JobsError> {
    let parse = |name: &str, raw: Option<&str>, default: usize| -> Result<usize, JobsError> {
        match raw.map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(default),
            Some(s) => match s.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(JobsError::BadRequest(format!("{name} must be a whole number of at least 1."))),
            },
        }
    };
    Ok((parse("page", page, 1)?, parse("perPage", per_page, 30)?.min(MAX_PER_PAGE)))
}

struct Inner {
    store: Store,
    clock: Arc<dyn Clock>,
    registry: Registry,
    config: JobsSection,
    next_id: AtomicU64,
    runtime: worker::Runtime,
    watch: Watch,
}

/// Told about every committed change of a job (`create` when enqueued, `update` after) and
/// every progress report (`progress`, with the job's id, kind, state and progress), for
/// realtime's job topics: (job id, action, the job as the API shows it). Called after the
/// commit (on the writer thread) or from the handler: it must only hand the job over.
pub type JobObserver = Arc<dyn Fn(u64, &'static str, Value) + Send + Sync>;

/// The observer, and whether anyone is watching (no job is copied for nobody).
#[derive(Default)]
struct Watch {
    active: std::sync::OnceLock<Arc<std::sync::atomic::AtomicBool>>,
    observer: std::sync::OnceLock<JobObserver>,
}

/// Handle to the job queue. Cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

impl Jobs {
    /// Opens the queue over `store` (does not start workers: see [`Jobs::start`]).
    pub async fn open(
        store: Store,
        config: JobsSection,
        registry: Registry,
        clock: Arc<dyn Clock>,
    ) -> Result<Jobs, JobsError> {
        let flag = crate::store::JOBS_INDEX_REBUILD_FLAG;
        // Only a file just upgraded from schema 2 needs a write here; other starts only read.
        if store.read(move |tx| tx.get(Table::Meta, flag)).await?.is_some() {
            store
                .write(move |tx: &mut WriteTx<'_>| -> Result<(), JobsError> {
                    if tx.get(Table::Meta, flag)?.is_some() {
                        let n = model::rebuild_indexes(tx)?;
                        tx.delete(Table::Meta, flag);
                        tracing::info!(jobs = n, "job state indexes rebuilt for the new table layout");
                    }
                    Ok(())
                })
                .await?;
        }
        let last = store
            .read(|tx| {
                let mut last = 0u64;
                tx.scan_prefix(Table::Jobs, b"", true, None, |k, _| {
                    if let Ok(bytes) = <[u8; 8]>::try_from(k) {
                        last = u64::from_be_bytes(bytes);
                    }
                    ScanControl::Stop
                })?;
                Ok::<u64, JobsError>(last)
            })
            .await?;
        Ok(Jobs {
            inner: Arc::new(Inner {
                store,
                clock,
                registry,
                config,
                next_id: AtomicU64::new(last),
                runtime: worker::Runtime::default(),
                watch: Watch::default(),
            }),
        })
    }

    /// Calls `observer` with each job change once it is committed, while `active` is set.
    /// Set once (by the composition root); later calls are ignored.
    pub fn watch(&self, active: Arc<std::sync::atomic::AtomicBool>, observer: JobObserver) {
        let _ = self.inner.watch.observer.set(observer);
        let _ = self.inner.watch.active.set(active);
    }

    /// The observer, when someone watches.
    fn observer(&self) -> Option<&JobObserver> {
        let active = self.inner.watch.active.get()?.load(std::sync::atomic::Ordering::Relaxed);
        if active {
            self.inner.watch.observer.get()
        } else {
            None
        }
    }

    /// Tells the observer about `job` once `tx` has committed.
    pub(crate) fn note_after_commit(&self, tx: &mut WriteTx<'_>, job: &Job) {
        if let Some(observer) = self.observer() {
            let observer = observer.clone();
            let action =
                if job.attempt == 0 && job.state == JobState::Available { "create" } else { "update" };
            let (id, json) = (job.id, job.to_json());
            tx.after_commit(move || observer(id, action, json));
        }
    }

    /// Tells the observer about jobs whose change has committed.
    pub(crate) fn note_committed(&self, jobs: &[Job]) {
        if let Some(observer) = self.observer() {
            jobs.iter().for_each(|job| observer(job.id, "update", job.to_json()));
        }
    }

    /// Tells the observer about a running job's progress report.
    pub(crate) fn note_progress(&self, id: u64, progress: impl FnOnce() -> Value) {
        if let Some(observer) = self.observer() {
            observer(id, "progress", progress());
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// A fresh, strictly increasing id: about the creation time in ms times 1024, and always
    /// above every id stored (one process owns the file).
    fn next_id(&self) -> u64 {
        let floor = (self.now_ms().max(0) as u64) << 10;
        let previous = self
            .inner
            .next_id
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |cur| Some(cur.saturating_add(1).max(floor)));
        let prev = match previous {
            Ok(v) | Err(v) => v,
        };
        prev.saturating_add(1).max(floor)
    }

    /// Validates `spec` and builds the job (not yet stored).
    pub fn build(&self, spec: JobSpec) -> Result<Job, JobsError> {
        let config = &self.inner.config;
        let Some(kind) = self.inner.registry.get(&spec.kind) else {
            return Err(Invalid::of(
                "kind",
                "validation_unknown_kind",
                format!(
                    "Unknown job kind {:?}; registered: {}.",
                    spec.kind,
                    self.inner.registry.names().join(", ")
                ),
            )
            .into());
        };
        let mut c = Collector::new();
        let queue = spec.queue.or_else(|| kind.options.queue.clone()).unwrap_or_else(|| "default".into());
        if !valid_queue_name(&queue) {
            c.add("queue", "validation_invalid_queue", "Use 1-64 characters A-Z a-z 0-9 _ . -");
        }
        let priority = spec.priority.unwrap_or(0);
        if priority > MAX_PRIORITY {
            c.add("priority", "validation_invalid_number", "Must be from 0 to 9.");
        }
        let max_attempts =
            spec.max_attempts.or(kind.options.max_attempts).unwrap_or(config.default_max_attempts);
        if max_attempts == 0 {
            c.add("maxAttempts", "validation_invalid_number", "Must be at least 1.");
        }
        if let Some(key) = &spec.unique_key {
            if key.is_empty() || key.len() > 200 {
                c.add("uniqueKey", "validation_length", "Must be 1-200 bytes.");
            }
        }
        let timeout_ms = spec
            .timeout_ms
            .or(kind.options.timeout.map(|t| t.as_millis() as u64))
            .unwrap_or(config.default_timeout_secs.saturating_mul(1000));
        if timeout_ms == 0 {
            c.add("timeoutMs", "validation_invalid_number", "Must be at least 1.");
        }
        c.finish(Summary::FirstProblem)?;
        let now = self.now_ms();
        let run_at = spec.run_at.unwrap_or(now);
        Ok(Job {
            id: self.next_id(),
            kind: spec.kind,
            queue,
            payload: spec.payload,
            priority,
            state: if run_at > now { JobState::Scheduled } else { JobState::Available },
            attempt: 0,
            max_attempts,
            unique_key: spec.unique_key,
            timeout_ms,
            run_at,
            created: now,
            updated: now,
            started_at: None,
            finished_at: None,
            progress: None,
            errors: Vec::new(),
            cancel_requested: false,
        })
    }

    /// Enqueues inside the caller's write transaction: the job exists if and only if that
    /// write commits. Workers are woken after the commit.
    pub fn enqueue_in(&self, tx: &mut WriteTx<'_>, spec: JobSpec) -> Result<Enqueued, JobsError> {
        let job = self.build(spec)?;
        let enqueued = self.insert(tx, job)?;
        if !enqueued.duplicate {
            self.wake_after_commit(tx, &enqueued.job.queue);
        }
        Ok(enqueued)
    }

    fn insert(&self, tx: &mut WriteTx<'_>, job: Job) -> Result<Enqueued, JobsError> {
        if let Some(key) = &job.unique_key {
            if let Some(holder) = tx.get(Table::JobsUnique, key.as_bytes())? {
                let id = <[u8; 8]>::try_from(holder.as_slice()).map(u64::from_be_bytes).unwrap_or(0);
                if let Some(existing) = load(tx, id)? {
                    return Ok(Enqueued { job: existing, duplicate: true });
                }
            }
        }
        save(tx, None, &job)?;
        self.note_after_commit(tx, &job);
        Ok(Enqueued { job, duplicate: false })
    }

    fn wake_after_commit(&self, tx: &mut WriteTx<'_>, queue: &str) {
        if self.inner.runtime.is_started() {
            let jobs = self.clone();
            let queue = queue.to_string();
            tx.after_commit(move || jobs.wake(&queue));
        }
    }

    /// Enqueues on its own; returns once the job is durably stored.
    pub async fn enqueue(&self, spec: JobSpec) -> Result<Enqueued, JobsError> {
        let job = self.build(spec)?;
        let jobs = self.clone();
        self.inner
            .store
            .write(move |tx: &mut WriteTx<'_>| {
                let enqueued = jobs.insert(tx, job)?;
                if !enqueued.duplicate {
                    jobs.wake_after_commit(tx, &enqueued.job.queue);
                }
                Ok(enqueued)
            })
            .await
    }

    /// Enqueues many jobs in one transaction (all or none); returns once durable.
    pub async fn enqueue_many(&self, specs: Vec<JobSpec>) -> Result<Vec<Enqueued>, JobsError> {
        let built = specs.into_iter().map(|s| self.build(s)).collect::<Result<Vec<Job>, JobsError>>()?;
        let jobs = self.clone();
        self.inner
            .store
            .write(move |tx: &mut WriteTx<'_>| {
                let mut queues = BTreeSet::new();
                let mut out = Vec::with_capacity(built.len());
                for job in built {
                    let enqueued = jobs.insert(tx, job)?;
                    if !enqueued.duplicate {
                        queues.insert(enqueued.job.queue.clone());
                    }
                    out.push(enqueued);
                }
                for queue in queues {
                    jobs.wake_after_commit(tx, &queue);
                }
                Ok(out)
            })
            .await
    }

    /// One job, with live progress if it is running.
    pub async fn get(&self, id: u64) -> Result<Job, JobsError> {
        let mut job = self
            .inner
            .store
            .read(move |tx| match tx.get(Table::Jobs, &job_key(id))? {
                Some(bytes) => Job::decode(id, &bytes),
                None => Err(job_not_found()),
            })
            .await?;
        self.inner.runtime.merge_progress(&mut job);
        Ok(job)
    }

    /// Lists jobs, newest first, filtered by state, kind and queue.
    pub async fn list(&self, filter: ListFilter) -> Result<JobPage, JobsError> {
        let (page, per_page) = paging(filter.page.as_deref(), filter.per_page.as_deref())?;
        let state = match filter.state.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(name) => Some(JobState::parse(name).ok_or_else(|| {
                JobsError::BadRequest(format!(
                    "Unknown state {name:?}; use one of scheduled, available, running, completed, retrying, dead, cancelled."
                ))
            })?),
        };
        let kind = filter.kind.filter(|s| !s.is_empty());
        let queue = filter.queue.filter(|s| !s.is_empty());
        let mut page_out = self
            .inner
            .store
            .read(move |tx| {
                let mut ids: Vec<u64> = Vec::new();
                let queue_ok = |q: &str| queue.as_deref().is_none_or(|want| want == q);
                let kind_ok = |k: &[u8]| kind.as_deref().is_none_or(|want| want.as_bytes() == k);
                let state_ok = |s: JobState| state.is_none_or(|want| want == s);
                visit_states(tx, state, queue.as_deref(), |s, q, k, id| {
                    if state_ok(s) && queue_ok(q) && kind_ok(k) {
                        ids.push(id);
                    }
                })?;
                ids.sort_unstable_by(|a, b| b.cmp(a));
                let total_items = ids.len();
                let start = (page - 1).saturating_mul(per_page);
                let mut items = Vec::new();
                for id in ids.into_iter().skip(start).take(per_page) {
                    if let Some(bytes) = tx.get(Table::Jobs, &job_key(id))? {
                        items.push(Job::decode(id, &bytes)?);
                    }
                }
                Ok::<JobPage, JobsError>(JobPage { page, per_page, total_items, items })
            })
            .await?;
        for job in &mut page_out.items {
            self.inner.runtime.merge_progress(job);
        }
        Ok(page_out)
    }

    /// True once workers run (`App::run` with `[jobs] workers` on).
    pub fn is_started(&self) -> bool {
        self.inner.runtime.is_started()
    }

    /// Handler runs, failures and durations since start.
    pub fn run_metrics(&self) -> &worker::RunMetrics {
        &self.inner.runtime.metrics
    }

    /// Makes a job run again now: a dead, cancelled or completed job is replayed with its
    /// attempts reset; a waiting job runs at once. A running job cannot be retried (409).
    pub async fn retry(&self, id: u64) -> Result<Job, JobsError> {
        let jobs = self.clone();
        let now = self.now_ms();
        self.inner
            .store
            .write(move |tx: &mut WriteTx<'_>| {
                let old = load(tx, id)?.ok_or_else(job_not_found)?;
                if old.state == JobState::Running {
                    return Err(JobsError::Conflict("The job is running; cancel it first or wait.".into()));
                }
                if let (true, Some(key)) = (old.state.is_finished(), &old.unique_key) {
                    if tx.get(Table::JobsUnique, key.as_bytes())?.is_some() {
                        return Err(JobsError::Conflict(format!(
                            "Another job with unique key {key:?} is waiting or running."
                        )));
                    }
                }
                let mut job = old.clone();
                if old.state.is_finished() {
                    job.attempt = 0;
                    job.finished_at = None;
                    job.cancel_requested = false;
                }
                job.state = JobState::Available;
                job.run_at = now;
                job.updated = now;
                save(tx, Some(&old), &job)?;
                jobs.note_after_commit(tx, &job);
                jobs.wake_after_commit(tx, &job.queue);
                Ok(job)
            })
            .await
    }

    /// Cancels a job: a waiting one at once; a running one is told (its handler sees the
    /// cancellation) and ends `cancelled`. Finished jobs cannot be cancelled (409).
    pub async fn cancel(&self, id: u64) -> Result<Job, JobsError> {
        let jobs = self.clone();
        let now = self.now_ms();
        self.inner
            .store
            .write(move |tx: &mut WriteTx<'_>| {
                let old = load(tx, id)?.ok_or_else(job_not_found)?;
                if old.state.is_finished() {
                    return Err(JobsError::Conflict(format!("The job is already {}.", old.state.as_str())));
                }
                let mut job = old.clone();
                job.updated = now;
                if old.state == JobState::Running && jobs.inner.runtime.is_running(id) {
                    job.cancel_requested = true;
                    let rt_jobs = jobs.clone();
                    tx.after_commit(move || rt_jobs.inner.runtime.cancel_running(id));
                } else {
                    // Waiting, or an orphan no worker holds (e.g. the CLI with the server down).
                    job.state = JobState::Cancelled;
                    job.finished_at = Some(now);
                    jobs.wake_pruner_after_commit(tx);
                }
                save(tx, Some(&old), &job)?;
                jobs.note_after_commit(tx, &job);
                Ok(job)
            })
            .await
    }

    /// Deletes a job that is not running.
    pub async fn delete(&self, id: u64) -> Result<(), JobsError> {
        self.inner
            .store
            .write(move |tx: &mut WriteTx<'_>| {
                let job = load(tx, id)?.ok_or_else(job_not_found)?;
                if job.state == JobState::Running {
                    return Err(JobsError::Conflict("The job is running; cancel it first.".into()));
                }
                model::remove(tx, &job)
            })
            .await
    }

    fn wake_pruner_after_commit(&self, tx: &mut WriteTx<'_>) {
        if self.inner.runtime.is_started() {
            let jobs = self.clone();
            tx.after_commit(move || jobs.inner.runtime.prune_notify.notify_one());
        }
    }

    /// Wakes the dispatcher of `queue` (starting one for a queue seen for the first time).
    pub fn wake(&self, queue: &str) {
        worker::wake(self, queue);
    }

    /// Recovers orphans and starts dispatchers, the completer, cron and the pruner.
    /// Returns the number of orphaned jobs requeued (or killed, when out of attempts).
    pub async fn start(&self) -> Result<usize, JobsError> {
        worker::start(self).await
    }

    /// Stops claiming, gives running jobs `grace` to finish, requeues the rest (without
    /// counting the attempt) and flushes their completions.
    pub async fn shutdown(&self, grace: std::time::Duration) {
        worker::shutdown(self, grace).await;
    }
}

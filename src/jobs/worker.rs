//! Running jobs: one dispatcher task per queue, a runner task per job, one completer,
//! orphan recovery at start, and the retention pruner.
//!
//! Claim protocol: a dispatcher submits one write that takes up to `free slots` due jobs
//! from the ready index (priority, then `run_at`, then id), marks them `running` with
//! `attempt + 1`, and hands them to runners as soon as that write has been applied in the
//! writer (before its fsync: a crash before the commit leaves them `available`, and their
//! completions can only commit in a later transaction, after the claim). Completions are
//! fenced: they apply only if the job is still `running` with the same attempt.
//! Nothing polls: dispatchers sleep on a `Notify` (enqueue, freed slot) or until the next
//! `run_at` they saw; the pruner sleeps until the next expiry.

use crate::util::metrics::{Counter, Histogram, JOB_BUCKETS};
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::model::{
    backoff_ms, job_key, load, parse_ready_key, queue_prefix, save, save_encoded, Job, JobState,
};
use super::registry::{Done, Effect, JobContext, JobFailure};
use super::{Jobs, JobsError, MAX_PRIORITY};
use crate::store::{ScanControl, Table, WriteTx};

/// How long a cancelled (or timed-out) handler may take to return before it is dropped.
const HANDLER_GRACE: Duration = Duration::from_secs(2);
/// Most finished jobs deleted in one pruning transaction.
const PRUNE_BATCH: usize = 5000;
/// Most completions written in one transaction.
const COMPLETE_BATCH: usize = 4096;

const REASON_NONE: u8 = 0;
const REASON_USER: u8 = 1;
const REASON_SHUTDOWN: u8 = 2;
const REASON_TIMEOUT: u8 = 3;

/// A job a runner holds.
pub(super) struct RunningEntry {
    token: CancellationToken,
    reason: AtomicU8,
    progress: Arc<Mutex<Option<Value>>>,
}

/// One queue's dispatcher state.
struct QueueRt {
    name: String,
    limit: usize,
    active: AtomicUsize,
    notify: Notify,
}

/// How an attempt ended, as the completer writes it.
pub(super) enum Outcome {
    Complete(Option<Effect>),
    Snooze(Duration),
    /// A failed attempt, with the handler's effect when it gave one ([`Done::FailWith`]).
    Failed(JobFailure, Option<Effect>),
    Cancelled(String),
    /// Shutdown: back to `available`, the attempt not counted.
    Requeue,
}

/// One attempt's end, queued for the completer.
pub(super) struct Finish {
    pub id: u64,
    pub attempt: u32,
    pub queue: String,
    pub progress: Option<Value>,
    pub outcome: Outcome,
    /// The job as its claim stored it (the runner's copy), when known: lets the completer
    /// prepare the new row off the writer thread (see [`Prepared`]).
    pub claimed: Option<Job>,
}

/// Worker state shared by all tasks.
#[derive(Default)]
pub(super) struct Runtime {
    started: AtomicBool,
    handle: std::sync::OnceLock<tokio::runtime::Handle>,
    queues: Mutex<HashMap<String, Arc<QueueRt>>>,
    running: Mutex<HashMap<u64, Arc<RunningEntry>>>,
    /// Stops dispatchers, cron, the pruner and the completer's intake.
    pub(super) stop: CancellationToken,
    /// Parent of every runner's token: cancelled last, on shutdown.
    runners: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    finish_tx: Mutex<Option<mpsc::UnboundedSender<Finish>>>,
    completer: Mutex<Option<JoinHandle<()>>>,
    pub(super) prune_notify: Notify,
    pub(super) cron_notify: Notify,
    /// Runs, failures and run durations since start (for `/metrics`).
    pub(super) metrics: RunMetrics,
}

/// Job runs since start.
#[derive(Debug)]
pub struct RunMetrics {
    /// Handler runs that finished (any outcome).
    pub runs: Counter,
    /// Runs that failed (to be retried or dead).
    pub failures: Counter,
    /// Seconds each run took.
    pub duration: Histogram,
}

impl Default for RunMetrics {
    fn default() -> Self {
        RunMetrics {
            runs: Counter::default(),
            failures: Counter::default(),
            duration: Histogram::new(&JOB_BUCKETS),
        }
    }
}

impl Runtime {
    pub(super) fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    pub(super) fn is_running(&self, id: u64) -> bool {
        self.running.lock().map(|m| m.contains_key(&id)).unwrap_or(false)
    }

    pub(super) fn cancel_running(&self, id: u64) {
        let entry = self.running.lock().ok().and_then(|m| m.get(&id).cloned());
        if let Some(entry) = entry {
            let _ =
                entry.reason.compare_exchange(REASON_NONE, REASON_USER, Ordering::AcqRel, Ordering::Acquire);
            entry.token.cancel();
        }
    }

    pub(super) fn merge_progress(&self, job: &mut Job) {
        if job.state != JobState::Running {
            return;
        }
        let entry = self.running.lock().ok().and_then(|m| m.get(&job.id).cloned());
        if let Some(progress) = entry.and_then(|e| e.progress.lock().ok().and_then(|p| p.clone())) {
            job.progress = Some(progress);
        }
    }

    fn register(&self, id: u64) -> Arc<RunningEntry> {
        let entry = Arc::new(RunningEntry {
            token: self.runners.child_token(),
            reason: AtomicU8::new(REASON_NONE),
            progress: Arc::new(Mutex::new(None)),
        });
        if let Ok(mut map) = self.running.lock() {
            map.insert(id, entry.clone());
        }
        entry
    }

    fn unregister(&self, id: u64) {
        if let Ok(mut map) = self.running.lock() {
            map.remove(&id);
        }
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        if let Some(handle) = self.handle.get() {
            let join = handle.spawn(task);
            if let Ok(mut tasks) = self.tasks.lock() {
                // Drop finished handles only when the vector is full: amortised O(1) per
                // spawn instead of a scan of every live runner (thousands) per job.
                if tasks.len() == tasks.capacity() {
                    tasks.retain(|t| !t.is_finished());
                }
                tasks.push(join);
            }
        }
    }

    fn finish(&self, finish: Finish) {
        let sender = self.finish_tx.lock().ok().and_then(|s| s.clone());
        match sender {
            Some(sender) => {
                if sender.send(finish).is_err() {
                    tracing::warn!("job completion dropped: the completer stopped");
                }
            }
            None => tracing::warn!("job completion dropped: the queue is shut down"),
        }
    }
}

/// Wakes (or starts) the dispatcher of `queue`.
pub(super) fn wake(jobs: &Jobs, queue: &str) {
    let rt = &jobs.inner.runtime;
    if !rt.is_started() || rt.stop.is_cancelled() {
        return;
    }
    let (q, created) = {
        let Ok(mut queues) = rt.queues.lock() else { return };
        match queues.get(queue) {
            Some(q) => (q.clone(), false),
            None => {
                let config = &jobs.inner.config;
                let limit = config.queues.get(queue).copied().unwrap_or(config.default_concurrency).max(1);
                let q = Arc::new(QueueRt {
                    name: queue.to_string(),
                    limit,
                    active: AtomicUsize::new(0),
                    notify: Notify::new(),
                });
                queues.insert(queue.to_string(), q.clone());
                (q, true)
            }
        }
    };
    if created {
        rt.spawn(dispatch(jobs.clone(), q.clone()));
    }
    q.notify.notify_one();
}

/// Takes up to `want` due jobs of `queue` and marks them running. Returns them and the
/// earliest future `run_at` seen (when the dispatcher should look again).
pub(super) fn claim(
    tx: &mut WriteTx<'_>,
    queue: &str,
    want: usize,
    now: i64,
) -> Result<(Vec<Job>, Option<i64>), JobsError> {
    let mut ids: Vec<(Vec<u8>, u64)> = Vec::new();
    let mut next_due: Option<i64> = None;
    for priority in 0..=MAX_PRIORITY {
        if ids.len() >= want {
            break;
        }
        let mut prefix = queue_prefix(queue);
        prefix.push(priority);
        tx.scan_prefix(Table::JobsReady, &prefix, None, |k, _| {
            let Some((_, _, run_at, id)) = parse_ready_key(k) else { return ScanControl::Continue };
            if run_at > now {
                next_due = Some(next_due.map_or(run_at, |d| d.min(run_at)));
                return ScanControl::Stop;
            }
            ids.push((k.to_vec(), id));
            if ids.len() >= want {
                ScanControl::Stop
            } else {
                ScanControl::Continue
            }
        })?;
    }
    let mut claimed = Vec::with_capacity(ids.len());
    for (key, id) in ids {
        let old = match load(tx, id) {
            Ok(Some(job)) if job.state.is_waiting() => job,
            Ok(_) | Err(_) => {
                tracing::error!(job = id, "ready index entry without a waiting job; dropping the entry");
                tx.delete(Table::JobsReady, &key);
                continue;
            }
        };
        let mut job = old.clone();
        job.state = JobState::Running;
        job.attempt = job.attempt.saturating_add(1);
        job.started_at = Some(now);
        job.updated = now;
        job.progress = None;
        save(tx, Some(&old), &job)?;
        claimed.push(job);
    }
    Ok((claimed, next_due))
}

async fn dispatch(jobs: Jobs, q: Arc<QueueRt>) {
    let rt = &jobs.inner.runtime;
    let batch = jobs.inner.config.claim_batch.max(1);
    loop {
        if rt.stop.is_cancelled() {
            break;
        }
        let mut next_due: Option<i64> = None;
        let active = q.active.load(Ordering::Acquire);
        if active < q.limit {
            let want = (q.limit - active).min(batch);
            match claim_round(&jobs, &q.name, want).await {
                Ok((claimed, due)) => {
                    let n = claimed.len();
                    for (job, entry) in claimed {
                        q.active.fetch_add(1, Ordering::AcqRel);
                        rt.spawn(run_job(jobs.clone(), q.clone(), job, entry));
                    }
                    next_due = due;
                    if n == want {
                        continue;
                    }
                }
                Err(err) => {
                    tracing::error!(queue = %q.name, error = %err, "claiming jobs failed; retrying in 1 s");
                    next_due = Some(jobs.now_ms() + 1000);
                }
            }
        }
        let sleep = async {
            match next_due {
                Some(due) => {
                    let ms = (due - jobs.now_ms()).max(0) as u64;
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = q.notify.notified() => {}
            () = sleep => {}
            () = rt.stop.cancelled() => break,
        }
    }
}

type Claimed = (Vec<(Job, Arc<RunningEntry>)>, Option<i64>);

/// Submits a claim and returns as soon as the writer has applied it (see the module doc).
async fn claim_round(jobs: &Jobs, queue: &str, want: usize) -> Result<Claimed, JobsError> {
    let (sender, receiver) = oneshot::channel::<Claimed>();
    let inner = jobs.clone();
    let queue = queue.to_string();
    let now = jobs.now_ms();
    let store = jobs.inner.store.clone();
    let write = async move {
        store
            .write(move |tx: &mut WriteTx<'_>| -> Result<(), JobsError> {
                let (claimed, due) = claim(tx, &queue, want, now)?;
                for job in &claimed {
                    inner.note_after_commit(tx, job);
                }
                let rt = &inner.inner.runtime;
                let entries = claimed.into_iter().map(|job| {
                    let entry = rt.register(job.id);
                    (job, entry)
                });
                let _ = sender.send((entries.collect(), due));
                Ok(())
            })
            .await
    };
    let (err_tx, err_rx) = oneshot::channel::<JobsError>();
    tokio::spawn(async move {
        if let Err(err) = write.await {
            tracing::warn!(error = %err, "a job claim did not commit; its jobs stay available");
            let _ = err_tx.send(err);
        }
    });
    match receiver.await {
        Ok(claimed) => Ok(claimed),
        Err(_) => Err(err_rx.await.unwrap_or_else(|_| JobsError::Internal("the claim was dropped".into()))),
    }
}

async fn run_job(jobs: Jobs, q: Arc<QueueRt>, job: Job, entry: Arc<RunningEntry>) {
    let started = std::time::Instant::now();
    let outcome = match jobs.inner.registry.get(&job.kind) {
        None => Outcome::Failed(
            JobFailure::discard(format!("no handler for job kind {:?} in this build", job.kind)),
            None,
        ),
        Some(kind) => {
            let ctx = JobContext::new(&job, entry.token.clone(), entry.progress.clone(), jobs.clone());
            let handler = AssertUnwindSafe((kind.handler)(ctx)).catch_unwind();
            tokio::pin!(handler);
            let timeout = tokio::time::sleep(Duration::from_millis(job.timeout_ms));
            let first = tokio::select! {
                result = &mut handler => Some(result),
                () = timeout => {
                    let _ = entry.reason.compare_exchange(REASON_NONE, REASON_TIMEOUT, Ordering::AcqRel, Ordering::Acquire);
                    entry.token.cancel();
                    None
                }
                () = entry.token.cancelled() => None,
            };
            let result = match first {
                Some(result) => Some(result),
                None => tokio::time::timeout(HANDLER_GRACE, &mut handler).await.ok(),
            };
            let reason = entry.reason.load(Ordering::Acquire);
            let stopped = |message: String| match reason {
                REASON_USER => Outcome::Cancelled(format!("cancelled: {message}")),
                REASON_SHUTDOWN => Outcome::Requeue,
                REASON_TIMEOUT => Outcome::Failed(
                    JobFailure::retry(format!("timed out after {} ms ({message})", job.timeout_ms)),
                    None,
                ),
                _ => Outcome::Failed(JobFailure::retry(message), None),
            };
            match result {
                Some(Ok(Ok(Done::Complete(effect)))) => Outcome::Complete(effect),
                Some(Ok(Ok(Done::Snooze(delay)))) => Outcome::Snooze(delay),
                Some(Ok(Ok(Done::FailWith(failure, effect)))) if reason == REASON_NONE => {
                    Outcome::Failed(failure, Some(effect))
                }
                Some(Ok(Ok(Done::FailWith(failure, _)))) => stopped(failure.message),
                Some(Ok(Err(failure))) if reason == REASON_NONE => Outcome::Failed(failure, None),
                Some(Ok(Err(failure))) => stopped(failure.message),
                Some(Err(_panic)) if reason == REASON_NONE => {
                    Outcome::Failed(JobFailure::retry("the handler panicked"), None)
                }
                Some(Err(_panic)) => stopped("the handler panicked".into()),
                None => stopped("the handler did not stop within the grace period".into()),
            }
        }
    };
    let metrics = &jobs.inner.runtime.metrics;
    metrics.runs.inc();
    metrics.duration.observe_duration(started.elapsed());
    if matches!(outcome, Outcome::Failed(..)) {
        metrics.failures.inc();
    }
    let progress = entry.progress.lock().ok().and_then(|p| p.clone());
    jobs.inner.runtime.unregister(job.id);
    q.active.fetch_sub(1, Ordering::AcqRel);
    q.notify.notify_one();
    jobs.inner.runtime.finish(Finish {
        id: job.id,
        attempt: job.attempt,
        queue: job.queue.clone(),
        progress,
        outcome,
        claimed: Some(job),
    });
}

/// What a batch of completions must wake once it commits: the pruner (a job finished) and
/// the dispatchers of queues that got a job back (snoozed, retrying, requeued). Collected
/// so a batch of thousands registers a handful of commit hooks, not one per job.
#[derive(Default)]
pub(super) struct Wakes {
    pruner: bool,
    queues: Vec<String>,
}

impl Wakes {
    fn queue(&mut self, queue: &str) {
        if !self.queues.iter().any(|q| q == queue) {
            self.queues.push(queue.to_string());
        }
    }

    fn register(self, jobs: &Jobs, tx: &mut WriteTx<'_>) {
        if self.pruner {
            jobs.wake_pruner_after_commit(tx);
        }
        for queue in &self.queues {
            jobs.wake_after_commit(tx, queue);
        }
    }
}

/// Applies one attempt's end. `Err(Stale)` when the job is no longer this attempt's.
pub(super) fn finish_one(
    jobs: &Jobs,
    tx: &mut WriteTx<'_>,
    finish: Finish,
    now: i64,
) -> Result<(), JobsError> {
    let mut wakes = Wakes::default();
    finish_into(jobs, tx, finish, now, &mut wakes)?;
    wakes.register(jobs, tx);
    Ok(())
}

/// [`finish_one`], collecting the wake-ups into `wakes` instead of registering them.
fn finish_into(
    jobs: &Jobs,
    tx: &mut WriteTx<'_>,
    finish: Finish,
    now: i64,
    wakes: &mut Wakes,
) -> Result<(), JobsError> {
    let old = load(tx, finish.id)?.ok_or(JobsError::Stale)?;
    if old.state != JobState::Running || old.attempt != finish.attempt {
        return Err(JobsError::Stale);
    }
    let (job, finished, effect) = next_state(jobs, &old, finish.progress, finish.outcome, now);
    if let Some(effect) = effect {
        effect(tx)?;
    }
    if finished {
        wakes.pruner = true;
    } else {
        wakes.queue(&finish.queue);
    }
    save(tx, Some(&old), &job)?;
    jobs.note_after_commit(tx, &job);
    Ok(())
}

/// The job after an attempt of `old` ended with `outcome` (no storage access): the new job,
/// whether it finished, and the effect to run in the completing transaction.
fn next_state(
    jobs: &Jobs,
    old: &Job,
    progress: Option<Value>,
    outcome: Outcome,
    now: i64,
) -> (Job, bool, Option<Effect>) {
    let config = &jobs.inner.config;
    let mut job = old.clone();
    job.updated = now;
    if progress.is_some() {
        job.progress = progress;
    }
    let mut finished = false;
    let mut effect_out = None;
    match outcome {
        Outcome::Complete(effect) => {
            effect_out = effect;
            job.state = JobState::Completed;
            finished = true;
        }
        Outcome::Snooze(delay) => {
            job.state = JobState::Scheduled;
            job.run_at = now.saturating_add(delay.as_millis() as i64);
            job.max_attempts = job.max_attempts.saturating_add(1);
        }
        Outcome::Failed(failure, effect) => {
            effect_out = effect;
            job.push_error(now, &failure.message);
            if old.cancel_requested {
                job.state = JobState::Cancelled;
                finished = true;
            } else if failure.discard || job.attempt >= job.max_attempts {
                job.state = JobState::Dead;
                finished = true;
            } else {
                job.state = JobState::Retrying;
                let base_ms = jobs
                    .inner
                    .registry
                    .get(&job.kind)
                    .and_then(|kind| kind.options.backoff_base)
                    .map_or(config.backoff_base_ms, |base| {
                        u64::try_from(base.as_millis()).unwrap_or(u64::MAX)
                    });
                let delay = backoff_ms(job.attempt, base_ms, config.backoff_max_ms, rand::random::<f64>());
                job.run_at = now.saturating_add(delay as i64);
            }
        }
        Outcome::Cancelled(message) => {
            job.push_error(now, &message);
            job.state = JobState::Cancelled;
            finished = true;
        }
        Outcome::Requeue => {
            job.state = JobState::Available;
            job.run_at = now;
            job.attempt = job.attempt.saturating_sub(1);
        }
    }
    if finished {
        job.finished_at = Some(now);
    }
    (job, finished, effect_out)
}

/// A completion prepared off the writer thread from the runner's copy of the job: valid
/// only if the stored row still equals `expected` (byte for byte, i.e. nobody changed the
/// job since its claim, such as a cancel request); otherwise the writer falls back to
/// [`finish_into`], which reads and decodes the stored row.
struct Prepared {
    expected: Vec<u8>,
    old: Job,
    new: Job,
    new_bytes: Vec<u8>,
    finished: bool,
}

/// A copy of an outcome without an effect (effects run in their own transaction).
fn plain_copy(outcome: &Outcome) -> Option<Outcome> {
    Some(match outcome {
        Outcome::Complete(None) => Outcome::Complete(None),
        Outcome::Complete(Some(_)) => return None,
        Outcome::Snooze(d) => Outcome::Snooze(*d),
        Outcome::Failed(_, Some(_)) => return None,
        Outcome::Failed(f, None) => Outcome::Failed(f.clone(), None),
        Outcome::Cancelled(m) => Outcome::Cancelled(m.clone()),
        Outcome::Requeue => Outcome::Requeue,
    })
}

fn prepare(jobs: &Jobs, finish: &mut Finish, now: i64) -> Option<Prepared> {
    let old = finish.claimed.take()?;
    if old.id != finish.id || old.attempt != finish.attempt || old.state != JobState::Running {
        return None;
    }
    let outcome = plain_copy(&finish.outcome)?;
    let expected = old.encode().ok()?;
    let (new, finished, _) = next_state(jobs, &old, finish.progress.clone(), outcome, now);
    let new_bytes = new.encode().ok()?;
    Some(Prepared { expected, old, new, new_bytes, finished })
}

/// Applies a plain completion, through its prepared row when that is still valid.
fn finish_prepared(
    jobs: &Jobs,
    tx: &mut WriteTx<'_>,
    finish: Finish,
    prepared: Option<Prepared>,
    now: i64,
    wakes: &mut Wakes,
) -> Result<(), JobsError> {
    if let Some(p) = prepared {
        if tx.get(Table::Jobs, &job_key(finish.id))?.as_deref() == Some(p.expected.as_slice()) {
            if p.finished {
                wakes.pruner = true;
            } else {
                wakes.queue(&finish.queue);
            }
            save_encoded(tx, Some(&p.old), &p.new, p.new_bytes)?;
            jobs.note_after_commit(tx, &p.new);
            return Ok(());
        }
    }
    finish_into(jobs, tx, finish, now, wakes)
}

/// Writes completions: plain ones batched in one transaction (awaited, so they pile up
/// while the previous batch commits), ones with an effect in their own transaction.
async fn complete_loop(
    jobs: Jobs,
    mut rx: mpsc::UnboundedReceiver<Finish>,
    tx: mpsc::UnboundedSender<Finish>,
) {
    let mut resend = Some(tx);
    loop {
        let first = if resend.is_some() {
            tokio::select! {
                item = rx.recv() => item,
                () = jobs.inner.runtime.stop.cancelled() => {
                    // Stop holding a sender so the channel closes once runners are done.
                    resend = None;
                    continue;
                }
            }
        } else {
            rx.recv().await
        };
        let Some(first) = first else { break };
        let mut plain = Vec::new();
        let mut effects = Vec::new();
        let mut items = vec![first];
        while items.len() < COMPLETE_BATCH {
            match rx.try_recv() {
                Ok(f) => items.push(f),
                Err(_) => break,
            }
        }
        for f in items {
            if matches!(f.outcome, Outcome::Complete(Some(_)) | Outcome::Failed(_, Some(_))) {
                effects.push(f);
            } else {
                plain.push(f);
            }
        }
        let mut pending = Vec::new();
        for finish in effects {
            let jobs2 = jobs.clone();
            let (id, attempt, queue) = (finish.id, finish.attempt, finish.queue.clone());
            let progress = finish.progress.clone();
            let now = jobs.now_ms();
            let store = jobs.inner.store.clone();
            let write = async move {
                store.write(move |tx: &mut WriteTx<'_>| finish_one(&jobs2, tx, finish, now)).await
            };
            let jobs3 = jobs.clone();
            let retry_as_failure = resend.clone();
            pending.push(tokio::spawn(async move {
                match write.await {
                    Ok(()) => {}
                    Err(JobsError::Stale) => tracing::warn!(job = id, "stale completion discarded"),
                    Err(JobsError::Store(err)) => {
                        tracing::error!(job = id, error = %err, "completion not saved; the job stays running until restart")
                    }
                    Err(err) => {
                        // The effect failed: its writes were discarded; record a failed attempt.
                        let failure = Finish { id, attempt, queue, progress, outcome: Outcome::Failed(JobFailure::retry(err.to_string()), None), claimed: None };
                        match retry_as_failure {
                            Some(sender) => {
                                let _ = sender.send(failure);
                            }
                            None => {
                                let now = jobs3.now_ms();
                                let jobs4 = jobs3.clone();
                                let _ = jobs3.inner.store.write(move |tx: &mut WriteTx<'_>| finish_one(&jobs4, tx, failure, now)).await;
                            }
                        }
                    }
                }
            }));
        }
        if !plain.is_empty() {
            let jobs2 = jobs.clone();
            let now = jobs.now_ms();
            // Decode/encode work done here, on a runtime thread, not on the single writer.
            let plain: Vec<(Finish, Option<Prepared>)> = plain
                .into_iter()
                .map(|mut f| {
                    let prepared = prepare(&jobs, &mut f, now);
                    (f, prepared)
                })
                .collect();
            let result = jobs
                .inner
                .store
                .write(move |tx: &mut WriteTx<'_>| -> Result<(), JobsError> {
                    let mut wakes = Wakes::default();
                    for (finish, prepared) in plain {
                        let id = finish.id;
                        match finish_prepared(&jobs2, tx, finish, prepared, now, &mut wakes) {
                            Ok(()) => {}
                            Err(JobsError::Stale) => tracing::warn!(job = id, "stale completion discarded"),
                            Err(err) => return Err(err),
                        }
                    }
                    wakes.register(&jobs2, tx);
                    Ok(())
                })
                .await;
            if let Err(err) = result {
                tracing::error!(error = %err, "completions not saved; those jobs stay running until restart");
            }
        }
        for task in pending {
            let _ = task.await;
        }
    }
}

/// Requeues every job left `running` by a previous process (the file lock means no other
/// process can be running them). The attempt was counted when it was claimed; a job out of
/// attempts goes to `dead`.
pub(super) fn recover_orphans(tx: &mut WriteTx<'_>, now: i64) -> Result<Vec<Job>, JobsError> {
    let running = tx.collect_prefix(Table::JobsByState, &[JobState::Running.code()])?;
    let mut recovered = Vec::with_capacity(running.len());
    for (key, _) in running {
        let Some((_, _, id)) = super::model::parse_state_key(&key) else { continue };
        let Some(old) = load(tx, id)? else {
            tx.delete(Table::JobsByState, &key);
            continue;
        };
        let mut job = old.clone();
        job.push_error(now, "orphaned: the server stopped while the job was running");
        job.updated = now;
        if old.cancel_requested {
            job.state = JobState::Cancelled;
            job.finished_at = Some(now);
        } else if job.attempt >= job.max_attempts {
            job.state = JobState::Dead;
            job.finished_at = Some(now);
        } else {
            job.state = JobState::Available;
            job.run_at = now;
        }
        save(tx, Some(&old), &job)?;
        recovered.push(job);
    }
    Ok(recovered)
}

/// Deletes finished jobs past retention. Returns (deleted, when to look again).
pub(super) fn prune(
    tx: &mut WriteTx<'_>,
    now: i64,
    keep_completed_ms: i64,
    keep_failed_ms: i64,
) -> Result<(usize, Option<i64>), JobsError> {
    let min_keep = keep_completed_ms.min(keep_failed_ms);
    let mut expired: Vec<(Vec<u8>, u64)> = Vec::new();
    let mut next: Option<i64> = None;
    tx.scan_prefix(Table::JobsFinished, b"", None, |k, v| {
        let Some((at, id)) = super::model::parse_finished_key(k) else { return ScanControl::Continue };
        let keep =
            if v.first() == Some(&JobState::Completed.code()) { keep_completed_ms } else { keep_failed_ms };
        if at.saturating_add(keep) <= now {
            expired.push((k.to_vec(), id));
            if expired.len() >= PRUNE_BATCH {
                next = Some(now);
                return ScanControl::Stop;
            }
            return ScanControl::Continue;
        }
        let due = at.saturating_add(keep);
        next = Some(next.map_or(due, |n: i64| n.min(due)));
        if at.saturating_add(min_keep) > now {
            ScanControl::Stop
        } else {
            ScanControl::Continue
        }
    })?;
    for (key, id) in &expired {
        match load(tx, *id)? {
            Some(job) if job.state.is_finished() => super::model::remove(tx, &job)?,
            Some(_) | None => {
                tracing::warn!(job = id, "stale retention index entry dropped");
                tx.delete(Table::JobsFinished, key);
            }
        }
    }
    Ok((expired.len(), next))
}

async fn prune_loop(jobs: Jobs) {
    let rt = &jobs.inner.runtime;
    let keep_completed = (jobs.inner.config.keep_completed_secs as i64).saturating_mul(1000);
    let keep_failed = (jobs.inner.config.keep_failed_secs as i64).saturating_mul(1000);
    loop {
        let now = jobs.now_ms();
        let result = jobs
            .inner
            .store
            .write(move |tx: &mut WriteTx<'_>| prune(tx, now, keep_completed, keep_failed))
            .await;
        let next = match result {
            Ok((deleted, next)) => {
                if deleted > 0 {
                    tracing::debug!(deleted, "pruned finished jobs");
                }
                next
            }
            Err(err) => {
                tracing::warn!(error = %err, "pruning finished jobs failed; retrying in 60 s");
                Some(now + 60_000)
            }
        };
        match next {
            Some(due) => {
                let ms = (due - jobs.now_ms()).max(0) as u64;
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(ms)) => {}
                    () = rt.stop.cancelled() => break,
                }
            }
            None => {
                tokio::select! {
                    () = rt.prune_notify.notified() => {}
                    () = rt.stop.cancelled() => break,
                }
            }
        }
    }
}

pub(super) async fn start(jobs: &Jobs) -> Result<usize, JobsError> {
    let rt = &jobs.inner.runtime;
    if rt.started.swap(true, Ordering::AcqRel) {
        return Ok(0);
    }
    let _ = rt.handle.set(tokio::runtime::Handle::current());
    let now = jobs.now_ms();
    let recovered = jobs.inner.store.write(move |tx: &mut WriteTx<'_>| recover_orphans(tx, now)).await?;
    jobs.note_committed(&recovered);
    if !recovered.is_empty() {
        tracing::warn!(count = recovered.len(), "requeued jobs orphaned by the previous run");
    }
    let (finish_tx, finish_rx) = mpsc::unbounded_channel::<Finish>();
    if let Ok(mut slot) = rt.finish_tx.lock() {
        *slot = Some(finish_tx.clone());
    }
    let completer = tokio::spawn(complete_loop(jobs.clone(), finish_rx, finish_tx));
    if let Ok(mut slot) = rt.completer.lock() {
        *slot = Some(completer);
    }
    // Dispatchers for configured queues and for every queue with waiting jobs.
    let mut queues: Vec<String> = jobs.inner.config.queues.keys().cloned().collect();
    let waiting = jobs
        .inner
        .store
        .read(|tx| {
            let mut names: Vec<String> = Vec::new();
            let mut after: Option<Vec<u8>> = None;
            loop {
                let mut found = None;
                tx.scan_prefix(Table::JobsReady, b"", false, after.as_deref(), |k, _| {
                    if let Some((queue, ..)) = parse_ready_key(k) {
                        found = Some(queue.to_string());
                    }
                    ScanControl::Stop
                })?;
                match found {
                    Some(queue) => {
                        // Skip past every key of this queue.
                        let mut skip = queue_prefix(&queue);
                        skip.push(0xFF);
                        skip.extend_from_slice(&[0xFF; 16]);
                        after = Some(skip);
                        names.push(queue);
                    }
                    None => break,
                }
            }
            Ok::<Vec<String>, JobsError>(names)
        })
        .await?;
    queues.extend(waiting);
    for queue in queues {
        wake(jobs, &queue);
    }
    rt.spawn(prune_loop(jobs.clone()));
    rt.spawn(super::cron::schedule_loop(jobs.clone()));
    Ok(recovered.len())
}

pub(super) async fn shutdown(jobs: &Jobs, grace: Duration) {
    let rt = &jobs.inner.runtime;
    if !rt.is_started() {
        return;
    }
    // Stop claiming; give running jobs the grace period; then tell the rest to stop (they
    // are requeued without counting the attempt).
    rt.stop.cancel();
    let deadline = tokio::time::Instant::now() + grace;
    while rt.running.lock().map(|m| !m.is_empty()).unwrap_or(false) && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let still: Vec<Arc<RunningEntry>> =
        rt.running.lock().map(|m| m.values().cloned().collect()).unwrap_or_default();
    for entry in &still {
        let _ =
            entry.reason.compare_exchange(REASON_NONE, REASON_SHUTDOWN, Ordering::AcqRel, Ordering::Acquire);
    }
    rt.runners.cancel();
    let tasks: Vec<JoinHandle<()>> = rt.tasks.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default();
    for task in tasks {
        let _ = task.await;
    }
    if let Ok(mut slot) = rt.finish_tx.lock() {
        slot.take();
    }
    let completer = rt.completer.lock().ok().and_then(|mut c| c.take());
    if let Some(completer) = completer {
        let _ = completer.await;
    }
}

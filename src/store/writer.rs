//! The single writer thread and its group commit.
//!
//! Writes queue up on a bounded channel. The writer takes the first queued write, then every
//! write already waiting (up to `max_batch`), applies them one by one in a single redb write
//! transaction (two-phase commit, `Durability::Immediate`), commits once, and only then
//! delivers each result. A write that returns an error has its staged changes discarded and
//! does not affect its neighbours; a write that panics is reported as an internal error.
//! If the commit itself fails, every write of the batch gets the error, the store reports
//! unhealthy, and the file is reopened (redb repairs it on open).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::tx::{CommitHook, Generations, WriteTx};
use super::{open_database, DbSlot, StoreError, StoreOptions};
use crate::util::metrics::{Counter, Histogram, BATCH_BUCKETS, LATENCY_BUCKETS};

/// Delivers a write's result once the batch's commit outcome is known.
type Deliver = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// What a queued write produced: whether to keep its staged changes, and its reply.
struct Outcome {
    keep: bool,
    deliver: Deliver,
}

/// A queued write. Called with `Ok(tx)` to run it, or with `Err(e)` to reject it unrun.
type Job = Box<dyn for<'a, 'b> FnOnce(Result<&'a mut WriteTx<'b>, StoreError>) -> Outcome + Send>;

/// Called after a commit that wrote a watched table (see `Store::on_commit`).
pub type CommitWatcher = Arc<dyn Fn() + Send + Sync>;

struct Shared {
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    /// Watchers: the set of tables (bits) each one watches.
    watchers: std::sync::RwLock<Vec<(u64, CommitWatcher)>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    healthy: AtomicBool,
    stats: WriterStats,
    generations: Generations,
}

/// What the writer did since start (for `/metrics`).
#[derive(Debug)]
pub struct WriterStats {
    /// Group commits that succeeded.
    pub commits: Counter,
    /// Group commits that failed (the file was reopened).
    pub failed_commits: Counter,
    /// Writes per group commit.
    pub batch_size: Histogram,
    /// Seconds from starting a batch's transaction to its durable commit.
    pub commit_seconds: Histogram,
}

impl Default for WriterStats {
    fn default() -> Self {
        WriterStats {
            commits: Counter::default(),
            failed_commits: Counter::default(),
            batch_size: Histogram::new(&BATCH_BUCKETS),
            commit_seconds: Histogram::new(&LATENCY_BUCKETS),
        }
    }
}

#[derive(Clone)]
pub(super) struct WriterHandle {
    shared: Arc<Shared>,
}

pub(super) fn spawn(slot: DbSlot, path: PathBuf, options: StoreOptions) -> Result<WriterHandle, StoreError> {
    let (tx, rx) = mpsc::channel::<Job>(options.queue_capacity.max(1));
    let shared = Arc::new(Shared {
        sender: Mutex::new(Some(tx)),
        watchers: std::sync::RwLock::new(Vec::new()),
        thread: Mutex::new(None),
        healthy: AtomicBool::new(true),
        stats: WriterStats::default(),
        generations: Generations::default(),
    });
    let thread_shared = shared.clone();
    let handle = std::thread::Builder::new()
        .name("backbone-writer".into())
        .spawn(move || run(rx, slot, path, options, thread_shared))
        .map_err(|err| StoreError::Internal(format!("cannot start the writer thread: {err}")))?;
    if let Ok(mut thread) = shared.thread.lock() {
        *thread = Some(handle);
    }
    Ok(WriterHandle { shared })
}

/// Wraps a typed write closure into a queue job plus the receiver of its result.
fn make_job<T, E, F>(f: F) -> (Job, oneshot::Receiver<Result<T, E>>)
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: FnOnce(&mut WriteTx<'_>) -> Result<T, E> + Send + 'static,
{
    let (reply, receiver) = oneshot::channel::<Result<T, E>>();
    let job: Job = Box::new(move |tx: Result<&mut WriteTx<'_>, StoreError>| match tx.map(f) {
        Err(err) => Outcome {
            keep: false,
            deliver: Box::new(move |_| {
                let _ = reply.send(Err(E::from(err)));
            }),
        },
        Ok(Ok(value)) => Outcome {
            keep: true,
            deliver: Box::new(move |commit| {
                let _ = reply.send(commit.map(|()| value).map_err(E::from));
            }),
        },
        Ok(Err(err)) => Outcome {
            keep: false,
            deliver: Box::new(move |_| {
                let _ = reply.send(Err(err));
            }),
        },
    });
    (job, receiver)
}

fn lost_reply() -> StoreError {
    StoreError::Internal("the write was dropped before it completed".into())
}

fn closed() -> StoreError {
    StoreError::Unavailable("the store is shut down".into())
}

impl WriterHandle {
    fn sender(&self) -> Result<mpsc::Sender<Job>, StoreError> {
        let guard = self.shared.sender.lock().map_err(|_| closed())?;
        guard.clone().ok_or_else(closed)
    }

    pub(super) async fn submit<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, E> + Send + 'static,
    {
        let sender = self.sender()?;
        let (job, receiver) = make_job(f);
        sender.send(job).await.map_err(|_| closed())?;
        receiver.await.map_err(|_| E::from(lost_reply()))?
    }

    pub(super) fn submit_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, E> + Send + 'static,
    {
        let sender = self.sender()?;
        let (job, receiver) = make_job(f);
        sender.blocking_send(job).map_err(|_| closed())?;
        receiver.blocking_recv().map_err(|_| E::from(lost_reply()))?
    }

    pub(super) fn stats(&self) -> &WriterStats {
        &self.shared.stats
    }

    pub(super) fn generations(&self) -> &Generations {
        &self.shared.generations
    }

    pub(super) fn is_healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Acquire)
    }

    pub(super) fn watch(&self, tables: u64, watcher: CommitWatcher) {
        if let Ok(mut watchers) = self.shared.watchers.write() {
            watchers.push((tables, watcher));
        }
    }

    /// Closes the queue and waits until the writer has committed what was queued.
    pub(super) fn shutdown(&self) {
        if let Ok(mut sender) = self.shared.sender.lock() {
            sender.take();
        }
        let thread = self.shared.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

fn run(mut rx: mpsc::Receiver<Job>, slot: DbSlot, path: PathBuf, options: StoreOptions, shared: Arc<Shared>) {
    let max_batch = options.max_batch.max(1);
    let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let jobs = std::mem::take(&mut batch);
        let size = jobs.len();
        let started = std::time::Instant::now();
        let result = commit_batch(&slot, jobs, &shared);
        shared.stats.batch_size.observe(size as f64);
        shared.stats.commit_seconds.observe_duration(started.elapsed());
        match &result {
            Ok(()) => shared.stats.commits.inc(),
            Err(_) => shared.stats.failed_commits.inc(),
        }
        if let Err(err) = result {
            tracing::error!(error = %err, "group commit failed; reopening the data file");
            shared.healthy.store(false, Ordering::Release);
            if reopen(&slot, &path, &options) {
                shared.healthy.store(true, Ordering::Release);
            }
        }
    }
    tracing::debug!("writer stopped: queue closed and drained");
}

/// Applies and commits one batch. Returns the commit error (already delivered to every
/// writer of the batch) so the caller can reopen the file.
fn commit_batch(slot: &DbSlot, jobs: Vec<Job>, shared: &Shared) -> Result<(), StoreError> {
    let db = match slot.read().ok().and_then(|g| g.clone()) {
        Some(db) => db,
        None => {
            let err = StoreError::Unavailable("the data file is being reopened".into());
            for job in jobs {
                reject(job, &err);
            }
            return Ok(());
        }
    };
    let mut txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(err) => {
            let err = commit_failure(StoreError::from_redb(err));
            for job in jobs {
                reject(job, &err);
            }
            return Err(err);
        }
    };
    txn.set_two_phase_commit(true);
    let mut deliveries: Vec<Deliver> = Vec::with_capacity(jobs.len());
    let mut hooks: Vec<CommitHook> = Vec::new();
    let mut touched = 0u64;
    let mut failure: Option<StoreError> = None;
    for job in jobs {
        if failure.is_some() {
            reject(job, &StoreError::Unavailable("an earlier write in the batch failed".into()));
            continue;
        }
        let mut wtx = WriteTx::new(&txn);
        let outcome = catch_unwind(AssertUnwindSafe(|| job(Ok(&mut wtx))));
        match outcome {
            Ok(Outcome { keep: true, deliver }) => {
                match wtx.apply(&shared.generations) {
                    Ok((more, tables)) => {
                        hooks.extend(more);
                        touched |= tables;
                    }
                    Err(err) => failure = Some(commit_failure(err)),
                }
                deliveries.push(deliver);
            }
            Ok(Outcome { keep: false, deliver }) => {
                // Rejected writes get their own error regardless of the commit outcome.
                deliver(Ok(()));
            }
            Err(_) => {
                // The reply sender was dropped during unwinding; the caller sees a lost reply.
                tracing::error!("a write panicked; its changes were discarded");
            }
        }
    }
    let result = match failure {
        Some(err) => {
            let _ = txn.abort();
            Err(err)
        }
        None => txn.commit().map_err(|err| commit_failure(StoreError::from_redb(err))),
    };
    if result.is_ok() {
        for hook in hooks {
            if catch_unwind(AssertUnwindSafe(hook)).is_err() {
                tracing::error!("a commit hook panicked");
            }
        }
        if let Ok(watchers) = shared.watchers.read() {
            for (tables, watcher) in watchers.iter() {
                if tables & touched != 0 {
                    watcher();
                }
            }
        }
    }
    for deliver in deliveries {
        deliver(match &result {
            Ok(()) => Ok(()),
            Err(err) => Err(clone_error(err)),
        });
    }
    result
}

/// What a write sees when its batch could not be committed: the disk is full (507), or the
/// store is temporarily unavailable while the file is reopened (503).
fn commit_failure(err: StoreError) -> StoreError {
    match err {
        StoreError::DiskFull => StoreError::DiskFull,
        StoreError::Unavailable(m) => StoreError::Unavailable(m),
        other => StoreError::Unavailable(format!("commit failed: {other}")),
    }
}

/// Answers a write with `err` without running it.
fn reject(job: Job, err: &StoreError) {
    let outcome = job(Err(clone_error(err)));
    (outcome.deliver)(Ok(()));
}

fn clone_error(err: &StoreError) -> StoreError {
    match err {
        StoreError::Locked => StoreError::Locked,
        StoreError::DiskFull => StoreError::DiskFull,
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::TooNew { found, supported } => {
            StoreError::TooNew { found: *found, supported: *supported }
        }
        StoreError::Internal(m) => StoreError::Internal(m.clone()),
    }
}

/// Drops the failed database handle once no reader holds it, then reopens the file.
/// Returns true when the store is usable again.
fn reopen(slot: &DbSlot, path: &std::path::Path, options: &StoreOptions) -> bool {
    let old = slot.write().ok().and_then(|mut g| g.take());
    if let Some(mut old) = old {
        // Wait (bounded) for in-flight readers to release their handles.
        for _ in 0..200 {
            match Arc::try_unwrap(old) {
                Ok(db) => {
                    drop(db);
                    break;
                }
                Err(still_shared) => {
                    old = still_shared;
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
    for attempt in 0..50u64 {
        match open_database(path, options) {
            Ok(db) => {
                if let Ok(mut guard) = slot.write() {
                    *guard = Some(Arc::new(db));
                    tracing::info!("data file reopened after a failed commit");
                    return true;
                }
                return false;
            }
            Err(err) => {
                tracing::error!(error = %err, attempt, "reopening the data file failed");
                std::thread::sleep(Duration::from_millis(100 * (attempt + 1).min(10)));
            }
        }
    }
    false
}

//! Durable storage: an ordered key-value interface with transactions over one redb file.
//!
//! This is the only module that names redb. Everything else sees [`Store`], [`ReadTx`],
//! [`WriteTx`] and [`Table`]. Writes go through a single writer thread that group-commits
//! (see `writer.rs`): concurrent writes are applied in one transaction, committed with one
//! fsync, and only then acknowledged. Reads run on MVCC snapshots on the blocking pool,
//! never on the async executor.
//!
//! # How it works
//!
//! Ordered key-value interface over redb: `Store`, `ReadTx`, `WriteTx`, `Table`.
//! `tables.rs` lists every table with its key and value encoding, plus the schema version
//! and its upgrade hook (`open_database` runs upgrade steps in the opening transaction;
//! 1 → 2 drops the old index entries and sets a flag on which [`crate::records::Records::open`] rebuilds them in
//! the new encoding before serving; 2 → 3 drops the job state indexes and sets a flag on
//! which [`crate::jobs::Jobs::open`] rebuilds them in the one-entry-per-job layout; `backbone check` on a
//! not-yet-upgraded file says the rebuild is pending instead of reporting missing entries). `writer.rs` is the group-commit writer thread. `tx.rs` has the
//! per-write overlay that makes one write's failure invisible to its batch neighbours.
//! `fault.rs` holds the test-only storage backends: `FaultInjector` (failing fsync, ENOSPC) and
//! `PowerLossDisk` (a simulated disk that loses unsynced writes and fails every I/O after N
//! operations, for the power-loss sweep). `Store::on_commit(table, watcher)` calls a watcher on
//! the writer thread after every durable commit that wrote that table (the search indexer's
//! wake-up: no polling). [`Store::read`] runs a snapshot read on the blocking pool;
//! [`Store::read_now`] runs it on the calling async thread, guided by a `ReadPlacement` (kept per
//! read kind, e.g. in each catalog entry): cheap reads stay inline (no two context switches per
//! read), a kind whose reads keep exceeding 500 µs moves to the pool for good. A missing data
//! file is created atomically: built and synced as `data.redb.creating`, then renamed into place
//! (a leftover `.creating` is removed at start; a damaged real file is refused, never replaced).
//!
//! **Architecture invariant:** nothing in the data directory is reachable by other local
//! users: the directory is 0700 before anything in it is opened or bound, and files and
//! directories are created 0600/0700 whatever the umask (new code creating paths there uses
//! [`crate::datadir::create_dir_all`] / `create_private_file`).
//!
//! **Architecture invariant:** `store` is the only module that names redb. Everything else
//! sees byte keys and values, which keeps the door open to another backend.
//!
//! **Architecture invariant:** no write is acknowledged before its transaction is durably
//! committed ([`redb::Durability::Immediate`], two-phase commit). A commit failure answers every
//! write of the batch with an error (503/507) and the writer reopens the file.

pub mod fault;
mod tables;
mod tx;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub use tables::{Table, SCHEMA_VERSION};
pub use tx::{CommitHook, ReadTx, ScanControl, WriteTx};
pub use writer::{CommitWatcher, WriterStats};

use redb::ReadableTable;
use tables::META_SCHEMA_VERSION;

/// Failures of the storage layer. Domain modules wrap these; `api/` maps them to 503/507/500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the data file (redb's file lock).
    #[error("the data file is in use by another process")]
    Locked,
    /// The disk is full; nothing of the failed write was kept.
    #[error("no space left on the device")]
    DiskFull,
    /// The store cannot take writes right now (commit failed and the file is being reopened,
    /// or the server is shutting down).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The file was written by a newer Backbone.
    #[error("data file schema version {found} is newer than this build supports ({supported})")]
    TooNew { found: u32, supported: u32 },
    /// Anything else redb or the OS reported; details are for the log only.
    #[error("storage error: {0}")]
    Internal(String),
}

impl StoreError {
    fn from_io(err: &std::io::Error) -> StoreError {
        if err.kind() == std::io::ErrorKind::StorageFull || err.raw_os_error() == Some(28) {
            StoreError::DiskFull
        } else {
            StoreError::Internal(err.to_string())
        }
    }

    pub(crate) fn from_redb(err: impl Into<redb::Error>) -> StoreError {
        match err.into() {
            redb::Error::DatabaseAlreadyOpen => StoreError::Locked,
            redb::Error::Io(io) => StoreError::from_io(&io),
            redb::Error::PreviousIo => {
                StoreError::Unavailable("a previous I/O error poisoned the file".into())
            }
            other => StoreError::Internal(other.to_string()),
        }
    }
}

/// Tuning knobs for the store, taken from the `[store]` config section.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// redb page cache size in bytes.
    pub cache_bytes: usize,
    /// Most writes applied in one group commit.
    pub max_batch: usize,
    /// Capacity of the write queue; callers wait (backpressure) when it is full.
    pub queue_capacity: usize,
    /// Test hook: inject I/O failures into the data file (never set in production).
    pub faults: Option<Arc<fault::FaultInjector>>,
    /// Test hook: keep the data in a simulated disk that loses unsynced writes (never set in
    /// production; the path is then unused).
    pub disk: Option<Arc<fault::PowerLossDisk>>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_bytes: 64 << 20,
            max_batch: 1024,
            queue_capacity: 8192,
            faults: None,
            disk: None,
        }
    }
}

/// Shared slot holding the open database; the writer swaps it when it reopens the file.
type DbSlot = Arc<RwLock<Option<Arc<redb::Database>>>>;

/// Handle to the data file. Cheap to clone; all clones share one writer.
#[derive(Clone)]
pub struct Store {
    db: DbSlot,
    writer: writer::WriterHandle,
    path: Arc<PathBuf>,
}

impl Store {
    /// Opens (creating if needed) the data file, creates missing tables, checks the schema
    /// version and starts the writer thread. Blocking: call it off the executor.
    pub fn open(path: &Path, options: &StoreOptions) -> Result<Store, StoreError> {
        if options.disk.is_none() && options.faults.is_none() {
            create_atomically(path, options)?;
        }
        let db = open_database(path, options)?;
        let slot: DbSlot = Arc::new(RwLock::new(Some(Arc::new(db))));
        let writer = writer::spawn(slot.clone(), path.to_path_buf(), options.clone())?;
        Ok(Store { db: slot, writer, path: Arc::new(path.to_path_buf()) })
    }

    /// Path of the data file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn database(&self) -> Result<Arc<redb::Database>, StoreError> {
        let guard = self.db.read().map_err(|_| StoreError::Internal("database slot lock poisoned".into()))?;
        guard.clone().ok_or_else(|| StoreError::Unavailable("the data file is being reopened".into()))
    }

    /// Runs `f` on a consistent read snapshot, on the blocking pool.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&ReadTx) -> Result<T, E> + Send + 'static,
    {
        let db = self.database()?;
        tokio::task::spawn_blocking(move || {
            let tx = ReadTx::begin(db.as_ref())?;
            f(&tx)
        })
        .await
        .map_err(|err| E::from(StoreError::Internal(format!("read task failed: {err}"))))?
    }

    /// Runs `f` on a read snapshot right here, on the calling (async) thread, timing it
    /// against `placement`'s budget. For small reads whose [`ReadPlacement`] says they are
    /// cheap (a point lookup, a rule over one record with index-backed joins): handing
    /// them to the blocking pool and back costs two context switches, more than the read.
    pub fn read_now<T, E, F>(&self, placement: &ReadPlacement, f: F) -> Result<T, E>
    where
        E: From<StoreError>,
        F: FnOnce(&ReadTx) -> Result<T, E>,
    {
        let started = std::time::Instant::now();
        let result = self.read_blocking(f);
        placement.observe(started.elapsed());
        result
    }

    /// Runs `f` on a read snapshot on the current thread (for CLI commands and startup).
    pub fn read_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        E: From<StoreError>,
        F: FnOnce(&ReadTx) -> Result<T, E>,
    {
        let db = self.database()?;
        let tx = ReadTx::begin(db.as_ref())?;
        f(&tx)
    }

    /// Queues `f` for the writer. It runs inside the next group-commit transaction; its
    /// changes are kept only if it returns `Ok`, and the result is delivered only after the
    /// transaction is durably committed. A storage failure of the commit returns the
    /// `StoreError` converted into `E`.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, E> + Send + 'static,
    {
        self.writer.submit(f).await
    }

    /// Like [`Store::write`], for callers outside the async runtime.
    pub fn write_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, E> + Send + 'static,
    {
        self.writer.submit_blocking(f)
    }

    /// The write generation of `segment` in `table` (see [`tx::Generations`]): read it
    /// before a snapshot, compare inside a later write.
    pub fn generation(&self, table: Table, segment: &[u8]) -> u64 {
        self.writer.generations().get(table, segment)
    }

    /// Calls `watcher` on the writer thread after every durable commit that wrote `table`
    /// (a wake-up for a consumer of that table; keep it cheap).
    pub fn on_commit(&self, table: Table, watcher: CommitWatcher) {
        self.writer.watch(table.bit(), watcher);
    }

    /// Group-commit counters since start.
    pub fn writer_stats(&self) -> &WriterStats {
        self.writer.stats()
    }

    /// Size of the data file in bytes (0 if it cannot be read).
    pub fn file_bytes(&self) -> u64 {
        std::fs::metadata(self.path.as_ref()).map(|m| m.len()).unwrap_or(0)
    }

    /// True while the writer runs and the last commit did not fail.
    pub fn is_healthy(&self) -> bool {
        self.writer.is_healthy() && self.database().is_ok()
    }

    /// Stops the writer after it has committed everything queued so far, then closes the
    /// file. Later writes fail with `Unavailable`.
    pub fn shutdown(&self) {
        self.writer.shutdown();
        if let Ok(mut guard) = self.db.write() {
            guard.take();
        }
    }

    /// `backbone_store_*`: file size, health, group commits, batch sizes, commit latency.
    pub fn render_metrics(&self, out: &mut crate::util::metrics::Exposition) {
        let stats = self.writer_stats();
        out.single("backbone_store_file_bytes", "gauge", "Size of the data file.", self.file_bytes() as f64);
        out.single(
            "backbone_store_healthy",
            "gauge",
            "1 while the store takes writes (0 after a failed commit until the file is reopened).",
            if self.is_healthy() { 1.0 } else { 0.0 },
        );
        for (name, help, counter) in [
            ("backbone_store_commits_total", "Group commits that succeeded.", &stats.commits),
            ("backbone_store_commit_failures_total", "Group commits that failed.", &stats.failed_commits),
        ] {
            out.single(name, "counter", help, counter.get() as f64);
        }
        for (name, help, histogram) in [
            ("backbone_store_batch_size", "Writes per group commit.", &stats.batch_size),
            (
                "backbone_store_commit_duration_seconds",
                "Time to apply and durably commit a batch.",
                &stats.commit_seconds,
            ),
        ] {
            out.family(name, "histogram", help);
            out.histogram(name, &[], histogram);
        }
    }
}

/// The data file opened read-only (for `backbone check`): no writer, no repair.
pub struct ReadOnlyStore {
    db: redb::ReadOnlyDatabase,
}

impl ReadOnlyStore {
    /// Opens an existing data file without modifying it. A file that needs recovery after a
    /// crash is refused (`Unavailable`): opening it writable (starting the server) repairs it.
    pub fn open(path: &Path) -> Result<ReadOnlyStore, StoreError> {
        match redb::ReadOnlyDatabase::open(path) {
            Ok(db) => Ok(ReadOnlyStore { db }),
            Err(redb::DatabaseError::RepairAborted) => {
                Err(StoreError::Unavailable("the data file needs recovery after a crash".into()))
            }
            Err(err) => Err(StoreError::from_redb(err)),
        }
    }

    /// Runs `f` on a read snapshot.
    pub fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        E: From<StoreError>,
        F: FnOnce(&ReadTx) -> Result<T, E>,
    {
        let tx = ReadTx::begin(&self.db)?;
        f(&tx)
    }
}

/// The schema version recorded in the file (`None` before the first open wrote it).
pub fn stored_schema_version(tx: &ReadTx) -> Result<Option<u32>, StoreError> {
    Ok(tx
        .get(Table::Meta, META_SCHEMA_VERSION)?
        .and_then(|v| <[u8; 4]>::try_from(v.as_slice()).ok())
        .map(u32::from_le_bytes))
}

/// The `Meta` key the version 1 → 2 upgrade sets: index entries must be rebuilt by the
/// records module (which owns their encoding) before the first read (see `records::index`).
pub const INDEX_REBUILD_FLAG: &[u8] = b"record_index_rebuild";

/// The `Meta` key the version 2 → 3 upgrade sets: the job state indexes must be rebuilt by
/// the jobs module before jobs are claimed or listed (see `jobs::model::rebuild_indexes`).
pub const JOBS_INDEX_REBUILD_FLAG: &[u8] = b"jobs_index_rebuild";

/// The name a new data file is built under before it is renamed into place.
pub fn creating_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".creating");
    path.with_file_name(name)
}

/// Creates a missing data file so that a power cut can never leave a half-created file
/// under the real name: the file is built (every table, the schema version, committed and
/// synced) under [`creating_path`], then renamed into place and the directory synced.
/// A `.creating` file found at start was never acknowledged as open: it is removed and
/// the creation starts over. An existing data file's content is never touched here; only
/// its mode loses any group or other bits.
fn create_atomically(path: &Path, options: &StoreOptions) -> Result<(), StoreError> {
    let io = |what: &str, e: std::io::Error| StoreError::Internal(format!("{what} {}: {e}", path.display()));
    let creating = creating_path(path);
    if path.exists() {
        if creating.exists() {
            // A leftover next to a complete file (the rename happened, the cleanup of a
            // later crash did not): it holds nothing.
            std::fs::remove_file(&creating).map_err(|e| io("removing the leftover of creating", e))?;
        }
        // A file created before data files were private (or copied in loosely) holds the
        // server secret and the token keys: owner only.
        match crate::datadir::tighten(path) {
            Ok(true) => {
                tracing::warn!(path = %path.display(), "the data file was readable by other users; it is now 0600")
            }
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "cannot restrict the data file's mode")
            }
        }
        return Ok(());
    }
    if creating.exists() {
        tracing::warn!(path = %creating.display(), "removing a data file whose creation never finished");
        std::fs::remove_file(&creating).map_err(|e| io("removing the unfinished creation of", e))?;
    }
    // Created 0600 by us (whatever the umask), then initialised by redb in place; the
    // rename keeps the mode.
    crate::datadir::create_private_file(&creating).map_err(|e| io("creating", e))?;
    drop(open_database(&creating, options)?);
    std::fs::File::open(&creating).and_then(|f| f.sync_all()).map_err(|e| io("syncing the new", e))?;
    std::fs::rename(&creating, path).map_err(|e| io("moving into place", e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io("syncing the directory of", e))?;
    }
    Ok(())
}

/// Opens the file, creates every table and verifies or writes the schema version.
pub(super) fn open_database(path: &Path, options: &StoreOptions) -> Result<redb::Database, StoreError> {
    let mut builder = redb::Builder::new();
    builder.set_cache_size(options.cache_bytes);
    let db = match (&options.faults, &options.disk) {
        (_, Some(disk)) => fault::open_on_disk(&builder, disk.clone()),
        (Some(faults), None) => fault::open(&builder, path, faults.clone()),
        (None, None) => builder.create(path),
    }
    .map_err(StoreError::from_redb)?;
    let mut txn = db.begin_write().map_err(StoreError::from_redb)?;
    txn.set_two_phase_commit(true);
    {
        for table in Table::ALL {
            txn.open_table(table.definition()).map_err(StoreError::from_redb)?;
        }
        let mut meta = txn.open_table(Table::Meta.definition()).map_err(StoreError::from_redb)?;
        let found = meta
            .get(META_SCHEMA_VERSION)
            .map_err(StoreError::from_redb)?
            .and_then(|v| <[u8; 4]>::try_from(v.value()).ok())
            .map(u32::from_le_bytes);
        match found {
            Some(v) if v > SCHEMA_VERSION => {
                return Err(StoreError::TooNew { found: v, supported: SCHEMA_VERSION })
            }
            Some(v) if v < SCHEMA_VERSION => {
                if v < 2 {
                    // 1 → 2: index entry keys changed from canonical JSON to an order-preserving
                    // encoding. Entries are derived data: drop them all here and flag the
                    // rebuild, which `Records::open` runs (it owns the encoding) before serving.
                    let mut index =
                        txn.open_table(Table::RecordIndex.definition()).map_err(StoreError::from_redb)?;
                    index.retain(|_, _| false).map_err(StoreError::from_redb)?;
                    drop(index);
                    meta.insert(INDEX_REBUILD_FLAG, [1u8].as_slice()).map_err(StoreError::from_redb)?;
                }
                if v < 3 {
                    // 2 → 3: each job sits in one state index (ready, running or finished) and
                    // their values changed. Derived data again: dropped here, rebuilt by
                    // `Jobs::open` (it owns the job encoding) before any job is claimed.
                    for table in [Table::JobsReady, Table::JobsByState, Table::JobsFinished] {
                        let mut t = txn.open_table(table.definition()).map_err(StoreError::from_redb)?;
                        t.retain(|_, _| false).map_err(StoreError::from_redb)?;
                    }
                    meta.insert(JOBS_INDEX_REBUILD_FLAG, [1u8].as_slice()).map_err(StoreError::from_redb)?;
                }
                meta.insert(META_SCHEMA_VERSION, SCHEMA_VERSION.to_le_bytes().as_slice())
                    .map_err(StoreError::from_redb)?;
            }
            Some(_) => {}
            None => {
                meta.insert(META_SCHEMA_VERSION, SCHEMA_VERSION.to_le_bytes().as_slice())
                    .map_err(StoreError::from_redb)?;
            }
        }
    }
    txn.commit().map_err(StoreError::from_redb)?;
    Ok(db)
}

/// Where reads of one kind run: on the calling async thread while they stay cheap, on
/// the blocking pool for good once they are repeatedly slower than
/// [`ReadPlacement::BUDGET`].
///
/// Measured on the rooms benchmark (a create rule with an `@collection` join): running
/// the rule inline instead of through `spawn_blocking` took inserts from ~8.8k to ~11.4k
/// per second on 2 cores, the cost being context switches. A read that turns out heavy
/// (a join without an index over a large collection, a deep expand) would hold an async
/// worker, so a kind whose reads keep exceeding the budget moves to the pool. One slow
/// read is not enough (a cold cache after start, the thread being preempted): each slow
/// read adds one to a score, each fast one takes one off, and the move happens at
/// [`ReadPlacement::STRIKES`]. The placement lives in the catalog entry, so a schema or
/// rule change starts over.
#[derive(Debug, Default)]
pub struct ReadPlacement {
    score: std::sync::atomic::AtomicU32,
}

impl ReadPlacement {
    /// An inline read taking longer than this counts as slow.
    pub const BUDGET: std::time::Duration = std::time::Duration::from_micros(500);
    /// Net slow reads after which the kind moves to the blocking pool.
    pub const STRIKES: u32 = 16;

    /// True while reads of this kind run on the calling thread.
    pub fn inline(&self) -> bool {
        self.score.load(std::sync::atomic::Ordering::Relaxed) < Self::STRIKES
    }

    /// Records how long one inline read took.
    pub fn observe(&self, took: std::time::Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        if took > Self::BUDGET {
            let before = self.score.fetch_add(1, Relaxed);
            if before + 1 == Self::STRIKES {
                tracing::debug!(took_us = took.as_micros() as u64, "a read kind moves to the blocking pool");
            }
        } else if self.inline() && self.score.load(Relaxed) > 0 {
            // Only a write when there is something to take off: the common case of a
            // cheap kind touches no shared cache line.
            let _ =
                self.score.fetch_update(Relaxed, Relaxed, |s| (s > 0 && s < Self::STRIKES).then(|| s - 1));
        }
    }
}

#[cfg(test)]
mod tests;

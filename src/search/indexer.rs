//! The indexer: the one thread that owns tantivy's `IndexWriter`.
//!
//! It sleeps until the store reports a commit that wrote the outbox (or a command arrives),
//! reads the new entries in sequence order, applies each (reading the record's current
//! state from the same snapshot), and commits the index at most once per
//! [`COMMIT_INTERVAL`] with the last applied sequence number in the commit payload. After
//! each index commit it deletes the outbox entries the commit covers. Nothing here runs on
//! the async executor.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tantivy::{Index, IndexReader, IndexWriter, TantivyDocument};
use tokio::sync::oneshot;

use super::outbox::{self, Change};
use super::schema::{self, IndexSchema, INDEX_VERSION};
use super::{SearchError, SearchMetrics};
use crate::records::catalog::Catalog;
use crate::records::collection::Collection;
use crate::records::filter::RecordSource;
use crate::records::record::decode;
use crate::records::{collection_prefix, record_key};
use crate::store::{ReadTx, ScanControl, Store, Table};

/// Longest time applied changes wait for an index commit (and shortest time between two).
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(1000);
/// Outbox entries read per snapshot.
const BATCH: usize = 2000;
/// Memory budget of the index writer (one indexing thread).
const WRITER_MEMORY: usize = 64 << 20;

/// What the index commit payload holds.
#[derive(Debug, Serialize, Deserialize)]
pub struct Payload {
    /// Every outbox entry up to this sequence number is in this commit.
    pub seq: u64,
    /// `schema::INDEX_VERSION` of the build that wrote it.
    pub version: u32,
}

/// Work for the indexer besides the outbox.
pub enum Command {
    /// Rebuild the documents of one collection (or of all, dropping everything else) from a
    /// snapshot of the data; `progress` counts documents written; `done` gets the total.
    Reindex {
        collection_id: Option<String>,
        progress: Arc<AtomicU64>,
        done: oneshot::Sender<Result<u64, SearchError>>,
    },
}

/// Called with the id of a searchable collection whose schema changed: enqueue its
/// reindex job durably (the entry is not pruned until this returned Ok).
pub type OnCollectionChange = Box<dyn Fn(&str) -> Result<(), SearchError> + Send>;

#[derive(Default)]
struct Signals {
    woken: bool,
    stop: bool,
    commands: VecDeque<Command>,
}

/// State shared between the indexer thread and the service.
pub struct Shared {
    signals: Mutex<Signals>,
    condvar: Condvar,
    /// Sequence number in the last index commit.
    pub committed_seq: AtomicU64,
    /// True while the thread runs and its last commit succeeded.
    pub healthy: AtomicBool,
    /// True while a full rebuild is pending or running.
    pub rebuilding: AtomicBool,
    pub metrics: SearchMetrics,
}

impl Shared {
    pub fn new() -> Shared {
        Shared {
            signals: Mutex::new(Signals::default()),
            condvar: Condvar::new(),
            committed_seq: AtomicU64::new(0),
            healthy: AtomicBool::new(false),
            rebuilding: AtomicBool::new(false),
            metrics: SearchMetrics::default(),
        }
    }

    /// Wakes the thread to read the outbox.
    pub fn wake(&self) {
        if let Ok(mut s) = self.signals.lock() {
            s.woken = true;
        }
        self.condvar.notify_one();
    }

    pub fn send(&self, command: Command) -> Result<(), SearchError> {
        let mut s =
            self.signals.lock().map_err(|_| SearchError::Unavailable("indexer lock poisoned".into()))?;
        if s.stop {
            return Err(SearchError::Unavailable("the indexer is stopped".into()));
        }
        s.commands.push_back(command);
        drop(s);
        self.condvar.notify_one();
        Ok(())
    }

    pub fn stop(&self) {
        if let Ok(mut s) = self.signals.lock() {
            s.stop = true;
        }
        self.condvar.notify_one();
    }
}

impl Default for Shared {
    fn default() -> Self {
        Shared::new()
    }
}

/// Reads the payload of the last commit of `index`, if it is one this build wrote.
pub fn read_payload(index: &Index) -> Result<Option<Payload>, SearchError> {
    let metas = index.load_metas().map_err(SearchError::from_tantivy)?;
    Ok(metas.payload.and_then(|p| serde_json::from_str::<Payload>(&p).ok()))
}

/// Commits with `seq` as the payload.
pub fn commit(writer: &mut IndexWriter, seq: u64) -> Result<(), SearchError> {
    let payload = serde_json::to_string(&Payload { seq, version: INDEX_VERSION })
        .map_err(|e| SearchError::Internal(e.to_string()))?;
    let mut prepared = writer.prepare_commit().map_err(SearchError::from_tantivy)?;
    prepared.set_payload(&payload);
    prepared.commit().map_err(SearchError::from_tantivy)?;
    Ok(())
}

/// Opens a writer on `index` (one indexing thread).
pub fn open_writer(index: &Index) -> Result<IndexWriter, SearchError> {
    index.writer_with_num_threads::<TantivyDocument>(1, WRITER_MEMORY).map_err(SearchError::from_tantivy)
}

/// Everything the thread needs.
pub struct Indexer {
    pub store: Store,
    pub schema: IndexSchema,
    pub writer: IndexWriter,
    pub reader: IndexReader,
    pub shared: Arc<Shared>,
    pub on_collection_change: OnCollectionChange,
    /// Last sequence applied to the writer (committed or not).
    pub applied: u64,
}

impl Indexer {
    /// The thread's loop; returns after `Shared::stop`, having committed what it applied.
    pub fn run(mut self) {
        self.shared.healthy.store(true, Ordering::Release);
        let mut dirty_since: Option<Instant> = None;
        let mut last_commit = Instant::now() - COMMIT_INTERVAL;
        // Replay whatever the outbox holds beyond the payload before waiting.
        let mut woken = true;
        loop {
            let mut commands = VecDeque::new();
            let mut stop = false;
            if !woken {
                let Ok(mut s) = self.shared.signals.lock() else { return };
                loop {
                    if s.stop || s.woken || !s.commands.is_empty() {
                        break;
                    }
                    match dirty_since {
                        None => match self.shared.condvar.wait(s) {
                            Ok(guard) => s = guard,
                            Err(_) => return,
                        },
                        Some(_) => {
                            let due =
                                (last_commit + COMMIT_INTERVAL).saturating_duration_since(Instant::now());
                            if due.is_zero() {
                                break;
                            }
                            match self.shared.condvar.wait_timeout(s, due) {
                                Ok((guard, _)) => s = guard,
                                Err(_) => return,
                            }
                        }
                    }
                }
                stop = s.stop;
                s.woken = false;
                std::mem::swap(&mut commands, &mut s.commands);
            }
            woken = false;
            match self.drain_outbox() {
                Ok(true) => {
                    dirty_since.get_or_insert_with(Instant::now);
                }
                Ok(false) => {}
                Err(err) => {
                    tracing::error!(error = %err, "applying search outbox entries failed; retrying");
                    self.shared.healthy.store(false, Ordering::Release);
                    std::thread::sleep(Duration::from_millis(500));
                    woken = true;
                }
            }
            let due = last_commit.elapsed() >= COMMIT_INTERVAL;
            if dirty_since.is_some() && (due || stop || !commands.is_empty()) {
                if self.commit_applied() {
                    dirty_since = None;
                    last_commit = Instant::now();
                } else {
                    woken = true;
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
            for command in commands {
                self.run_command(command);
                last_commit = Instant::now();
            }
            if stop {
                if dirty_since.is_some() {
                    self.commit_applied();
                }
                break;
            }
        }
        self.shared.healthy.store(false, Ordering::Release);
        if let Err(err) = self.writer.wait_merging_threads() {
            tracing::warn!(error = %err, "search merges did not finish");
        }
        tracing::debug!("indexer stopped");
    }

    /// Applies every outbox entry above `applied`; true if any was applied.
    fn drain_outbox(&mut self) -> Result<bool, SearchError> {
        let mut any = false;
        loop {
            let after = self.applied;
            let store = self.store.clone();
            let applied = store.read_blocking(|tx| -> Result<Option<u64>, SearchError> {
                let entries = outbox::read_after(tx, after, BATCH)?;
                let Some(&(last, _)) = entries.last() else {
                    return Ok(None);
                };
                let catalog = Catalog::load(tx)?;
                for (_, change) in &entries {
                    self.apply(tx, &catalog, change)?;
                }
                self.shared.metrics.outbox_applied.add(entries.len() as u64);
                Ok(Some(last))
            })?;
            match applied {
                Some(last) => {
                    self.applied = last;
                    any = true;
                }
                None => return Ok(any),
            }
        }
    }

    fn apply(&self, tx: &ReadTx, catalog: &Catalog, change: &Change) -> Result<(), SearchError> {
        match change {
            Change::Record { collection_id, record_id } => {
                self.writer.delete_term(self.schema.key_term(collection_id, record_id));
                let Some(entry) = catalog.get(collection_id) else { return Ok(()) };
                if !entry.collection.search.enabled {
                    return Ok(());
                }
                if let Some(bytes) = tx.get(Table::Records, &record_key(collection_id, record_id))? {
                    let stored = decode(&bytes).map_err(|e| SearchError::Internal(e.to_string()))?;
                    let doc =
                        schema::document(&self.schema, &entry.collection, catalog, tx, record_id, &stored);
                    self.writer.add_document(doc).map_err(SearchError::from_tantivy)?;
                }
                Ok(())
            }
            Change::Collection { collection_id } => {
                match catalog.get(collection_id) {
                    Some(entry) if entry.collection.search.enabled => {
                        (self.on_collection_change)(collection_id)?;
                    }
                    _ => {
                        self.writer.delete_term(self.schema.collection_term(collection_id));
                    }
                }
                Ok(())
            }
        }
    }

    /// Commits what was applied and prunes the outbox; false on failure.
    fn commit_applied(&mut self) -> bool {
        let started = Instant::now();
        let seq = self.applied;
        match commit(&mut self.writer, seq) {
            Ok(()) => {
                self.shared.metrics.commit_seconds.observe_duration(started.elapsed());
                self.shared.metrics.commits.inc();
                self.shared.committed_seq.store(seq, Ordering::Release);
                self.shared.healthy.store(true, Ordering::Release);
                if let Err(err) = self.reader.reload() {
                    tracing::warn!(error = %err, "search reader reload failed");
                }
                self.prune(seq);
                true
            }
            Err(err) => {
                self.shared.metrics.commit_failures.inc();
                self.shared.healthy.store(false, Ordering::Release);
                tracing::error!(error = %err, "search index commit failed; retrying");
                // Uncommitted changes were dropped by the failed commit: re-read them.
                let committed = self.shared.committed_seq.load(Ordering::Acquire);
                self.writer.rollback().ok();
                self.applied = committed;
                false
            }
        }
    }

    fn prune(&self, upto: u64) {
        let result = self.store.write_blocking(move |tx| -> Result<usize, crate::store::StoreError> {
            outbox::prune(tx, upto, 50_000)
        });
        if let Err(err) = result {
            tracing::warn!(error = %err, "pruning the search outbox failed (retried after the next commit)");
        }
    }

    fn run_command(&mut self, command: Command) {
        match command {
            Command::Reindex { collection_id, progress, done } => {
                let result = self.reindex(collection_id.as_deref(), &progress);
                if result.is_ok() && collection_id.is_none() {
                    self.shared.rebuilding.store(false, Ordering::Release);
                }
                let _ = done.send(result);
            }
        }
    }

    /// Rebuilds documents from one snapshot, then commits (the payload keeps the applied
    /// sequence: later outbox entries are applied on top, and re-applying is harmless).
    fn reindex(&mut self, collection_id: Option<&str>, progress: &AtomicU64) -> Result<u64, SearchError> {
        let store = self.store.clone();
        let count = store.read_blocking(|tx| -> Result<u64, SearchError> {
            let catalog = Catalog::load(tx)?;
            let targets: Vec<Collection> = match collection_id {
                Some(id) => {
                    self.writer.delete_term(self.schema.collection_term(id));
                    catalog.get(id).map(|e| e.collection.clone()).into_iter().collect()
                }
                None => {
                    self.writer.delete_all_documents().map_err(SearchError::from_tantivy)?;
                    catalog.all().map(|e| e.collection.clone()).collect()
                }
            };
            let mut count = 0u64;
            for collection in targets.iter().filter(|c| c.search.enabled) {
                let prefix = collection_prefix(&collection.id);
                let mut failure = None;
                tx.scan_prefix(Table::Records, &prefix, false, None, |key, value| {
                    let record_id = String::from_utf8_lossy(&key[prefix.len()..]).to_string();
                    let stored = match decode(value) {
                        Ok(stored) => stored,
                        Err(err) => {
                            failure = Some(SearchError::Internal(err.to_string()));
                            return ScanControl::Stop;
                        }
                    };
                    let related: &dyn RecordSource = tx;
                    let doc =
                        schema::document(&self.schema, collection, &catalog, related, &record_id, &stored);
                    if let Err(err) = self.writer.add_document(doc) {
                        failure = Some(SearchError::from_tantivy(err));
                        return ScanControl::Stop;
                    }
                    count += 1;
                    progress.fetch_add(1, Ordering::Relaxed);
                    ScanControl::Continue
                })?;
                if let Some(err) = failure {
                    return Err(err);
                }
            }
            Ok(count)
        });
        let count = match count {
            Ok(count) => count,
            Err(err) => {
                let committed = self.shared.committed_seq.load(Ordering::Acquire);
                self.writer.rollback().ok();
                self.applied = committed;
                return Err(err);
            }
        };
        if self.commit_applied() {
            self.shared.metrics.reindexed_docs.add(count);
            Ok(count)
        } else {
            Err(SearchError::Unavailable("the index commit failed".into()))
        }
    }
}

//! Full-text search: a tantivy index under `<data dir>/search/`, derived from the records.
//!
//! Owns the index, its one `IndexWriter` (on the indexer thread, `indexer.rs`), the outbox
//! consumer, the `search.reindex` job kind, and running searches with the caller's list rule.
//! It never writes records; it reads them through the store and the records module.
//!
//! Consistency: every record change of a searchable collection writes an outbox entry in
//! its own transaction ([`outbox::OutboxHooks`], the [`crate::records::hooks::ChangeHooks`]
//! that [`Records::open`] is given, so no write path can skip it). The indexer applies
//! entries in order and commits the index with the last applied sequence number as the
//! commit payload; at startup it replays every entry above that number. The index is
//! derived: a missing, unreadable or outdated index is rebuilt by a `search.reindex` job.
//!
//! # How it works
//!
//! Full-text search over tantivy 0.27 (`mmap`, `lz4-compression`, `stemmer`, `stopwords`; no
//! zstd). One index under `<data dir>/search/` holds every searchable collection.
//! - `outbox.rs` — the outbox (`search_outbox`, key = sequence number u64 BE; the `Meta` key
//!   `search_outbox_seq` hands sequence numbers out). An entry names what changed — a record
//!   (`collection id`, `record id`) or a whole collection (deleted, or its schema/search
//!   settings changed) — never the content, so applying one twice is harmless. Written by
//!   [`outbox::OutboxHooks`], the change hooks that every record write (create, update,
//!   delete, cascades, batch) and every collection update or delete calls inside the
//!   change's own transaction.
//! - `indexer.rs` — the one thread that owns the `IndexWriter` (one indexing thread, 64 MB). It
//!   sleeps on a condvar until the store reports a commit that wrote the outbox or a command
//!   arrives; reads up to 2000 entries per snapshot; applies each against the same snapshot
//!   (record present and collection searchable → replace its document; otherwise delete it;
//!   collection entries either drop the collection's documents or, when it is still
//!   searchable, enqueue a `search.reindex` job); commits at most once per second with
//!   `{"seq": last applied, "version": INDEX_VERSION}` as the commit payload, reloads the reader,
//!   and then deletes the outbox entries the commit covers. A failed commit rolls the writer
//!   back and re-reads from the committed sequence.
//! - `schema.rs` — the tantivy schema: `key` (`collection/record`), `collection`, the stored
//!   record `id`, and two JSON fields, `plain` (simple tokenizer, lower-case, ASCII folding) and
//!   `english` (the same plus English stemming), positions indexed. A record's searched fields
//!   go to its collection's language field, one JSON path per field, so `title:rust` is a path
//!   and field boosts are per path. Editor HTML is indexed as text; relation fields index the
//!   presentable fields of the records they point at (as of indexing) when the target
//!   collection's view rule is public (`""`), and nothing otherwise: one index answers every
//!   caller, so it holds only what every permitted viewer may see. Hidden emails
//!   (`emailVisibility` off) are not indexed. A change of a collection's view rule reindexes
//!   the searched collections that relate to it.
//! - `query.rs` — the search box language: words (all must match), `"phrases"`,
//!   `field:word`, `-word`. Each word matches exactly (BM25 × field boost); a word no document
//!   holds (term lookup in the index, as Typesense does by default) also with typos (one edit
//!   from 5 characters, two from 9, Levenshtein with transpositions, weight 0.3); the last word,
//!   when no space follows, also as a prefix (weight 0.5; a one-term phrase prefix with no
//!   expansion limit, i.e. a term-dictionary range, each match scored the boost). Queries are built on the blocking
//!   pool, since the term lookups read the index.
//! - `find.rs` — running a search for a caller. The index ranks candidates; the store decides
//!   visibility: each candidate is loaded from one snapshot and must still exist and pass the
//!   list rule and the caller's `filter` (the [`crate::records::list`] evaluation, relation paths through
//!   `VisibleSource`). Totals and facets (value counts of select fields) are computed over the
//!   visible records only; at most 10,000 ranked candidates per collection are examined (the
//!   documented cap: beyond it, totals count the visible records among the best 10,000). When
//!   no rule, filter, sort or facet applies, every match is visible and the page and total come
//!   from the index directly. `/api/search` runs this per collection (skipping collections
//!   whose list rule denies the caller) and merges by score. Hits are rendered as `list`
//!   renders records plus `@search: {score, highlights}`; snippets are cut from the rendered
//!   values, so a field the caller does not get yields no snippet.
//! - `highlight.rs` — snippets: HTML-escaped text around the first match with `<mark>` around
//!   every matching word. A `Highlighter` per collection and request holds the analyzer and
//!   scratch buffers. All-ASCII text of a collection without stemming is split by a byte scan
//!   equivalent to the analyzer (a property test compares them), starting at the first token
//!   where an exact or prefix term occurs in the lower-cased text (substring search; from the
//!   start when the query has typo terms) and stopping at the snippet's end; other text runs
//!   through the analyzer.
//! - `mod.rs` — the `Search` service (`app.search`): `start` (open the index; if it is missing,
//!   unreadable or of another `INDEX_VERSION`, queue the rebuild job durably *before* creating
//!   an empty index whose payload is the current sequence, so a crash in between finds it
//!   missing again), `stop`, `status` (outbox sequence, indexed sequence, lag, documents), and
//!   the `search.reindex` job kind, which hands a rebuild (one collection, or all) to the
//!   indexer thread and reports `{"indexed", "total"}` progress.
//!
//! **Architecture invariant:** the index is derived. Every change to what it holds is in the
//! outbox, written in the transaction of the change; the index commit carries the last applied
//! sequence; startup replays everything after it. Deleting `search/` loses nothing.
//!
//! **Architecture invariant:** search never decides visibility from the index. Every result,
//! count and facet comes from records read from the store and checked against the list rule.

pub mod check;
pub mod find;
pub mod highlight;
pub mod indexer;
pub mod outbox;
pub mod query;
pub mod schema;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};
use tantivy::directory::MmapDirectory;
use tantivy::{Index, IndexReader, ReloadPolicy};

use crate::jobs::{Done, Enqueued, JobContext, JobFailure, JobSpec, Jobs, KindOptions, Registry};
use crate::records::{Records, RecordsError};
use crate::store::{Store, StoreError, Table};
use crate::util::metrics::{Counter, Histogram, LATENCY_BUCKETS};
use indexer::{Command, Indexer, Shared};
use schema::{IndexSchema, INDEX_VERSION};

pub use find::{SearchPage, SearchParams};

/// Name of the index directory inside the data directory.
pub const SEARCH_DIR: &str = "search";
/// The job kind that rebuilds documents from the data.
pub const REINDEX_KIND: &str = "search.reindex";

/// What can go wrong in search.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The query text or a parameter is malformed (400).
    #[error("{0}")]
    BadQuery(String),
    /// The collection does not have search enabled (400).
    #[error("{0}")]
    NotEnabled(String),
    /// From the records domain (missing collection, rule denies, bad filter, storage).
    #[error(transparent)]
    Records(RecordsError),
    /// The index is not open (starting, stopped, or failing): 503.
    #[error("search unavailable: {0}")]
    Unavailable(String),
    /// Anything tantivy or the OS reported; details are for the log only.
    #[error("search index error: {0}")]
    Internal(String),
}

impl SearchError {
    pub(crate) fn from_tantivy(err: tantivy::TantivyError) -> SearchError {
        SearchError::Internal(err.to_string())
    }
}

impl From<StoreError> for SearchError {
    fn from(err: StoreError) -> Self {
        SearchError::Records(RecordsError::Store(err))
    }
}

impl From<RecordsError> for SearchError {
    fn from(err: RecordsError) -> Self {
        SearchError::Records(err)
    }
}

/// Search counters for `/metrics`.
#[derive(Debug)]
pub struct SearchMetrics {
    /// Index commits that succeeded / failed.
    pub commits: Counter,
    pub commit_failures: Counter,
    /// Seconds per index commit.
    pub commit_seconds: Histogram,
    /// Searches answered, and their duration.
    pub queries: Counter,
    pub query_seconds: Histogram,
    /// Outbox entries applied.
    pub outbox_applied: Counter,
    /// Documents written by reindex jobs.
    pub reindexed_docs: Counter,
}

impl Default for SearchMetrics {
    fn default() -> Self {
        SearchMetrics {
            commits: Counter::default(),
            commit_failures: Counter::default(),
            commit_seconds: Histogram::new(&LATENCY_BUCKETS),
            queries: Counter::default(),
            query_seconds: Histogram::new(&LATENCY_BUCKETS),
            outbox_applied: Counter::default(),
            reindexed_docs: Counter::default(),
        }
    }
}

/// A snapshot of the indexer's state (stats API, readiness, metrics).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchStatus {
    /// The indexer thread runs and its last commit succeeded.
    pub healthy: bool,
    /// A full rebuild is pending or running (results may be incomplete).
    pub rebuilding: bool,
    /// Last outbox sequence number handed out.
    pub outbox_seq: u64,
    /// Sequence number the index has committed.
    pub indexed_seq: u64,
    /// `outboxSeq - indexedSeq`: changes not yet searchable.
    pub lag: u64,
    /// Documents in the index.
    pub documents: u64,
}

struct Opened {
    reader: IndexReader,
}

struct Inner {
    store: Store,
    records: Records,
    dir: PathBuf,
    schema: IndexSchema,
    shared: Arc<Shared>,
    opened: OnceLock<Opened>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The search service (on `App` as `app.search`). Cheap to clone.
#[derive(Clone)]
pub struct Search {
    inner: Arc<Inner>,
}

impl Search {
    /// The service over `<data dir>/search`; nothing is opened until [`Search::start`].
    pub fn new(store: Store, records: Records, data_dir: &Path) -> Search {
        Search {
            inner: Arc::new(Inner {
                store,
                records,
                dir: data_dir.join(SEARCH_DIR),
                schema: IndexSchema::new(),
                shared: Arc::new(Shared::new()),
                opened: OnceLock::new(),
                thread: Mutex::new(None),
            }),
        }
    }

    /// Registers the `search.reindex` job kind: `{"collection": "<id or name>"}` rebuilds one
    /// collection's documents, `{}` the whole index. Progress: `{"indexed": n, "total": m}`.
    pub fn register(&self, registry: &mut Registry) {
        let search = self.clone();
        let options = KindOptions { timeout: Some(Duration::from_secs(6 * 3600)), ..KindOptions::default() };
        registry.register(REINDEX_KIND, options, move |ctx| reindex_job(search.clone(), ctx));
    }

    pub fn metrics(&self) -> &SearchMetrics {
        &self.inner.shared.metrics
    }

    pub(crate) fn schema(&self) -> &IndexSchema {
        &self.inner.schema
    }

    pub(crate) fn records(&self) -> &Records {
        &self.inner.records
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn reader(&self) -> Result<&IndexReader, SearchError> {
        self.inner
            .opened
            .get()
            .map(|o| &o.reader)
            .ok_or_else(|| SearchError::Unavailable("the search index is not open".into()))
    }

    /// Opens the index (or creates it, enqueueing a rebuild job first when it was missing,
    /// unreadable or written by another index version) and starts the indexer thread, which
    /// first replays the outbox beyond the index's payload. Called by `serve` before the job
    /// workers start.
    pub async fn start(&self, jobs: &Jobs) -> Result<(), SearchError> {
        let dir = self.inner.dir.clone();
        let schema = self.inner.schema.clone();
        let existing = tokio::task::spawn_blocking(move || open_existing(&dir, &schema))
            .await
            .map_err(|e| SearchError::Internal(e.to_string()))?;
        // An index whose payload the outbox cannot continue (it is ahead of the data file,
        // or the entries after it were pruned: a restored or copied `search/`) is rebuilt.
        let existing = match existing {
            Some((index, seq)) => {
                let continues = self
                    .inner
                    .store
                    .read(move |tx| -> Result<bool, SearchError> {
                        let last = outbox::last_seq(tx)?;
                        Ok(seq == last
                            || (seq < last
                                && outbox::read_after(tx, seq, 1)?
                                    .first()
                                    .is_some_and(|(next, _)| *next == seq + 1)))
                    })
                    .await?;
                if continues {
                    Some((index, seq))
                } else {
                    tracing::warn!(seq, "search index does not match the data file; rebuilding it");
                    drop(index);
                    let dir = self.inner.dir.clone();
                    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
                    None
                }
            }
            None => None,
        };
        let (index, seq) = match existing {
            Some(found) => found,
            None => {
                // What the index must cover, read in one snapshot: entries up to `seq` are in
                // it (or in the rebuild), later ones are replayed.
                let store = self.inner.store.clone();
                let (seq, has_documents) = store
                    .read(|tx| -> Result<(u64, bool), SearchError> {
                        let catalog = crate::records::Catalog::load(tx)?;
                        let mut has_documents = false;
                        for entry in catalog.all().filter(|e| e.collection.search.enabled) {
                            has_documents |=
                                crate::records::stats::CollectionStats::read(tx, &entry.collection.id)?.count
                                    > 0;
                        }
                        Ok((outbox::last_seq(tx)?, has_documents))
                    })
                    .await?;
                if has_documents {
                    // The job is durable before the index exists: a crash in between finds
                    // the index missing again, and the unique key keeps one rebuild queued.
                    jobs.enqueue(rebuild_spec()).await.map_err(|e| SearchError::Internal(e.to_string()))?;
                    self.inner.shared.rebuilding.store(true, Ordering::Release);
                }
                let dir = self.inner.dir.clone();
                let schema = self.inner.schema.clone();
                let index = tokio::task::spawn_blocking(move || create_fresh(&dir, &schema, seq))
                    .await
                    .map_err(|e| SearchError::Internal(e.to_string()))??;
                if has_documents {
                    tracing::info!("search index created; a rebuild job is queued");
                }
                (index, seq)
            }
        };
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(SearchError::from_tantivy)?;
        let writer = indexer::open_writer(&index)?;
        let _ = self.inner.opened.set(Opened { reader: reader.clone() });
        self.inner.shared.committed_seq.store(seq, Ordering::Release);
        let waker = self.inner.shared.clone();
        self.inner.store.on_commit(Table::SearchOutbox, Arc::new(move || waker.wake()));
        let jobs = jobs.clone();
        let runtime = tokio::runtime::Handle::current();
        let on_collection_change: indexer::OnCollectionChange = Box::new(move |collection_id: &str| {
            let spec = JobSpec::new(REINDEX_KIND, json!({ "collection": collection_id }));
            runtime
                .block_on(jobs.enqueue(spec))
                .map(|_| ())
                .map_err(|e| SearchError::Internal(format!("cannot enqueue the reindex job: {e}")))
        });
        let worker = Indexer {
            store: self.inner.store.clone(),
            schema: self.inner.schema.clone(),
            writer,
            reader,
            shared: self.inner.shared.clone(),
            on_collection_change,
            applied: seq,
        };
        let handle = std::thread::Builder::new()
            .name("backbone-indexer".into())
            .spawn(move || worker.run())
            .map_err(|e| SearchError::Internal(format!("cannot start the indexer thread: {e}")))?;
        if let Ok(mut slot) = self.inner.thread.lock() {
            *slot = Some(handle);
        }
        Ok(())
    }

    /// Stops the indexer after it committed what it applied (call before the store shuts down).
    pub fn stop(&self) {
        self.inner.shared.stop();
        let handle = self.inner.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    /// Asks the indexer to rebuild one collection (or everything); resolves with the number
    /// of documents written once they are committed.
    pub async fn reindex(
        &self,
        collection_id: Option<String>,
        progress: Arc<AtomicU64>,
    ) -> Result<u64, SearchError> {
        if self.inner.opened.get().is_none() {
            return Err(SearchError::Unavailable("the search index is not open".into()));
        }
        let (done, receiver) = tokio::sync::oneshot::channel();
        self.inner.shared.send(Command::Reindex { collection_id, progress, done })?;
        receiver.await.map_err(|_| SearchError::Unavailable("the indexer stopped".into()))?
    }

    /// The indexer's state, with the lag read from the store.
    pub async fn status(&self) -> Result<SearchStatus, SearchError> {
        let store = self.inner.store.clone();
        let outbox_seq = store.read(|tx| outbox::last_seq(tx).map_err(SearchError::from)).await?;
        let shared = &self.inner.shared;
        let indexed_seq = shared.committed_seq.load(Ordering::Acquire);
        let documents = self.inner.opened.get().map(|o| o.reader.searcher().num_docs()).unwrap_or(0);
        let started = self.inner.opened.get().is_some();
        Ok(SearchStatus {
            healthy: started && shared.healthy.load(Ordering::Acquire),
            rebuilding: shared.rebuilding.load(Ordering::Acquire),
            outbox_seq,
            indexed_seq,
            lag: if started { outbox_seq.saturating_sub(indexed_seq) } else { 0 },
            documents,
        })
    }

    /// Whether the indexer runs (for readiness); `None` when search was never started
    /// (CLI commands).
    pub fn is_healthy(&self) -> Option<bool> {
        self.inner.opened.get()?;
        Some(self.inner.shared.healthy.load(Ordering::Acquire))
    }

    /// Enqueues a reindex job (one collection by id or name, or all); returns the job.
    pub async fn enqueue_reindex(
        &self,
        jobs: &Jobs,
        collection: Option<&str>,
    ) -> Result<Enqueued, SearchError> {
        let spec = match collection {
            Some(name) => {
                let entry = self.inner.records.collection(name)?;
                if !entry.collection.search.enabled {
                    return Err(SearchError::NotEnabled(format!(
                        "Search is not enabled on {}.",
                        entry.collection.name
                    )));
                }
                JobSpec::new(REINDEX_KIND, json!({ "collection": entry.collection.id }))
            }
            None => rebuild_spec(),
        };
        jobs.enqueue(spec).await.map_err(|e| SearchError::Internal(e.to_string()))
    }
}

fn rebuild_spec() -> JobSpec {
    JobSpec::new(REINDEX_KIND, json!({})).unique_key("search.rebuild")
}

/// Opens the index in `dir` if it is usable: readable, with a payload of this index version.
/// Anything else is removed (the index is derived data) and `None` returned.
fn open_existing(dir: &Path, schema: &IndexSchema) -> Option<(Index, u64)> {
    if !dir.join("meta.json").exists() {
        if dir.exists() {
            let _ = std::fs::remove_dir_all(dir);
        }
        return None;
    }
    let opened = Index::open_in_dir(dir).map_err(SearchError::from_tantivy).and_then(|index| {
        let payload = indexer::read_payload(&index)?;
        Ok((index, payload))
    });
    match opened {
        Ok((index, Some(payload))) if payload.version == INDEX_VERSION && index.schema() == schema.schema => {
            schema::register_analyzers(&index);
            Some((index, payload.seq))
        }
        Ok(_) => {
            tracing::warn!(dir = %dir.display(), "search index is from another version; rebuilding");
            let _ = std::fs::remove_dir_all(dir);
            None
        }
        Err(err) => {
            tracing::warn!(dir = %dir.display(), error = %err, "search index unreadable; rebuilding");
            let _ = std::fs::remove_dir_all(dir);
            None
        }
    }
}

/// Creates an empty index whose payload says it covers the outbox up to `seq` (the rebuild
/// job reads a later snapshot, so nothing before `seq` is lost).
fn create_fresh(dir: &Path, schema: &IndexSchema, seq: u64) -> Result<Index, SearchError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| SearchError::Internal(format!("cannot create {}: {e}", dir.display())))?;
    let directory = MmapDirectory::open(dir).map_err(|e| SearchError::Internal(e.to_string()))?;
    let index = Index::create(directory, schema.schema.clone(), tantivy::IndexSettings::default())
        .map_err(SearchError::from_tantivy)?;
    schema::register_analyzers(&index);
    let mut writer = indexer::open_writer(&index)?;
    indexer::commit(&mut writer, seq)?;
    writer.wait_merging_threads().map_err(SearchError::from_tantivy)?;
    Ok(index)
}

/// The `search.reindex` handler: hands the work to the indexer thread and reports progress.
async fn reindex_job(search: Search, ctx: JobContext) -> Result<Done, JobFailure> {
    let collection = match ctx.payload.get("collection").and_then(Value::as_str) {
        Some(name) => match search.inner.records.collection(name) {
            Ok(entry) => Some(entry.collection.id.clone()),
            // Deleted meanwhile: the outbox entry of the deletion drops its documents.
            Err(_) => return Done::complete(),
        },
        None => None,
    };
    let total = {
        let catalog = search.inner.records.catalog();
        let mut total = 0u64;
        for entry in catalog.all() {
            let wanted = collection.as_deref().is_none_or(|c| c == entry.collection.id);
            if wanted && entry.collection.search.enabled {
                total += search.inner.records.count(&entry.collection.id).await.unwrap_or(0);
            }
        }
        total
    };
    let progress = Arc::new(AtomicU64::new(0));
    ctx.progress(json!({"indexed": 0, "total": total}));
    let work = search.reindex(collection, progress.clone());
    tokio::pin!(work);
    loop {
        tokio::select! {
            result = &mut work => {
                return match result {
                    Ok(indexed) => {
                        ctx.progress(json!({"indexed": indexed, "total": total}));
                        Done::complete()
                    }
                    Err(err) => Err(JobFailure::retry(err.to_string())),
                };
            }
            () = tokio::time::sleep(Duration::from_millis(250)) => {
                ctx.progress(json!({"indexed": progress.load(Ordering::Relaxed), "total": total}));
            }
            () = ctx.cancelled().cancelled() => {
                return Err(JobFailure::retry("cancelled; the indexer finishes the pass it started"));
            }
        }
    }
}

impl Search {
    /// `backbone_search_*`: index lag, documents, indexer health (when the status can be
    /// read), commits, outbox entries applied, reindexed documents, commit and query latency.
    pub async fn render_metrics(&self, out: &mut crate::util::metrics::Exposition) {
        let metrics = self.metrics();
        if let Ok(status) = self.status().await {
            for (name, help, value) in [
                (
                    "backbone_search_index_lag",
                    "Outbox sequence minus the sequence committed to the search index (changes not yet searchable).",
                    status.lag as f64,
                ),
                ("backbone_search_documents", "Documents in the search index.", status.documents as f64),
                (
                    "backbone_search_indexer_healthy",
                    "1 while the indexer runs and its last commit succeeded.",
                    if status.healthy { 1.0 } else { 0.0 },
                ),
            ] {
                out.single(name, "gauge", help, value);
            }
        }
        for (name, help, counter) in [
            ("backbone_search_commits_total", "Search index commits that succeeded.", &metrics.commits),
            (
                "backbone_search_commit_failures_total",
                "Search index commits that failed.",
                &metrics.commit_failures,
            ),
            (
                "backbone_search_outbox_applied_total",
                "Search outbox entries applied to the index.",
                &metrics.outbox_applied,
            ),
            (
                "backbone_search_reindexed_documents_total",
                "Documents written by reindex jobs.",
                &metrics.reindexed_docs,
            ),
        ] {
            out.single(name, "counter", help, counter.get() as f64);
        }
        for (name, help, histogram) in [
            (
                "backbone_search_commit_duration_seconds",
                "Time to commit the search index.",
                &metrics.commit_seconds,
            ),
            ("backbone_search_query_duration_seconds", "Time to answer a search.", &metrics.query_seconds),
        ] {
            out.family(name, "histogram", help);
            out.histogram(name, &[], histogram);
        }
    }
}

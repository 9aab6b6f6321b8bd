//! Files: blob storage under `<data dir>/files/`, multipart uploads, downloads with access
//! checks, and image variants (WebP) produced by jobs.
//!
//! Layout (PocketBase's, plus a temp directory):
//! `files/<collectionId>/<recordId>/<name>` — the blob, immutable once placed;
//! `files/<collectionId>/<recordId>/thumbs_<name>/<size>.webp` — its variants;
//! `files/.tmp/` — uploads in flight (emptied at startup).
//!
//! The order of a write with files: each upload is streamed to a temp file and fsync'd;
//! the blobs the record references are renamed into place and their directory fsync'd;
//! then the record, its `file_refs` rows, the removal job for released blobs and the
//! variant jobs commit in one transaction. A crash at any point leaves either no record
//! (the placed blobs are orphans, swept at startup) or a record whose blobs are on disk.
//! Released blobs are removed only by the `files.delete` job, which runs after the commit.
//!
//! This module owns no HTTP (the `api` layer serves the bytes) and names no redb type.
//!
//! # How it works
//!
//! Blob storage, uploads, downloads and image variants. `Files` (on `App` as `app.files`).
//! - `upload.rs` — multipart bodies as the PocketBase SDKs send them (multer): file parts
//!   under the field name or `name+`/`+name`, text parts (repeated keys make a list),
//!   `@jsonPayload`. `limited` wraps the body stream with the whole-body cap
//!   (`[files] max_upload_bytes`; past it a little more is drained so the client reads the
//!   413); each file part streams into a `tempfile` in `files/.tmp/` with the field's
//!   `maxSize` enforced per chunk, its type sniffed from the first 512 bytes and checked
//!   against `mimeTypes` before the rest is read, then `sync_all`. Stored names are
//!   PocketBase's: snake-cased stem, `_`, 10 random characters, a safe extension.
//! - `sniff.rs` — content types from magic numbers (never the client's header or name), which
//!   types are safe inline (SVG, HTML and anything unknown are not), extensions.
//! - `thumbs.rs` — `ThumbSize` (`WxH` centre crop, `WxHt`/`WxHb` top/bottom crop, `WxHf` fit
//!   without enlarging, `0xH`/`Wx0` keep the ratio), `decode` (pure Rust, `image`) with [`image::Limits`] (largest
//!   side, most bytes allocated; width × height × bytes per pixel, doubled for a rotating EXIF
//!   orientation, is checked against the budget before any pixel is decoded) and the EXIF
//!   orientation applied, `render` (shrinking by area averaging, enlarging bilinear),
//!   `encode_webp` (lossy, libwebp). `probe` reads only the header; [`thumbs::Probe::produce_bytes`]
//!   estimates from above what decoding plus rendering the largest requested size holds.
//!   [`DecodeBudget::derive`] turns the config into the memory budget: with `[limits]
//!   max_rss_mb`, all decodes at once share a quarter of the cap and one decode may take at
//!   most that (or `max_decode_mb`, if smaller); without a cap, `max_decode_mb` per decode.
//! - `mod.rs` — the service: `FileHooks` for record writes (`place`: rename the referenced
//!   temp files into `files/<c>/<r>/` and fsync the directories, before the write is queued;
//!   `unplace` after a write that did not commit; `changed_in`: enqueue `files.delete` for
//!   released blobs and one `files.thumbs` per new image, in the record's transaction),
//!   `resolve` (a download: the record under the view rule; protected fields only for the
//!   holder of a `file` token; `?thumb=` for listed sizes and `100x100`), `ensure_thumb` (a
//!   variant made on request: one producer per path, later callers wait for it), the job
//!   handlers, `sweep` and `usage`. Both the request path and the `files.thumbs` job go through
//!   `produce_within_budget`: a turn among `thumb_workers`, then the header is probed and the
//!   estimated bytes are taken (KiB permits) from one semaphore holding the shared budget
//!   before anything is decoded; an image needing more than one decode may hold is refused
//!   without decoding (its job dies, downloads serve the original).
//! - `api/files.rs` serves the bytes: `Range` (one range; 206/416), `ETag` and
//!   `Last-Modified` with 304s, `Content-Disposition: inline` only for safe types,
//!   `Cache-Control: private`.
//!
//! The record side lives in `records/files.rs`: the `file_refs` rows (one per stored file:
//! field id, size, sniffed type, time), `sync_files` in `write.rs` next to `sync_refs` (a name
//! a record gains must be one of this write's uploads; names it loses are released), and
//! PocketBase's `name+`/`+name`/`name-` modifiers in `record.rs`.
//!
//! **Architecture invariant:** a record never names a blob that is not durably on disk: blobs
//! are placed and their directory fsync'd before the record's write is queued. A blob is
//! deleted only by `files.delete`, enqueued in the transaction that released it (so it runs
//! after that commit), or by the sweep when no `file_refs` row or record names it (at startup
//! everything unreferenced; while serving — the daily `files.sweep` schedule created at first
//! start, or after a collection is deleted — only what is older than an hour, or belongs to a
//! deleted collection).
//!
//! **Architecture invariant:** image decoding and encoding run on the blocking pool (job or
//! request), never on the async executor, and always under the decoder limits and inside the
//! shared decode budget (so concurrent decodes never hold more than a quarter of
//! `max_rss_mb`); a corrupt or
//! oversized image kills its job at once and downloads keep serving the original.

pub mod check;
pub mod sniff;
pub mod thumbs;
pub mod upload;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::auth::Principal;
use crate::config::FilesSection;
use crate::jobs::{Done, JobContext, JobFailure, JobSpec, Jobs, KindOptions, Registry};
use crate::records::field::{file_names, is_valid_file_name, FieldKind, FileOptions};
use crate::records::files::{file_ref_key, Added, FileHooks, FileMeta, Released, Upload};
use crate::records::filter::RequestInfo;
use crate::records::record::{decode, Stored};
use crate::records::{record_key, FieldErrors, Records, RecordsError};
use crate::store::{ScanControl, Store, StoreError, Table, WriteTx};
use crate::util::invalid::Invalid;
use thumbs::{DecodeBudget, DecodeLimits, ThumbSize};

/// Job kind: remove released blobs (and their variants) after the commit that released them.
pub const JOB_DELETE: &str = "files.delete";
/// Job kind: produce the configured variants of a new image.
pub const JOB_THUMBS: &str = "files.thumbs";
/// Job kind: remove blobs and temp files nothing references (also run at startup).
pub const JOB_SWEEP: &str = "files.sweep";
/// The queue of the file jobs.
pub const QUEUE: &str = "files";
/// Sizes every image field serves, whatever its `thumbs` (the admin UI's, as PocketBase).
pub const DEFAULT_THUMBS: [&str; 1] = ["100x100"];
/// `Meta` key set once the daily sweep schedule was created.
const META_SWEEP_SEEDED: &[u8] = b"files_sweep_cron_seeded";
/// Name of the temp directory inside `files/`.
const TMP_DIR: &str = ".tmp";
/// Unreferenced blobs and temp files younger than this are left alone by a sweep that runs
/// while the server serves (they may belong to a write in flight).
const SWEEP_GRACE: Duration = Duration::from_secs(3600);

/// What can go wrong with files.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// No such file, or the caller may not see its record.
    #[error("The requested file wasn't found.")]
    NotFound,
    /// A body or a file over its cap (413); `fields` names the file field when one caps it.
    #[error("{detail}")]
    TooLarge { detail: String, fields: FieldErrors },
    /// Invalid input (400 with field errors), such as a content type the field refuses.
    #[error("{0}")]
    Validation(Invalid),
    /// A malformed request (400).
    #[error("{0}")]
    BadRequest(String),
    /// The action needs a signed-in caller (401).
    #[error("The request requires valid record authorization token.")]
    Unauthenticated,
    /// The caller may not do this (403).
    #[error("{0}")]
    Forbidden(String),
    /// The body did not arrive in time (408).
    #[error("The request body did not arrive in time.")]
    Timeout,
    /// The disk is full (507).
    #[error("no space left on the device")]
    DiskFull,
    /// A record operation failed.
    #[error(transparent)]
    Records(RecordsError),
    /// File system trouble; details are for the log only (500).
    #[error("file storage error: {0}")]
    Io(String),
}

impl From<RecordsError> for FilesError {
    fn from(err: RecordsError) -> Self {
        FilesError::Records(err)
    }
}

impl From<StoreError> for FilesError {
    fn from(err: StoreError) -> Self {
        FilesError::Records(RecordsError::Store(err))
    }
}

/// A file ready to be sent.
#[derive(Debug, Clone)]
pub struct Served {
    pub path: PathBuf,
    pub content_type: String,
    pub size: u64,
    pub modified: SystemTime,
    /// A strong validator: blobs never change under a name, variants only by size.
    pub etag: String,
    /// Safe to show inline (otherwise `Content-Disposition: attachment`).
    pub inline: bool,
    /// The name offered to the browser.
    pub download_name: String,
}

/// Who asks for a download: the holder of the `token` query parameter (a file token) and
/// the `Authorization` header's caller, each with what `@request.auth` sees.
pub struct DownloadCaller {
    pub token: (Principal, RequestInfo),
    pub header: (Principal, RequestInfo),
}

/// The file service. Cheap to clone.
#[derive(Clone)]
pub struct Files {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    tmp: PathBuf,
    store: Store,
    records: Records,
    config: FilesSection,
    jobs: OnceLock<Jobs>,
    /// Variants being produced, by path: later requests for one wait on the first.
    pending: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
    /// Bounds concurrent variant production (CPU): `thumb_workers`.
    permits: Arc<tokio::sync::Semaphore>,
    /// What image work may hold (from `max_rss_mb`, `max_decode_mb`, `thumb_workers`).
    budget: DecodeBudget,
    /// The memory all decodes hold together, in KiB permits of `budget.total_bytes`: each
    /// decode takes what its header says it needs before it allocates anything.
    decode_bytes: Arc<tokio::sync::Semaphore>,
    /// Variants whose original could not be decoded (served as the original from then on).
    failed: Mutex<HashSet<PathBuf>>,
}

impl Files {
    /// Creates `files/` and `files/.tmp/` and registers the file job kinds. Image decoding
    /// is budgeted from `max_rss_mb` (`[limits]`, 0 for no cap): see [`DecodeBudget::derive`].
    pub fn prepare(
        data_dir: &Path,
        store: Store,
        records: Records,
        config: &FilesSection,
        max_rss_mb: u64,
        registry: &mut Registry,
    ) -> Result<Files, FilesError> {
        let budget = DecodeBudget::derive(max_rss_mb, config.max_decode_mb, config.thumb_workers);
        let root = data_dir.join("files");
        let tmp = root.join(TMP_DIR);
        crate::datadir::create_dir_all(&tmp)
            .map_err(|e| FilesError::Io(format!("{}: {e}", tmp.display())))?;
        let files = Files {
            inner: Arc::new(Inner {
                root,
                tmp,
                store,
                records,
                config: config.clone(),
                jobs: OnceLock::new(),
                pending: Mutex::new(HashMap::new()),
                permits: Arc::new(tokio::sync::Semaphore::new(config.thumb_workers.max(1))),
                budget,
                decode_bytes: Arc::new(tokio::sync::Semaphore::new(
                    usize::try_from(budget.total_bytes >> 10)
                        .unwrap_or(usize::MAX)
                        .min(tokio::sync::Semaphore::MAX_PERMITS),
                )),
                failed: Mutex::new(HashSet::new()),
            }),
        };
        let options =
            KindOptions { queue: Some(QUEUE.into()), max_attempts: Some(10), ..KindOptions::default() };
        let f = files.clone();
        registry.register(JOB_DELETE, options.clone(), move |ctx| {
            let f = f.clone();
            async move { f.run_delete(ctx).await }
        });
        let f = files.clone();
        let thumb_options = KindOptions { max_attempts: Some(3), ..options.clone() };
        registry.register(JOB_THUMBS, thumb_options, move |ctx| {
            let f = f.clone();
            async move { f.run_thumbs(ctx).await }
        });
        let f = files.clone();
        registry.register(JOB_SWEEP, options, move |_ctx| {
            let f = f.clone();
            async move {
                match f.sweep(SWEEP_GRACE).await {
                    Ok(_) => Done::complete(),
                    Err(e) => Err(JobFailure::retry(e.to_string())),
                }
            }
        });
        Ok(files)
    }

    /// Connects the service to the queue and attaches its hooks to record writes.
    pub fn attach(&self, jobs: Jobs) {
        let _ = self.inner.jobs.set(jobs);
        self.inner.records.file_sync().attach(Arc::new(self.clone()));
    }

    /// `<data dir>/files`.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Where uploads in flight are written.
    pub fn tmp_dir(&self) -> &Path {
        &self.inner.tmp
    }

    pub fn config(&self) -> &FilesSection {
        &self.inner.config
    }

    /// The decoder limits from the config and the memory budget.
    pub fn decode_limits(&self) -> DecodeLimits {
        DecodeLimits {
            max_side: self.inner.config.max_image_side.max(1),
            max_alloc_bytes: self.inner.budget.per_decode_bytes,
        }
    }

    /// The memory budget of image work.
    pub fn decode_budget(&self) -> DecodeBudget {
        self.inner.budget
    }

    /// Produces `outputs` from `original` within the budgets: one of `thumb_workers` turns,
    /// then the header is read and the bytes the work will hold are taken from the shared
    /// budget before any pixel is decoded (waiting while other decodes hold it). An image
    /// needing more than one decode may hold is refused without decoding (a `Limits` error:
    /// the job dies, downloads serve the original). The permits move into the blocking
    /// task: a caller that goes away (a closed connection) does not give back memory a
    /// decode still holds.
    async fn produce_within_budget(
        &self,
        original: PathBuf,
        outputs: Vec<(ThumbSize, PathBuf)>,
    ) -> Result<(), ProduceError> {
        let join = |e: tokio::task::JoinError| ProduceError::Io(std::io::Error::other(e.to_string()));
        let closed = |e: tokio::sync::AcquireError| ProduceError::Io(std::io::Error::other(e));
        let turn = self.inner.permits.clone().acquire_owned().await.map_err(closed)?;
        let limits = self.decode_limits();
        let sizes: Vec<ThumbSize> = outputs.iter().map(|(size, _)| *size).collect();
        let header_of = original.clone();
        let probe = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(header_of).map_err(ProduceError::Io)?;
            thumbs::probe(file, limits).map_err(ProduceError::Image)
        })
        .await
        .map_err(join)??;
        let needed = probe.produce_bytes(&sizes);
        if needed > limits.max_alloc_bytes {
            return Err(ProduceError::Image(thumbs::over_budget(&probe, needed, limits.max_alloc_bytes)));
        }
        let kib = u32::try_from(needed.div_ceil(1 << 10).max(1)).unwrap_or(u32::MAX);
        let bytes = self.inner.decode_bytes.clone().acquire_many_owned(kib).await.map_err(closed)?;
        tokio::task::spawn_blocking(move || {
            let held = (turn, bytes);
            let result = produce(&original, &outputs, limits);
            drop(held);
            result
        })
        .await
        .map_err(join)?
    }

    fn record_dir(&self, collection_id: &str, record_id: &str) -> PathBuf {
        self.inner.root.join(collection_id).join(record_id)
    }

    /// Path of a stored blob.
    pub fn blob_path(&self, collection_id: &str, record_id: &str, name: &str) -> PathBuf {
        self.record_dir(collection_id, record_id).join(name)
    }

    /// Path of one variant of a stored blob.
    pub fn thumb_path(&self, collection_id: &str, record_id: &str, name: &str, size: &str) -> PathBuf {
        self.record_dir(collection_id, record_id).join(format!("thumbs_{name}")).join(format!("{size}.webp"))
    }

    /// Resolves a download: the record must exist and be visible to the caller under the
    /// collection's view rule (protected fields: only to the file token's holder); `thumb`
    /// picks a variant when the field allows that size and the file is an image.
    pub async fn resolve(
        &self,
        caller: DownloadCaller,
        collection: &str,
        record_id: &str,
        filename: &str,
        thumb: Option<&str>,
    ) -> Result<Served, FilesError> {
        let entry = self.inner.records.collection(collection).map_err(|_| FilesError::NotFound)?;
        if !is_valid_file_name(filename) || !crate::util::id::is_valid_record_id(record_id) {
            return Err(FilesError::NotFound);
        }
        let collection_id = entry.collection.id.clone();
        let path = self.blob_path(&collection_id, record_id, filename);
        // The record and the file's row in one snapshot.
        let (record_key_bytes, ref_key) =
            (record_key(&collection_id, record_id), file_ref_key(&collection_id, record_id, filename));
        let (stored, meta) = self
            .inner
            .store
            .read(move |tx| {
                Ok::<_, StoreError>((
                    tx.get(Table::Records, &record_key_bytes)?,
                    tx.get(Table::FileRefs, &ref_key)?,
                ))
            })
            .await?;
        let stored = decode(&stored.ok_or(FilesError::NotFound)?)?;
        let options =
            file_field_holding(&entry.collection.fields, &stored, filename).ok_or(FilesError::NotFound)?;
        let (who, info) = if options.protected || !matches!(caller.token.0, Principal::Anonymous) {
            caller.token
        } else {
            caller.header
        };
        match self.inner.records.get_record(&who, &collection_id, record_id, Some("id"), None, &info).await {
            Ok(_) => {}
            Err(RecordsError::NotFound(_) | RecordsError::Forbidden(_)) => return Err(FilesError::NotFound),
            Err(other) => return Err(other.into()),
        }
        let original_type = match meta.and_then(|bytes| serde_json::from_slice::<FileMeta>(&bytes).ok()) {
            Some(meta) => meta.content_type,
            None => sniff_file(path.clone()).await?,
        };
        if let Some(size) = thumb {
            let allowed = DEFAULT_THUMBS.contains(&size) || options.thumbs.iter().any(|t| t == size);
            if allowed && sniff::is_thumbable(&original_type) && ThumbSize::parse(size).is_some() {
                let download_name = format!("{size}_{filename}.webp");
                // Already made: one metadata call, no lock.
                let cached = self.thumb_path(&collection_id, record_id, filename, size);
                if let Ok(found) = served(cached, "image/webp".into(), download_name.clone()).await {
                    return Ok(found);
                }
                match self.ensure_thumb(&collection_id, record_id, filename, size).await {
                    Ok(thumb_path) => return served(thumb_path, "image/webp".into(), download_name).await,
                    Err(err) => {
                        tracing::warn!(error = %err, file = filename, size, "variant failed; serving the original");
                    }
                }
            }
        }
        served(path, original_type, filename.to_string()).await
    }

    /// The variant `size` of a stored image: produced now if it does not exist yet (once:
    /// concurrent callers wait for the same work), then cached on disk.
    pub async fn ensure_thumb(
        &self,
        collection_id: &str,
        record_id: &str,
        name: &str,
        size: &str,
    ) -> Result<PathBuf, FilesError> {
        let target = self.thumb_path(collection_id, record_id, name, size);
        if exists(&target).await {
            return Ok(target);
        }
        if self.inner.failed.lock().map(|f| f.contains(&target)).unwrap_or(false) {
            return Err(FilesError::BadRequest("the original cannot be decoded".into()));
        }
        let parsed =
            ThumbSize::parse(size).ok_or_else(|| FilesError::BadRequest("invalid thumb size".into()))?;
        let gate = {
            let mut pending = self.inner.pending.lock().map_err(|_| FilesError::Io("poisoned".into()))?;
            pending.entry(target.clone()).or_default().clone()
        };
        let result = {
            let _turn = gate.lock().await;
            if exists(&target).await {
                Ok(())
            } else {
                let original = self.blob_path(collection_id, record_id, name);
                self.produce_within_budget(original, vec![(parsed, target.clone())]).await
            }
        };
        if let Ok(mut pending) = self.inner.pending.lock() {
            if pending.get(&target).is_some_and(|g| Arc::ptr_eq(g, &gate)) {
                pending.remove(&target);
            }
        }
        match result {
            Ok(()) => Ok(target),
            Err(ProduceError::Image(e)) => {
                if let Ok(mut failed) = self.inner.failed.lock() {
                    failed.insert(target);
                }
                Err(FilesError::BadRequest(e.to_string()))
            }
            Err(ProduceError::Io(e)) => Err(FilesError::Io(e.to_string())),
        }
    }

    /// `files.thumbs`: decodes the image once and writes every missing size.
    async fn run_thumbs(&self, ctx: JobContext) -> Result<Done, JobFailure> {
        let p = &ctx.payload;
        let field = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let (collection, record, name) = (field("collection"), field("record"), field("name"));
        if !is_valid_file_name(&name) {
            return Err(JobFailure::discard("invalid file name"));
        }
        let sizes: Vec<String> = p
            .get("sizes")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        let original = self.blob_path(&collection, &record, &name);
        let mut outputs = Vec::new();
        for size in &sizes {
            let Some(parsed) = ThumbSize::parse(size) else { continue };
            let target = self.thumb_path(&collection, &record, &name, size);
            if !exists(&target).await {
                outputs.push((parsed, target));
            }
        }
        if outputs.is_empty() || !exists(&original).await {
            // Nothing to do, or the file was deleted meanwhile.
            return Done::complete();
        }
        match self.produce_within_budget(original, outputs).await {
            Ok(()) => Done::complete(),
            // A corrupt or oversized image will not get better: the job dies at once, and
            // downloads keep serving the original.
            Err(ProduceError::Image(e)) => Err(JobFailure::discard(e.to_string())),
            Err(ProduceError::Io(e)) => Err(JobFailure::retry(e.to_string())),
        }
    }

    /// `files.delete`: removes released blobs that no row references any more.
    async fn run_delete(&self, ctx: JobContext) -> Result<Done, JobFailure> {
        let released: Vec<Released> = ctx
            .payload
            .get("files")
            .cloned()
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| JobFailure::discard("payload.files must list the released files"))?;
        let keys: Vec<Vec<u8>> =
            released.iter().map(|r| file_ref_key(&r.collection, &r.record, &r.name)).collect();
        let still = self
            .inner
            .store
            .read(move |tx| tx.get_many(Table::FileRefs, &keys))
            .await
            .map_err(|e| JobFailure::retry(e.to_string()))?;
        let gone: Vec<Released> = released
            .into_iter()
            .zip(still)
            .filter(|(r, s)| s.is_none() && is_valid_file_name(&r.name))
            .map(|(r, _)| r)
            .collect();
        let files = self.clone();
        tokio::task::spawn_blocking(move || {
            for r in &gone {
                let dir = files.record_dir(&r.collection, &r.record);
                remove_file_if_present(&dir.join(&r.name))?;
                match std::fs::remove_dir_all(dir.join(format!("thumbs_{}", r.name))) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                // The record's directory goes once it is empty (deleted records).
                let _ = std::fs::remove_dir(&dir);
            }
            Ok(())
        })
        .await
        .map_err(|e| JobFailure::retry(e.to_string()))?
        .map_err(|e| JobFailure::retry(e.to_string()))?;
        Done::complete()
    }

    /// Creates the daily `files.sweep` schedule once (an operator may change or delete it
    /// through `/api/crons`; it is not recreated).
    pub async fn seed_sweep_cron(&self) -> Result<(), FilesError> {
        let Some(jobs) = self.inner.jobs.get() else {
            return Ok(());
        };
        let seeded = self.inner.store.read(|tx| tx.get(Table::Meta, META_SWEEP_SEEDED)).await?;
        if seeded.is_some() {
            return Ok(());
        }
        let mut body = serde_json::Map::new();
        body.insert("name".into(), json!("sweep unreferenced files"));
        body.insert("expression".into(), json!("17 4 * * *"));
        body.insert("kind".into(), json!(JOB_SWEEP));
        jobs.create_cron(body).await.map_err(|e| FilesError::Io(e.to_string()))?;
        self.inner
            .store
            .write(|tx: &mut WriteTx<'_>| {
                tx.put(Table::Meta, META_SWEEP_SEEDED, vec![1]);
                Ok::<_, StoreError>(())
            })
            .await?;
        Ok(())
    }

    /// After a collection was deleted: its blobs go with the next sweep, enqueued now.
    pub async fn collection_deleted(&self) {
        if let Some(jobs) = self.inner.jobs.get() {
            if let Err(err) = jobs.enqueue(JobSpec::new(JOB_SWEEP, json!({}))).await {
                tracing::warn!(error = %err, "could not enqueue the file sweep");
            }
        }
    }

    /// Removes temp files, stale `file_refs` rows (their record or field is gone) and blobs
    /// and variants nothing references. With `grace` > 0 only what is older than that.
    pub async fn sweep(&self, grace: Duration) -> Result<SweepReport, FilesError> {
        let files = self.clone();
        tokio::task::spawn_blocking(move || files.sweep_blocking(grace))
            .await
            .map_err(|e| FilesError::Io(e.to_string()))?
    }

    fn sweep_blocking(&self, grace: Duration) -> Result<SweepReport, FilesError> {
        let mut report = SweepReport::default();
        let io = |e: std::io::Error| FilesError::Io(e.to_string());
        let old_enough = |path: &Path| -> bool {
            grace.is_zero()
                || std::fs::symlink_metadata(path)
                    .and_then(|m| m.modified())
                    .map(|t| t.elapsed().map(|age| age >= grace).unwrap_or(false))
                    .unwrap_or(false)
        };
        for entry in std::fs::read_dir(&self.inner.tmp).map_err(io)?.flatten() {
            if old_enough(&entry.path()) && std::fs::remove_file(entry.path()).is_ok() {
                report.temp_files += 1;
            }
        }
        // Which rows still match a record's value, in one snapshot.
        let catalog = self.inner.records.catalog();
        let (live, stale) = self.inner.store.read_blocking(move |tx| {
            let mut rows: Vec<(Vec<u8>, String, String, String)> = Vec::new();
            tx.scan_prefix(Table::FileRefs, b"", false, None, |k, _| {
                let text = String::from_utf8_lossy(k);
                let mut parts = text.splitn(3, '\0');
                if let (Some(c), Some(r), Some(n)) = (parts.next(), parts.next(), parts.next()) {
                    rows.push((k.to_vec(), c.to_string(), r.to_string(), n.to_string()));
                }
                ScanControl::Continue
            })?;
            let mut live: HashSet<(String, String, String)> = HashSet::new();
            let mut stale: Vec<Vec<u8>> = Vec::new();
            let mut records: HashMap<(String, String), Option<Stored>> = HashMap::new();
            for (key, c, r, n) in rows {
                let stored = records
                    .entry((c.clone(), r.clone()))
                    .or_insert_with(|| {
                        tx.get(Table::Records, &record_key(&c, &r))
                            .ok()
                            .flatten()
                            .and_then(|b| decode(&b).ok())
                    })
                    .clone();
                let holds = match (catalog.get(&c), stored) {
                    (Some(entry), Some(stored)) => {
                        file_field_holding(&entry.collection.fields, &stored, &n).is_some()
                    }
                    _ => false,
                };
                if holds {
                    live.insert((c, r, n));
                } else {
                    stale.push(key);
                }
            }
            Ok::<_, StoreError>((live, stale))
        })?;
        if !stale.is_empty() {
            report.stale_rows = stale.len();
            self.inner.store.write_blocking(move |tx: &mut WriteTx<'_>| {
                for key in &stale {
                    tx.delete(Table::FileRefs, key);
                }
                Ok::<_, StoreError>(())
            })?;
        }
        for collection in std::fs::read_dir(&self.inner.root).map_err(io)?.flatten() {
            let c = collection.file_name().to_string_lossy().to_string();
            if c == TMP_DIR || !collection.path().is_dir() {
                continue;
            }
            if self.inner.records.collection(&c).is_err() {
                // A deleted collection: no write can commit into it any more, whatever the
                // age of its files.
                if std::fs::remove_dir_all(collection.path()).is_ok() {
                    report.blobs += 1;
                }
                continue;
            }
            for record in std::fs::read_dir(collection.path()).map_err(io)?.flatten() {
                let r = record.file_name().to_string_lossy().to_string();
                if !record.path().is_dir() {
                    continue;
                }
                for item in std::fs::read_dir(record.path()).map_err(io)?.flatten() {
                    let n = item.file_name().to_string_lossy().to_string();
                    let original = n.strip_prefix("thumbs_").unwrap_or(&n).to_string();
                    if live.contains(&(c.clone(), r.clone(), original)) || !old_enough(&item.path()) {
                        continue;
                    }
                    let removed = if item.path().is_dir() {
                        std::fs::remove_dir_all(item.path())
                    } else {
                        std::fs::remove_file(item.path())
                    };
                    if removed.is_ok() {
                        report.blobs += 1;
                    }
                }
                let _ = std::fs::remove_dir(record.path());
            }
            let _ = std::fs::remove_dir(collection.path());
        }
        Ok(report)
    }

    /// Storage in use (superusers only): totals, per collection, and with `collection` set,
    /// per record of that collection.
    pub async fn usage(&self, who: &Principal, collection: Option<&str>) -> Result<Value, FilesError> {
        if !who.is_superuser() {
            return Err(FilesError::Forbidden("Only superusers can see storage usage.".into()));
        }
        let only = match collection {
            Some(c) => Some(self.inner.records.collection(c)?.collection.id.clone()),
            None => None,
        };
        let rows = self
            .inner
            .store
            .read(move |tx| {
                let mut rows: Vec<(String, String, u64)> = Vec::new();
                tx.scan_prefix(Table::FileRefs, b"", false, None, |k, v| {
                    let text = String::from_utf8_lossy(k);
                    let mut parts = text.splitn(3, '\0');
                    if let (Some(c), Some(r)) = (parts.next(), parts.next()) {
                        let size = serde_json::from_slice::<FileMeta>(v).map(|m| m.size).unwrap_or(0);
                        rows.push((c.to_string(), r.to_string(), size));
                    }
                    ScanControl::Continue
                })?;
                Ok::<_, StoreError>(rows)
            })
            .await?;
        let catalog = self.inner.records.catalog();
        let (mut total_bytes, mut total_files) = (0u64, 0u64);
        let mut per_collection: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut per_record: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for (c, r, size) in rows {
            total_bytes += size;
            total_files += 1;
            let slot = per_collection.entry(c.clone()).or_default();
            slot.0 += size;
            slot.1 += 1;
            if only.as_deref() == Some(c.as_str()) {
                let slot = per_record.entry(r).or_default();
                slot.0 += size;
                slot.1 += 1;
            }
        }
        let collections: Vec<Value> = per_collection
            .into_iter()
            .map(|(id, (bytes, files))| {
                let name = catalog.get(&id).map(|e| e.collection.name.clone()).unwrap_or_default();
                json!({"collectionId": id, "collectionName": name, "bytes": bytes, "files": files})
            })
            .collect();
        let mut body =
            json!({"totalBytes": total_bytes, "totalFiles": total_files, "collections": collections});
        if only.is_some() {
            body["records"] = per_record
                .into_iter()
                .map(|(id, (bytes, files))| json!({"recordId": id, "bytes": bytes, "files": files}))
                .collect();
        }
        Ok(body)
    }
}

/// What a sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    pub temp_files: usize,
    pub stale_rows: usize,
    pub blobs: usize,
}

impl FileHooks for Files {
    fn place(&self, collection_id: &str, record_id: &str, uploads: &[Upload]) -> std::io::Result<()> {
        let dir = self.record_dir(collection_id, record_id);
        crate::datadir::create_dir_all(&dir)?;
        for upload in uploads {
            let target = dir.join(&upload.name);
            if target.exists() {
                continue; // placed by an earlier attempt of the same update
            }
            std::fs::rename(&upload.temp_path, &target)?;
        }
        // The renames and any new directories are durable before the record is queued.
        sync_dir(&dir)?;
        sync_dir(&self.inner.root.join(collection_id))?;
        sync_dir(&self.inner.root)
    }

    fn unplace(&self, collection_id: &str, record_id: &str, uploads: &[Upload]) {
        let dir = self.record_dir(collection_id, record_id);
        for upload in uploads {
            let _ = std::fs::remove_file(dir.join(&upload.name));
        }
        let _ = std::fs::remove_dir(&dir);
    }

    fn changed_in(
        &self,
        tx: &mut WriteTx<'_>,
        added: Vec<Added>,
        released: Vec<Released>,
    ) -> Result<(), RecordsError> {
        let Some(jobs) = self.inner.jobs.get() else {
            return Ok(()); // no queue (CLI): the sweep removes released blobs
        };
        let failed = |e: crate::jobs::JobsError| RecordsError::Store(StoreError::Internal(e.to_string()));
        if !released.is_empty() {
            jobs.enqueue_in(tx, JobSpec::new(JOB_DELETE, json!({"files": released}))).map_err(failed)?;
        }
        for file in added {
            if file.thumbs.is_empty() || !sniff::is_thumbable(&file.content_type) {
                continue;
            }
            let payload = json!({
                "collection": file.collection,
                "record": file.record,
                "name": file.name,
                "sizes": file.thumbs,
            });
            jobs.enqueue_in(tx, JobSpec::new(JOB_THUMBS, payload)).map_err(failed)?;
        }
        Ok(())
    }
}

/// The options of the file field whose value holds `name`.
fn file_field_holding<'a>(
    fields: &'a [crate::records::field::Field],
    stored: &Stored,
    name: &str,
) -> Option<&'a FileOptions> {
    fields.iter().find_map(|f| match &f.kind {
        FieldKind::File(o) if file_names(stored.get(&f.name)).iter().any(|n| n == name) => Some(o),
        _ => None,
    })
}

#[derive(Debug)]
enum ProduceError {
    Image(thumbs::ThumbError),
    Io(std::io::Error),
}

/// Decodes `original` once and writes each variant atomically (temp file, fsync, rename).
fn produce(
    original: &Path,
    outputs: &[(ThumbSize, PathBuf)],
    limits: DecodeLimits,
) -> Result<(), ProduceError> {
    let file = std::fs::File::open(original).map_err(ProduceError::Io)?;
    let img = thumbs::decode(file, limits).map_err(ProduceError::Image)?;
    for (size, target) in outputs {
        let bytes = thumbs::encode_webp(&thumbs::render(&img, *size)).map_err(ProduceError::Image)?;
        let dir = target.parent().ok_or_else(|| ProduceError::Io(std::io::Error::other("no parent")))?;
        crate::datadir::create_dir_all(dir).map_err(ProduceError::Io)?;
        // `tempfile` creates 0600, and the rename keeps the mode.
        let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(ProduceError::Io)?;
        std::io::Write::write_all(&mut temp, &bytes).map_err(ProduceError::Io)?;
        temp.as_file().sync_all().map_err(ProduceError::Io)?;
        temp.persist(target).map_err(|e| ProduceError::Io(e.error))?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn remove_file_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

async fn exists(path: &Path) -> bool {
    tokio::fs::try_exists(path).await.unwrap_or(false)
}

/// The sniffed type of a stored file (for blobs without a metadata row).
async fn sniff_file(path: PathBuf) -> Result<String, FilesError> {
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut head = Vec::with_capacity(512);
        let file = std::fs::File::open(&path).map_err(|_| FilesError::NotFound)?;
        file.take(512).read_to_end(&mut head).map_err(|e| FilesError::Io(e.to_string()))?;
        Ok(sniff::sniff(&head).to_string())
    })
    .await
    .map_err(|e| FilesError::Io(e.to_string()))?
}

async fn served(path: PathBuf, content_type: String, download_name: String) -> Result<Served, FilesError> {
    let meta = tokio::fs::metadata(&path).await.map_err(|_| FilesError::NotFound)?;
    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let nanos = modified.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let etag = format!("\"{:x}-{:x}\"", meta.len(), nanos);
    let inline = sniff::is_safe_inline(&content_type);
    Ok(Served { path, content_type, size: meta.len(), modified, etag, inline, download_name })
}

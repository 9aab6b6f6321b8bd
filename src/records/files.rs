//! The record side of file fields: the `file_refs` rows (one per stored file, with its
//! metadata) kept in step with the records, and the hooks through which the `files` module
//! places new blobs before a write commits and schedules the removal of released ones in
//! the same transaction.
//!
//! This module never touches the file system itself; `crate::files` implements
//! [`FileHooks`]. Without hooks (CLI commands) released blobs are left to the orphan sweep.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use super::collection::Collection;
use super::field::{file_names, FieldKind};
use super::record::Stored;
use super::{FieldError, RecordsError};
use crate::store::{Table, WriteTx};

/// A file received with a write, already on disk in a temporary file.
#[derive(Debug, Clone)]
pub struct Upload {
    /// Name of the file field it was sent for.
    pub field: String,
    /// The stored name (sanitized original stem, `_`, 10 random characters, extension).
    pub name: String,
    pub size: u64,
    /// Sniffed from the bytes, never taken from the client.
    pub content_type: String,
    /// The fsync'd temporary file; moved into place before the record commits.
    pub temp_path: PathBuf,
}

/// Metadata of one stored file (`Table::FileRefs` value).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileMeta {
    /// Id of the file field holding it.
    pub field: String,
    pub size: u64,
    #[serde(rename = "type")]
    pub content_type: String,
    /// Upload time, ms since 1970.
    pub created: i64,
}

/// A blob that a committed write released: removed by a job after the commit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Released {
    pub collection: String,
    pub record: String,
    pub name: String,
}

/// A new file that a write references: its variants are produced after the commit.
#[derive(Debug, Clone)]
pub struct Added {
    pub collection: String,
    pub record: String,
    pub name: String,
    pub content_type: String,
    pub thumbs: Vec<String>,
}

/// What `crate::files` does around record writes.
pub trait FileHooks: Send + Sync {
    /// Moves the uploads of one record from their temporary files into place and makes
    /// that durable (blocking: called on the blocking pool, before the write is queued).
    fn place(&self, collection_id: &str, record_id: &str, uploads: &[Upload]) -> std::io::Result<()>;
    /// Removes placed blobs of a write that did not commit (blocking, best effort).
    fn unplace(&self, collection_id: &str, record_id: &str, uploads: &[Upload]);
    /// Inside the write transaction: enqueue the removal of released blobs and the
    /// variants of added images (both run only once the transaction committed).
    fn changed_in(
        &self,
        tx: &mut WriteTx<'_>,
        added: Vec<Added>,
        released: Vec<Released>,
    ) -> Result<(), RecordsError>;
}

/// The hooks, attached once the job queue exists (shared by every clone of `Records`).
#[derive(Clone, Default)]
pub struct FileSync(Arc<OnceLock<Arc<dyn FileHooks>>>);

impl FileSync {
    /// Attaches the hooks (the first call wins).
    pub fn attach(&self, hooks: Arc<dyn FileHooks>) {
        let _ = self.0.set(hooks);
    }

    pub fn hooks(&self) -> Option<&Arc<dyn FileHooks>> {
        self.0.get()
    }
}

/// Key of a stored file in `Table::FileRefs`: collection id 0x00 record id 0x00 name.
pub fn file_ref_key(collection_id: &str, record_id: &str, name: &str) -> Vec<u8> {
    let mut key = file_ref_prefix(collection_id, record_id);
    key.extend_from_slice(name.as_bytes());
    key
}

/// Prefix of every file row of one record.
pub fn file_ref_prefix(collection_id: &str, record_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(collection_id.len() + record_id.len() + 40);
    key.extend_from_slice(collection_id.as_bytes());
    key.push(0);
    key.extend_from_slice(record_id.as_bytes());
    key.push(0);
    key
}

/// Brings the file rows of `record_id` from `old` to `new`: every newly referenced name
/// must be one of this write's `uploads` (a client cannot point a record at a blob it did
/// not send), released names are handed to the hooks for removal after the commit.
pub(crate) fn sync_files(
    tx: &mut WriteTx<'_>,
    files: &FileSync,
    collection: &Collection,
    record_id: &str,
    old: Option<&Stored>,
    new: Option<&Stored>,
    uploads: &[Upload],
) -> Result<(), RecordsError> {
    let mut added = Vec::new();
    let mut released = Vec::new();
    let now = chrono::Utc::now().timestamp_millis();
    for field in &collection.fields {
        let FieldKind::File(options) = &field.kind else {
            continue;
        };
        let before: HashSet<String> = file_names(old.and_then(|o| o.get(&field.name))).into_iter().collect();
        let after = file_names(new.and_then(|n| n.get(&field.name)));
        for name in after.iter().filter(|n| !before.contains(*n)) {
            let Some(upload) = uploads.iter().find(|u| &u.name == name && u.field == field.name) else {
                return Err(RecordsError::field(
                    "Failed to save record.",
                    &field.name,
                    FieldError::new(
                        "validation_invalid_file",
                        format!("{name:?} is neither a stored file of this record nor a new upload."),
                    ),
                ));
            };
            let meta = FileMeta {
                field: field.id.clone(),
                size: upload.size,
                content_type: upload.content_type.clone(),
                created: now,
            };
            let bytes = serde_json::to_vec(&meta)
                .map_err(|e| RecordsError::Internal(format!("cannot encode file metadata: {e}")))?;
            tx.put(Table::FileRefs, &file_ref_key(&collection.id, record_id, name), bytes);
            added.push(Added {
                collection: collection.id.clone(),
                record: record_id.to_string(),
                name: name.clone(),
                content_type: upload.content_type.clone(),
                thumbs: options.thumbs.clone(),
            });
        }
        let after: HashSet<String> = after.into_iter().collect();
        for name in before.difference(&after) {
            tx.delete(Table::FileRefs, &file_ref_key(&collection.id, record_id, name));
            released.push(Released {
                collection: collection.id.clone(),
                record: record_id.to_string(),
                name: name.clone(),
            });
        }
    }
    if added.is_empty() && released.is_empty() {
        return Ok(());
    }
    match files.hooks() {
        Some(hooks) => hooks.changed_in(tx, added, released),
        None => Ok(()),
    }
}

/// The value a file field gets from a body: the plain key (or the current value), then
/// PocketBase's modifiers `+name` (prepend), `name+` (append) and `name-` (remove).
pub(crate) fn with_file_modifiers(
    body: &serde_json::Map<String, serde_json::Value>,
    name: &str,
    base: serde_json::Value,
) -> serde_json::Value {
    use serde_json::Value;
    let prepend = body.get(&format!("+{name}"));
    let append = body.get(&format!("{name}+"));
    let remove = body.get(&format!("{name}-"));
    if prepend.is_none() && append.is_none() && remove.is_none() {
        return base;
    }
    let as_list = |v: &Value| -> Vec<Value> {
        match v {
            Value::Array(items) => items.clone(),
            Value::Null => vec![],
            Value::String(s) if s.is_empty() => vec![],
            other => vec![other.clone()],
        }
    };
    let mut list = as_list(&base);
    if let Some(p) = prepend {
        let mut front = as_list(p);
        front.extend(list);
        list = front;
    }
    if let Some(a) = append {
        list.extend(as_list(a));
    }
    if let Some(r) = remove {
        let gone = as_list(r);
        list.retain(|v| !gone.contains(v));
    }
    Value::Array(list)
}

/// Keeps only the uploads the stored record references (an upload a single-file field
/// replaced within the same request is dropped with its temporary file).
pub(crate) fn referenced_uploads(
    collection: &Collection,
    stored: &Stored,
    uploads: Vec<Upload>,
) -> Vec<Upload> {
    let names: HashSet<String> = collection
        .fields
        .iter()
        .filter(|f| matches!(f.kind, FieldKind::File(_)))
        .flat_map(|f| file_names(stored.get(&f.name)))
        .collect();
    uploads.into_iter().filter(|u| names.contains(&u.name)).collect()
}

/// Runs [`FileHooks::place`] on the blocking pool.
pub(crate) async fn place(
    files: &FileSync,
    collection_id: &str,
    record_id: &str,
    uploads: &[Upload],
) -> Result<(), RecordsError> {
    if uploads.is_empty() {
        return Ok(());
    }
    let Some(hooks) = files.hooks().cloned() else {
        return Err(RecordsError::BadRequest("File uploads are not accepted here.".into()));
    };
    let (c, r, u) = (collection_id.to_string(), record_id.to_string(), uploads.to_vec());
    let result = tokio::task::spawn_blocking(move || hooks.place(&c, &r, &u))
        .await
        .map_err(|e| RecordsError::Internal(e.to_string()))?;
    result.map_err(|e| {
        if e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28) {
            RecordsError::Store(crate::store::StoreError::DiskFull)
        } else {
            RecordsError::Store(crate::store::StoreError::Internal(format!("placing uploaded files: {e}")))
        }
    })
}

/// Runs [`FileHooks::unplace`] on the blocking pool (after a write that did not commit).
pub(crate) async fn unplace(files: &FileSync, collection_id: &str, record_id: &str, uploads: &[Upload]) {
    if uploads.is_empty() {
        return;
    }
    if let Some(hooks) = files.hooks().cloned() {
        let (c, r, u) = (collection_id.to_string(), record_id.to_string(), uploads.to_vec());
        let _ = tokio::task::spawn_blocking(move || hooks.unplace(&c, &r, &u)).await;
    }
}

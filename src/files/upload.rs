//! Multipart uploads exactly as the PocketBase SDKs send them: file parts under the field
//! name (or `name+` / `+name` to append / prepend), text parts as values (repeated keys make
//! a list), and `@jsonPayload` holding the other fields as one JSON object.
//!
//! Each file part streams into a temporary file under `files/.tmp/` with the field's size
//! cap enforced on the bytes as they arrive; its content type is sniffed from the first
//! bytes and checked against the field's `mimeTypes` before the rest is read; the file is
//! fsync'd before the record write is queued. Temporary files that end up unused are
//! removed when the [`TempFiles`] guard drops (and any left by a crash at startup).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;

use super::sniff;
use super::FilesError;
use crate::records::collection::Collection;
use crate::records::field::{FieldKind, FileOptions};
use crate::records::files::Upload;
use crate::records::{FieldError, FieldErrors};
use crate::util::invalid::Invalid;

/// After a body went over its limit, read (and drop) up to this much more, so a client
/// still sending gets the 413 instead of a reset connection.
const DRAIN_CAP: usize = 256 * 1024;
/// Bytes of a file's start used to sniff its type.
const SNIFF_BYTES: usize = 512;
/// Most parts in one form.
const MAX_PARTS: usize = 1000;

/// Caps of one multipart request.
#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    /// The whole body, in bytes.
    pub max_body_bytes: u64,
    /// One text part (and `@jsonPayload`), in bytes.
    pub max_text_bytes: usize,
}

/// Temporary files of one request: removed on drop unless they were moved into place.
#[derive(Default)]
pub struct TempFiles(Vec<tempfile::TempPath>);

impl TempFiles {
    /// True when no temporary file is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Removes what is left (blocking: call from the blocking pool).
    pub fn remove(self) {
        for path in self.0 {
            let _ = path.close();
        }
    }
}

/// A parsed form: the JSON-like body, the received files, and the guard of their temp files.
#[derive(Default)]
pub struct Form {
    pub body: Map<String, Value>,
    pub uploads: Vec<Upload>,
    pub temps: TempFiles,
}

/// The body stream with the whole-body cap applied: past `limit` bytes it drains a little
/// more and then fails, and `exceeded` tells the caller why the parse failed.
pub fn limited<S, O, E>(
    stream: S,
    limit: u64,
    exceeded: Arc<AtomicBool>,
) -> impl Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static
where
    S: Stream<Item = Result<O, E>> + Send + Unpin + 'static,
    O: AsRef<[u8]> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    futures_util::stream::unfold((stream, 0u64, false), move |(mut stream, seen, done)| {
        let exceeded = exceeded.clone();
        async move {
            if done {
                return None;
            }
            match stream.next().await {
                None => None,
                Some(Err(e)) => Some((Err(std::io::Error::other(e.to_string())), (stream, seen, true))),
                Some(Ok(chunk)) => {
                    let chunk = chunk.as_ref();
                    let seen = seen + chunk.len() as u64;
                    if seen > limit {
                        exceeded.store(true, Ordering::SeqCst);
                        let mut drained = 0usize;
                        while drained < DRAIN_CAP {
                            match stream.next().await {
                                Some(Ok(more)) => drained += more.as_ref().len(),
                                _ => break,
                            }
                        }
                        let err = std::io::Error::other("the request body is too large");
                        return Some((Err(err), (stream, seen, true)));
                    }
                    Some((Ok(chunk.to_vec()), (stream, seen, false)))
                }
            }
        }
    })
}

/// The boundary of a `multipart/form-data` content type, or `None` for any other type.
pub fn boundary(content_type: &str) -> Option<String> {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence != "multipart/form-data" {
        return None;
    }
    multer::parse_boundary(content_type).ok()
}

/// Reads a multipart form for `collection`. `too_large` is the flag of the [`limited`]
/// stream wrapped around the body.
pub async fn parse_form<S>(
    stream: S,
    boundary: String,
    collection: &Collection,
    tmp_dir: &Path,
    limits: UploadLimits,
    too_large: Arc<AtomicBool>,
) -> Result<Form, FilesError>
where
    S: Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static,
{
    let mut form = Form::default();
    let result = read_parts(stream, boundary, collection, tmp_dir, limits, &mut form).await;
    match result {
        Ok(()) => Ok(form),
        Err(err) => {
            let temps = std::mem::take(&mut form.temps);
            let _ = tokio::task::spawn_blocking(move || temps.remove()).await;
            if too_large.load(Ordering::SeqCst) && !matches!(err, FilesError::TooLarge { .. }) {
                return Err(FilesError::TooLarge {
                    detail: format!("The request body exceeds the limit of {} bytes.", limits.max_body_bytes),
                    fields: FieldErrors::new(),
                });
            }
            Err(err)
        }
    }
}

/// A batch form (`POST /api/batch` as the JS SDK sends it): the `@jsonPayload` object and
/// the file parts, named `requests.N.field`, each received before its request's collection
/// is known (the SDK sends the payload last). [`batch_upload`] checks one against its field.
#[derive(Default)]
pub struct BatchForm {
    pub payload: Option<Map<String, Value>>,
    /// (part name, the received file with the type sniffed from its bytes).
    pub files: Vec<(String, Upload)>,
    pub temps: TempFiles,
}

/// Reads a batch form: the `@jsonPayload` part (at most `limits.max_text_bytes`) and file
/// parts streamed to temporary files; other text parts are refused.
pub async fn parse_batch_form<S>(
    stream: S,
    boundary: String,
    tmp_dir: &Path,
    limits: UploadLimits,
    too_large: Arc<AtomicBool>,
) -> Result<BatchForm, FilesError>
where
    S: Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static,
{
    let mut form = Form::default();
    let mut out = BatchForm::default();
    let result = read_batch_parts(stream, boundary, tmp_dir, limits, &mut form, &mut out).await;
    out.temps = std::mem::take(&mut form.temps);
    match result {
        Ok(()) => Ok(out),
        Err(err) => {
            let temps = std::mem::take(&mut out.temps);
            let _ = tokio::task::spawn_blocking(move || temps.remove()).await;
            if too_large.load(Ordering::SeqCst) && !matches!(err, FilesError::TooLarge { .. }) {
                return Err(FilesError::TooLarge {
                    detail: format!("The request body exceeds the limit of {} bytes.", limits.max_body_bytes),
                    fields: FieldErrors::new(),
                });
            }
            Err(err)
        }
    }
}

async fn read_batch_parts<S>(
    stream: S,
    boundary: String,
    tmp_dir: &Path,
    limits: UploadLimits,
    form: &mut Form,
    out: &mut BatchForm,
) -> Result<(), FilesError>
where
    S: Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static,
{
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut parts = 0usize;
    // Any type and up to the whole body while receiving; `batch_upload` applies the field's.
    let open = FileOptions { max_size: limits.max_body_bytes, ..FileOptions::default() };
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        parts += 1;
        if parts > MAX_PARTS {
            return Err(FilesError::BadRequest(format!("At most {MAX_PARTS} form parts per request.")));
        }
        let key = field.name().unwrap_or_default().to_string();
        if let Some(original) = field.file_name().map(str::to_string) {
            if let Some(upload) = receive_file(&mut field, &original, &key, &open, tmp_dir, form).await? {
                out.files.push((key, upload));
            }
            continue;
        }
        if key != "@jsonPayload" {
            return Err(FilesError::BadRequest(format!(
                "Unexpected form field {key:?}: a batch form holds @jsonPayload and files named requests.N.field."
            )));
        }
        let mut value = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            if value.len() + chunk.len() > limits.max_text_bytes {
                return Err(FilesError::TooLarge {
                    detail: format!("The form field {key:?} exceeds {} bytes.", limits.max_text_bytes),
                    fields: FieldErrors::new(),
                });
            }
            value.extend_from_slice(&chunk);
        }
        match serde_json::from_slice::<Value>(&value) {
            Ok(Value::Object(map)) => out.payload.get_or_insert_with(Map::new).extend(map),
            _ => return Err(FilesError::BadRequest("@jsonPayload must be a JSON object.".into())),
        }
    }
    Ok(())
}

/// Checks a file of a batch form against the file field it was sent for (size and
/// accepted types) and names it as an upload of that field; errors are keyed by `key`.
pub fn batch_upload(
    mut upload: Upload,
    field_name: &str,
    options: &FileOptions,
    key: &str,
) -> Result<Upload, FilesError> {
    let max = options.effective_max_size();
    if upload.size > max {
        let mut fields = FieldErrors::new();
        fields.insert(
            key.to_string(),
            FieldError::new(
                "validation_file_size_limit",
                format!("The maximum allowed file size is {max} bytes."),
            ),
        );
        return Err(FilesError::TooLarge {
            detail: format!("A file exceeds the limit of {max} bytes of field {field_name:?}."),
            fields,
        });
    }
    allowed_type(&upload.content_type, options, key)?;
    upload.field = field_name.to_string();
    Ok(upload)
}

fn multipart_error(err: multer::Error) -> FilesError {
    FilesError::BadRequest(format!("Malformed multipart body: {err}."))
}

async fn read_parts<S>(
    stream: S,
    boundary: String,
    collection: &Collection,
    tmp_dir: &Path,
    limits: UploadLimits,
    form: &mut Form,
) -> Result<(), FilesError>
where
    S: Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static,
{
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut parts = 0usize;
    let mut text: Vec<(String, String)> = Vec::new();
    let mut json_payload: Option<Map<String, Value>> = None;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        parts += 1;
        if parts > MAX_PARTS {
            return Err(FilesError::BadRequest(format!("At most {MAX_PARTS} form parts per request.")));
        }
        let key = field.name().unwrap_or_default().to_string();
        if let Some(original) = field.file_name().map(str::to_string) {
            let field_name = key.trim_start_matches('+').trim_end_matches('+').to_string();
            let options = collection.fields.iter().find_map(|f| match &f.kind {
                FieldKind::File(o) if f.name == field_name => Some(o.clone()),
                _ => None,
            });
            let Some(options) = options.filter(|_| !key.ends_with('-')) else {
                // Not a file field: ignored, as PocketBase does.
                while field.chunk().await.map_err(multipart_error)?.is_some() {}
                continue;
            };
            if let Some(upload) =
                receive_file(&mut field, &original, &field_name, &options, tmp_dir, form).await?
            {
                let slot = form.body.entry(key).or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = slot {
                    list.push(Value::String(upload.name.clone()));
                }
                form.uploads.push(upload);
            }
            continue;
        }
        let mut value = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            if value.len() + chunk.len() > limits.max_text_bytes {
                return Err(FilesError::TooLarge {
                    detail: format!("The form field {key:?} exceeds {} bytes.", limits.max_text_bytes),
                    fields: FieldErrors::new(),
                });
            }
            value.extend_from_slice(&chunk);
        }
        let value = String::from_utf8(value)
            .map_err(|_| FilesError::BadRequest(format!("The form field {key:?} is not UTF-8 text.")))?;
        if key == "@jsonPayload" {
            match serde_json::from_str::<Value>(&value) {
                Ok(Value::Object(map)) => json_payload.get_or_insert_with(Map::new).extend(map),
                _ => {
                    return Err(FilesError::BadRequest("@jsonPayload must be a JSON object.".into()));
                }
            }
        } else {
            text.push((key, value));
        }
    }
    // Text values first (repeated keys make a list), then the JSON payload, then uploads
    // merged in after what the text named for the same key.
    let mut body = Map::new();
    for (key, value) in text {
        match body.get_mut(&key) {
            None => {
                body.insert(key, Value::String(value));
            }
            Some(Value::Array(list)) => list.push(Value::String(value)),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, Value::String(value)]);
            }
        }
    }
    if let Some(payload) = json_payload {
        body.extend(payload);
    }
    for (key, names) in std::mem::take(&mut form.body) {
        let mut list = match body.remove(&key) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) if s.is_empty() => Vec::new(),
            Some(Value::Array(items)) => items,
            Some(other) => vec![other],
        };
        if let Value::Array(new) = names {
            list.extend(new);
        }
        body.insert(key, Value::Array(list));
    }
    form.body = body;
    Ok(())
}

/// Streams one file part into a temporary file; `None` for an empty part without a name
/// (a form's unused file input).
async fn receive_file(
    field: &mut multer::Field<'static>,
    original: &str,
    field_name: &str,
    options: &FileOptions,
    tmp_dir: &Path,
    form: &mut Form,
) -> Result<Option<Upload>, FilesError> {
    let max = options.effective_max_size();
    let dir = tmp_dir.to_path_buf();
    let temp =
        tokio::task::spawn_blocking(move || tempfile::Builder::new().prefix("upload-").tempfile_in(dir))
            .await
            .map_err(|e| FilesError::Io(e.to_string()))?
            .map_err(io_error)?;
    let (file, path) = temp.into_parts();
    let temp_path: PathBuf = path.to_path_buf();
    form.temps.0.push(path);
    let mut out = tokio::fs::File::from_std(file);
    let mut head: Vec<u8> = Vec::with_capacity(SNIFF_BYTES);
    let mut size = 0u64;
    let mut content_type: Option<&'static str> = None;
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        size += chunk.len() as u64;
        if size > max {
            let mut drained = 0usize;
            while drained < DRAIN_CAP {
                match field.chunk().await {
                    Ok(Some(more)) => drained += more.len(),
                    _ => break,
                }
            }
            let mut fields = FieldErrors::new();
            fields.insert(
                field_name.to_string(),
                FieldError::new(
                    "validation_file_size_limit",
                    format!("The maximum allowed file size is {max} bytes."),
                ),
            );
            return Err(FilesError::TooLarge {
                detail: format!(
                    "The file {original:?} exceeds the limit of {max} bytes of field {field_name:?}."
                ),
                fields,
            });
        }
        if head.len() < SNIFF_BYTES {
            let take = (SNIFF_BYTES - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        if content_type.is_none() && head.len() >= SNIFF_BYTES {
            content_type = Some(check_type(&head, options, field_name)?);
        }
        out.write_all(&chunk).await.map_err(io_error)?;
    }
    if size == 0 && original.is_empty() {
        return Ok(None);
    }
    let content_type = match content_type {
        Some(t) => t,
        None => check_type(&head, options, field_name)?,
    };
    out.sync_all().await.map_err(io_error)?;
    drop(out);
    Ok(Some(Upload {
        field: field_name.to_string(),
        name: stored_name(original, content_type),
        size,
        content_type: content_type.to_string(),
        temp_path,
    }))
}

fn io_error(err: std::io::Error) -> FilesError {
    if err.kind() == std::io::ErrorKind::StorageFull || err.raw_os_error() == Some(28) {
        FilesError::DiskFull
    } else {
        FilesError::Io(err.to_string())
    }
}

fn check_type(head: &[u8], options: &FileOptions, field_name: &str) -> Result<&'static str, FilesError> {
    let sniffed = sniff::sniff(head);
    allowed_type(sniffed, options, field_name)?;
    Ok(sniffed)
}

fn allowed_type(sniffed: &str, options: &FileOptions, field_name: &str) -> Result<(), FilesError> {
    let allowed = options.mime_types.is_empty()
        || options
            .mime_types
            .iter()
            .any(|m| m.eq_ignore_ascii_case(sniffed) || (m == "image/jpg" && sniffed == "image/jpeg"));
    if allowed {
        return Ok(());
    }
    Err(FilesError::Validation(Invalid::field(
        "Failed to save record.",
        field_name,
        "validation_invalid_mime_type",
        format!("{sniffed:?} is not allowed; accepted: {}.", options.mime_types.join(", ")),
    )))
}

/// PocketBase's naming: the original stem in snake case (at most 100 characters, padded
/// with random characters when shorter than 3), `_`, 10 random characters, then the
/// original extension made safe (ASCII letters and digits, lower case, at most 20) or one
/// derived from the sniffed type.
pub fn stored_name(original: &str, content_type: &str) -> String {
    let base = original.rsplit(['/', '\\']).next().unwrap_or_default();
    let (stem, ext) = match base.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, ext),
        _ => (base, ""),
    };
    let mut ext: String =
        ext.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect();
    if ext.is_empty() {
        ext = sniff::extension_for(content_type).to_string();
    }
    ext.truncate(20);
    let mut clean = String::with_capacity(stem.len());
    for c in stem.chars() {
        if c.is_ascii_alphanumeric() {
            clean.push(c.to_ascii_lowercase());
        } else if !clean.ends_with('_') {
            clean.push('_');
        }
    }
    let mut clean = clean.trim_matches('_').to_string();
    clean.truncate(100);
    if clean.len() < 3 {
        clean.push_str(&crate::util::id::random_string(10));
    }
    format!("{clean}_{}.{ext}", crate::util::id::random_string(10))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::field::is_valid_file_name;

    #[test]
    fn stored_names_are_safe_and_keep_the_extension() {
        let name = stored_name("../../My Holiday Photo (1).JPG", "image/jpeg");
        assert!(name.starts_with("my_holiday_photo_1_"), "{name}");
        assert!(name.ends_with(".jpg"), "{name}");
        assert!(is_valid_file_name(&name), "{name}");
        let bare = stored_name("a", "image/png");
        assert!(bare.ends_with(".png") && is_valid_file_name(&bare), "{bare}");
        let weird = stored_name("x.<script>", "text/plain");
        assert!(weird.ends_with(".script") && is_valid_file_name(&weird), "{weird}");
        let dotfile = stored_name(".htaccess", "text/plain");
        assert!(!dotfile.starts_with('.') && is_valid_file_name(&dotfile), "{dotfile}");
    }
}

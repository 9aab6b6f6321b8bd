//! `/api/files`: downloads (with `Range`, `ETag`/`Last-Modified` and 304s), file tokens,
//! storage usage, and reading multipart record bodies for `api::records`.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use poem::http::{header, StatusCode};
use poem::web::{Data, Path, Query};
use poem::{handler, Body, Request, Response};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::error::ApiError;
use super::openapi::{collection_param, op, path_param, query_param};
use super::{caller, json_response, principal, Routes};
use crate::app::App;
use crate::files::upload::{self, TempFiles, UploadLimits};
use crate::files::{DownloadCaller, FilesError, Served};
use crate::records::files::Upload;
use crate::records::filter::RequestInfo;

/// Answers up to this size are read in one piece; larger ones stream in chunks.
const IN_MEMORY_MAX: u64 = 4 << 20;
/// Chunk size of streamed answers.
const STREAM_CHUNK: usize = 256 * 1024;

/// Query parameters of a download.
#[derive(Debug, Default, Deserialize)]
pub struct DownloadParams {
    thumb: Option<String>,
    token: Option<String>,
    download: Option<String>,
}

#[handler]
pub async fn token(req: &Request, Data(app): Data<&Arc<App>>) -> Result<Response, ApiError> {
    let who = principal(app, req).await;
    let token = app.auth.file_token(&who, app.config.files.token_secs).await?;
    Ok(json_response(StatusCode::OK, &json!({ "token": token })))
}

/// Query parameters of the usage endpoint.
#[derive(Debug, Default, Deserialize)]
pub struct UsageParams {
    collection: Option<String>,
}

#[handler]
pub async fn usage(
    req: &Request,
    Query(q): Query<UsageParams>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let who = principal(app, req).await;
    let body = app.files.usage(&who, q.collection.as_deref()).await?;
    Ok(json_response(StatusCode::OK, &body))
}

#[handler]
pub async fn download(
    req: &Request,
    Path((collection, record_id, filename)): Path<(String, String, String)>,
    Query(q): Query<DownloadParams>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let header = caller(app, req).await;
    let holder = match q.token.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => {
            let (who, auth) = app.auth.identify_file_token(t).await;
            let mut info = header.1.clone();
            info.auth = auth;
            (who, info)
        }
        None => (crate::auth::Principal::Anonymous, RequestInfo { auth: None, ..header.1.clone() }),
    };
    let thumb = q.thumb.as_deref().filter(|t| !t.is_empty());
    let served = app
        .files
        .resolve(DownloadCaller { token: holder, header }, &collection, &record_id, &filename, thumb)
        .await?;
    let force_download =
        matches!(q.download.as_deref(), Some(v) if !v.is_empty() && v != "0" && v != "false");
    // A download made with credentials (a file token or an Authorization header) may be a
    // protected file: no cache may keep it, or the next user of a shared browser (or a
    // shared cache) would get it without the token.
    let credentialed =
        q.token.as_deref().is_some_and(|t| !t.is_empty()) || req.header("Authorization").is_some();
    let cache = if credentialed { "private, no-store" } else { "private, max-age=604800" };
    send(req, served, force_download, cache).await
}

fn http_date(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// True when the client's cached copy is current (`If-None-Match`, else `If-Modified-Since`).
fn not_modified(req: &Request, served: &Served) -> bool {
    if let Some(tags) = req.header(header::IF_NONE_MATCH) {
        return tags.split(',').map(str::trim).any(|t| t == "*" || t.trim_start_matches("W/") == served.etag);
    }
    req.header(header::IF_MODIFIED_SINCE)
        .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
        .is_some_and(|since| unix_secs(served.modified) <= since.timestamp())
}

/// One byte range of `size` from a `Range` header: `Some(Ok(start, end inclusive))`,
/// `Some(Err(()))` when unsatisfiable, `None` when absent or not a single byte range (the
/// whole file is sent, as RFC 9110 allows).
fn byte_range(value: &str, size: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = (start.trim(), end.trim());
    if start.is_empty() {
        let suffix: u64 = end.parse().ok()?;
        if suffix == 0 || size == 0 {
            return Some(Err(()));
        }
        return Some(Ok((size.saturating_sub(suffix), size - 1)));
    }
    let start: u64 = start.parse().ok()?;
    let end: u64 = if end.is_empty() { size.saturating_sub(1) } else { end.parse().ok()? };
    if start >= size || end < start {
        return Some(Err(()));
    }
    Some(Ok((start, end.min(size - 1))))
}

async fn send(
    req: &Request,
    served: Served,
    force_download: bool,
    cache: &'static str,
) -> Result<Response, ApiError> {
    let disposition = if served.inline && !force_download { "inline" } else { "attachment" };
    let content_type = if served.content_type == "text/plain" {
        "text/plain; charset=utf-8".to_string()
    } else {
        served.content_type.clone()
    };
    let base = || {
        Response::builder()
            .header(header::ETAG, served.etag.clone())
            .header(header::LAST_MODIFIED, http_date(served.modified))
            .header(header::CACHE_CONTROL, cache)
            .header(header::ACCEPT_RANGES, "bytes")
            .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
    };
    if not_modified(req, &served) {
        return Ok(base().status(StatusCode::NOT_MODIFIED).finish());
    }
    let if_range_ok = req.header(header::IF_RANGE).is_none_or(|v| v.trim() == served.etag);
    let range = req.header(header::RANGE).filter(|_| if_range_ok).and_then(|v| byte_range(v, served.size));
    let (status, start, len) = match range {
        None => (StatusCode::OK, 0, served.size),
        Some(Ok((start, end))) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        Some(Err(())) => {
            return Ok(base()
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{}", served.size))
                .finish());
        }
    };
    let body = if len <= IN_MEMORY_MAX {
        // One trip to the blocking pool for the whole answer (thumbnails, most files).
        let path = served.path.clone();
        let bytes = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
            use std::io::{Read, Seek};
            let mut file = std::fs::File::open(path)?;
            file.seek(std::io::SeekFrom::Start(start))?;
            let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
            file.read_exact(&mut buf)?;
            Ok(buf)
        })
        .await
        .map_err(|e| ApiError::from(FilesError::Io(e.to_string())))?
        .map_err(|_| ApiError::from(FilesError::NotFound))?;
        Body::from(bytes)
    } else {
        let mut file =
            tokio::fs::File::open(&served.path).await.map_err(|_| ApiError::from(FilesError::NotFound))?;
        if start > 0 {
            file.seek(std::io::SeekFrom::Start(start))
                .await
                .map_err(|e| ApiError::from(FilesError::Io(e.to_string())))?;
        }
        Body::from_bytes_stream(tokio_util::io::ReaderStream::with_capacity(file.take(len), STREAM_CHUNK))
    };
    let mut builder = base()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_DISPOSITION, format!("{disposition}; filename=\"{}\"", served.download_name))
        .header(header::CONTENT_LENGTH, len.to_string());
    if status == StatusCode::PARTIAL_CONTENT {
        builder = builder
            .header(header::CONTENT_RANGE, format!("bytes {start}-{}/{}", start + len - 1, served.size));
    }
    Ok(builder.body(body))
}

/// A record body: JSON, or a multipart form with files. The returned guard removes the
/// temporary files the write did not move into place (drop it with [`discard_temps`]).
pub(crate) async fn record_body(
    app: &App,
    req: &Request,
    body: Body,
    collection: &str,
) -> Result<(Map<String, Value>, Vec<Upload>, TempFiles), ApiError> {
    let Some(boundary) = req.header(header::CONTENT_TYPE).and_then(upload::boundary) else {
        let input = super::body::json_object(req, body, app.body_limits()).await?;
        return Ok((input, Vec::new(), TempFiles::default()));
    };
    let entry = app.records.collection(collection)?;
    let limit = app.config.files.max_upload_bytes;
    let too_large = || {
        ApiError::from(FilesError::TooLarge {
            detail: format!("The request body exceeds the limit of {limit} bytes."),
            fields: Default::default(),
        })
    };
    let declared = req.header(header::CONTENT_LENGTH).and_then(|v| v.trim().parse::<u64>().ok());
    let stream = Box::pin(body.into_bytes_stream());
    if declared.is_some_and(|len| len > limit) {
        // Refused before reading: drain a little so the client sees the answer.
        let mut stream = stream;
        let mut drained = 0usize;
        while drained < 256 * 1024 {
            match stream.next().await {
                Some(Ok(chunk)) => drained += chunk.len(),
                _ => break,
            }
        }
        return Err(too_large());
    }
    let flag = Arc::new(AtomicBool::new(false));
    let limited = upload::limited(stream, limit, flag.clone());
    let limits = UploadLimits { max_body_bytes: limit, max_text_bytes: app.config.limits.max_body_bytes };
    let deadline = Duration::from_secs(app.config.limits.body_timeout_secs.max(1));
    let parse = upload::parse_form(limited, boundary, &entry.collection, app.files.tmp_dir(), limits, flag);
    let form =
        tokio::time::timeout(deadline, parse).await.map_err(|_| ApiError::from(FilesError::Timeout))??;
    Ok((form.body, form.uploads, form.temps))
}

/// Removes the request's leftover temporary files on the blocking pool.
pub(crate) async fn discard_temps(temps: TempFiles) {
    // Most writes carry no files: no trip to the blocking pool (two context switches).
    if temps.is_empty() {
        return;
    }
    let _ = tokio::task::spawn_blocking(move || temps.remove()).await;
}

/// `/api/files/{collection}/{recordId}/{filename}`, `/api/files/token`, `/api/files/usage`.
pub(super) fn routes(api: Routes) -> Routes {
    let file_params = vec![
        collection_param(),
        path_param("recordId", "Record id."),
        path_param("filename", "Stored file name."),
        query_param("thumb", "A variant size the field lists (`WxH`, `WxHt`, `WxHb`, `WxHf`, `0xH`, `Wx0`) or `100x100`; served as WebP. Other sizes, and files that are not images, answer the original.", json!({"type": "string"})),
        query_param("token", "A file token (`POST /api/files/token`); required for protected fields.", json!({"type": "string"})),
        query_param("download", "Non-empty: always `Content-Disposition: attachment`.", json!({"type": "string"})),
    ];
    let mut download_op = op("downloadFile", "Download a file; the record must be visible under the collection's view rule. Supports Range, ETag/If-None-Match and Last-Modified/If-Modified-Since. The content type is sniffed at upload; SVG, HTML and unknown types are attachments.", "files", file_params, None, (200, None), &[404]);
    download_op["responses"]["200"] = json!({"description": "The file", "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}});
    download_op["responses"]["206"] = json!({"description": "The requested byte range"});
    download_op["responses"]["304"] = json!({"description": "Not modified"});
    download_op["responses"]["416"] = json!({"description": "Range not satisfiable"});
    api.at("/api/files/:collection/:recordId/:filename", |m| m.get(download, download_op))
    .at("/api/files/token", |m| {
        m.post(
            token,
            op("fileToken", "A short-lived token for protected files (signed-in callers)", "files", vec![], None, (200, Some(json!({"type": "object", "properties": {"token": {"type": "string"}}, "required": ["token"]}))), &[401]),
        )
    })
    .at("/api/files/usage", |m| {
        m.get(
            usage,
            op("fileUsage", "Storage used by files: total, per collection, and with `collection` per record (superusers)", "files", vec![query_param("collection", "Collection id or name: add per-record usage.", json!({"type": "string"}))], None, (200, Some(json!({"type": "object", "properties": {"totalBytes": {"type": "integer"}, "totalFiles": {"type": "integer"}, "collections": {"type": "array", "items": {"type": "object"}}, "records": {"type": "array", "items": {"type": "object"}}}, "required": ["totalBytes", "totalFiles", "collections"]}))), &[401, 403, 404]),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::byte_range;

    #[test]
    fn byte_ranges_follow_rfc_9110() {
        assert_eq!(byte_range("bytes=0-9", 100), Some(Ok((0, 9))));
        assert_eq!(byte_range("bytes=90-", 100), Some(Ok((90, 99))));
        assert_eq!(byte_range("bytes=-10", 100), Some(Ok((90, 99))));
        assert_eq!(byte_range("bytes=50-500", 100), Some(Ok((50, 99))));
        assert_eq!(byte_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(byte_range("bytes=0-1,5-6", 100), None);
        assert_eq!(byte_range("items=0-1", 100), None);
    }
}

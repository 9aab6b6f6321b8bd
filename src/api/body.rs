//! Request bodies: content-type checks and size limits enforced on the stream.
//!
//! `Content-Length` is only used to refuse early; the limit is enforced on the bytes that
//! actually arrive, so a lying or absent length cannot get a larger body in.

use futures_util::StreamExt;
use poem::{Body, Request};
use serde_json::{Map, Value};

use super::error::ApiError;

/// After refusing an oversized body, read (and drop) up to this much more of it, so that
/// a client still sending gets the 413 instead of a reset connection.
const DRAIN_CAP: usize = 256 * 1024;

/// Reads at most `limit` bytes of `body` within `deadline`, or answers 413 / 408.
pub async fn read_limited_within(
    req: &Request,
    body: Body,
    limit: usize,
    deadline: std::time::Duration,
) -> Result<Vec<u8>, ApiError> {
    match tokio::time::timeout(deadline, read_limited(req, body, limit)).await {
        Ok(result) => result,
        Err(_) => Err(ApiError::new(
            poem::http::StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "Request timeout",
            format!("The request body did not arrive within {} seconds.", deadline.as_secs()),
        )),
    }
}

/// Reads at most `limit` bytes of `body`, or answers 413.
pub async fn read_limited(req: &Request, body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let declared = req.header("Content-Length").and_then(|v| v.trim().parse::<u64>().ok());
    let mut stream = Box::pin(body.into_bytes_stream());
    if declared.is_some_and(|len| len > limit as u64) {
        drain(&mut stream).await;
        return Err(ApiError::payload_too_large(limit));
    }
    let mut buf = Vec::with_capacity(declared.unwrap_or(0).min(64 * 1024) as usize);
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("Failed to read the request body: {e}")))?;
        if buf.len() + chunk.len() > limit {
            drain(&mut stream).await;
            return Err(ApiError::payload_too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

async fn drain<S, B, E>(stream: &mut S)
where
    S: futures_util::Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
{
    let mut drained = 0usize;
    while drained < DRAIN_CAP {
        match stream.next().await {
            Some(Ok(chunk)) => drained += chunk.as_ref().len(),
            _ => return,
        }
    }
}

/// Reads and drops what the client sends of a request that is answered without its body
/// (a shed request), up to [`DRAIN_CAP`] bytes and for at most `deadline`, so a client
/// still sending gets the answer instead of a reset connection.
pub async fn discard(body: Body, deadline: std::time::Duration) {
    let mut stream = Box::pin(body.into_bytes_stream());
    let _ = tokio::time::timeout(deadline, drain(&mut stream)).await;
}

/// True when the request declares a JSON body (`application/json`, any parameters, or a
/// `+json` suffix).
fn is_json(req: &Request) -> bool {
    req.header("Content-Type")
        .map(|ct| {
            let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            essence == "application/json"
                || (essence.starts_with("application/") && essence.ends_with("+json"))
        })
        .unwrap_or(false)
}

/// How much body a request may send, and how long it may take.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub bytes: usize,
    pub deadline: std::time::Duration,
}

/// Reads a JSON body that must be an object. An empty body counts as `{}`.
pub async fn json_object(
    req: &Request,
    body: Body,
    limits: BodyLimits,
) -> Result<Map<String, Value>, ApiError> {
    match json_value(req, body, limits).await? {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(Map::new()),
        _ => Err(ApiError::bad_request("The request body must be a JSON object.")),
    }
}

/// Reads a JSON body of any shape. An empty body is `null`.
pub async fn json_value(req: &Request, body: Body, limits: BodyLimits) -> Result<Value, ApiError> {
    let has_content_type = req.header("Content-Type").is_some();
    if has_content_type && !is_json(req) {
        return Err(ApiError::unsupported_media_type(format!(
            "Expected Content-Type application/json, got {:?}.",
            req.header("Content-Type").unwrap_or_default()
        )));
    }
    let bytes = read_limited_within(req, body, limits.bytes, limits.deadline).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    if !has_content_type {
        return Err(ApiError::unsupported_media_type(
            "The request has a body but no Content-Type; send application/json.",
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("Malformed JSON body: {e}.")))
}

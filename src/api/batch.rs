//! `POST /api/batch`: PocketBase's transactional batch of record writes.

use std::sync::Arc;

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use poem::http::{header, StatusCode};
use poem::web::Data;
use poem::{handler, Body, Request, Response};
use serde_json::{json, Map, Value};

use super::body::json_object;
use super::error::ApiError;
use super::files::discard_temps;
use super::openapi::{op, r};
use super::{caller, json_response, Routes};
use crate::app::App;
use crate::files::upload::{self, TempFiles, UploadLimits};
use crate::files::FilesError;
use crate::records::batch::BatchOp;
use crate::records::field::FieldKind;
use crate::util::invalid::Invalid;

/// The message of every malformed batch envelope.
const UNREADABLE: &str = "Failed to read the batch.";

#[handler]
pub async fn batch(req: &Request, body: Body, Data(app): Data<&Arc<App>>) -> Result<Response, ApiError> {
    let (who, info) = caller(app, req).await;
    let boundary = req.header(header::CONTENT_TYPE).and_then(upload::boundary);
    let (ops, temps) = match boundary {
        None => {
            let body = json_object(req, body, app.body_limits()).await?;
            (ops_of(&body)?, TempFiles::default())
        }
        Some(boundary) => form_ops(app, req, body, boundary).await?,
    };
    let replies = app.records.batch(&who, ops, &info, app.config.limits.max_batch_requests).await;
    discard_temps(temps).await;
    let out: Vec<Value> = replies?.into_iter().map(|r| json!({"status": r.status, "body": r.body})).collect();
    Ok(json_response(StatusCode::OK, &Value::Array(out)))
}

/// The sub-requests of a batch body (`{"requests": [...]}`), without files.
fn ops_of(body: &Map<String, Value>) -> Result<Vec<BatchOp>, ApiError> {
    let requests = match body.get("requests") {
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(Invalid::field(
                UNREADABLE,
                "requests",
                "validation_invalid_value",
                "Must be a list of requests.",
            )
            .into())
        }
        None => {
            return Err(
                Invalid::field(UNREADABLE, "requests", "validation_required", "Cannot be blank.").into()
            )
        }
    };
    let mut ops = Vec::with_capacity(requests.len());
    for (i, item) in requests.iter().enumerate() {
        let method = item.get("method").and_then(Value::as_str);
        let url = item.get("url").and_then(Value::as_str);
        let (Some(method), Some(url)) = (method, url) else {
            let message = "Each request needs a method and a url.";
            return Err(Invalid::field(
                UNREADABLE,
                &format!("requests.{i}"),
                "validation_invalid_value",
                message,
            )
            .into());
        };
        let body = match item.get("body") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map.clone(),
            Some(_) => {
                let field = format!("requests.{i}.body");
                return Err(Invalid::field(
                    UNREADABLE,
                    &field,
                    "validation_invalid_value",
                    "Must be a JSON object.",
                )
                .into());
            }
        };
        ops.push(BatchOp { method: method.to_string(), url: url.to_string(), body, uploads: Vec::new() });
    }
    Ok(ops)
}

/// The sub-requests of a multipart batch (the JS SDK's shape): `@jsonPayload` holds
/// `{"requests": [...]}` and each file part named `requests.N.key` is an upload of request
/// N under `key` (`field`, `field+` or `+field`), as in a single multipart write. Files are
/// checked against their field (size, types); a part for no file field is a field error.
async fn form_ops(
    app: &App,
    req: &Request,
    body: Body,
    boundary: String,
) -> Result<(Vec<BatchOp>, TempFiles), ApiError> {
    let limit = app.config.files.max_upload_bytes;
    let declared = req.header(header::CONTENT_LENGTH).and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        super::body::discard(body, Duration::from_secs(2)).await;
        return Err(FilesError::TooLarge {
            detail: format!("The request body exceeds the limit of {limit} bytes."),
            fields: Default::default(),
        }
        .into());
    }
    let flag = Arc::new(AtomicBool::new(false));
    let limited = upload::limited(Box::pin(body.into_bytes_stream()), limit, flag.clone());
    let limits = UploadLimits { max_body_bytes: limit, max_text_bytes: app.config.limits.max_body_bytes };
    let deadline = Duration::from_secs(app.config.limits.body_timeout_secs.max(1));
    let parse = upload::parse_batch_form(limited, boundary, app.files.tmp_dir(), limits, flag);
    let form =
        tokio::time::timeout(deadline, parse).await.map_err(|_| ApiError::from(FilesError::Timeout))??;
    let temps = form.temps;
    let attached = attach(app, form.payload, form.files);
    match attached {
        Ok(ops) => Ok((ops, temps)),
        Err(e) => {
            discard_temps(temps).await;
            Err(e)
        }
    }
}

/// The payload's sub-requests with each file attached to its request's body and uploads.
fn attach(
    app: &App,
    payload: Option<Map<String, Value>>,
    files: Vec<(String, crate::records::files::Upload)>,
) -> Result<Vec<BatchOp>, ApiError> {
    let Some(payload) = payload else {
        return Err(
            Invalid::field(UNREADABLE, "@jsonPayload", "validation_required", "Cannot be blank.").into()
        );
    };
    let mut ops = ops_of(&payload)?;
    for (part, file) in files {
        let bad = |message: &str| -> ApiError {
            Invalid::field(UNREADABLE, &part, "validation_invalid_file", message).into()
        };
        let target = part.strip_prefix("requests.").and_then(|rest| rest.split_once('.'));
        let Some((index, key)) = target else {
            return Err(bad("File parts are named requests.N.field."));
        };
        let Some(op) = index.parse::<usize>().ok().and_then(|i| ops.get_mut(i)) else {
            return Err(bad("No request with this index."));
        };
        let field_name = key.trim_start_matches('+').trim_end_matches('+');
        let options = crate::records::batch::collection_in_url(&op.url)
            .and_then(|c| app.records.collection(&c).ok())
            .and_then(|entry| {
                entry.collection.fields.iter().find_map(|f| match &f.kind {
                    FieldKind::File(o) if f.name == field_name => Some(o.clone()),
                    _ => None,
                })
            });
        let Some(options) = options else {
            return Err(bad("Not a file field of the request's collection."));
        };
        let file = upload::batch_upload(file, field_name, &options, &part)?;
        let slot = op.body.entry(key.to_string()).or_insert(Value::Null);
        let mut list = match slot.take() {
            Value::Null => Vec::new(),
            Value::String(s) if s.is_empty() => Vec::new(),
            Value::Array(items) => items,
            other => vec![other],
        };
        list.push(Value::String(file.name.clone()));
        *slot = Value::Array(list);
        op.uploads.push(file);
    }
    Ok(ops)
}

/// `POST /api/batch`.
pub(super) fn routes(api: Routes) -> Routes {
    api.at("/api/batch", |m| {
        m.post(
            batch,
            op(
                "batch",
                "Apply several record writes all-or-nothing in one transaction",
                "records",
                vec![],
                Some(r("BatchRequest")),
                (200, Some(r("BatchResponse"))),
                &[400, 403, 413, 415, 503, 507],
            ),
        )
    })
}

/// Schemas of the batch request and answer.
pub(super) fn schemas() -> Value {
    json!({
        "BatchRequest": {
            "type": "object",
            "required": ["requests"],
            "properties": {
                "requests": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["method", "url"],
                        "properties": {
                            "method": {"type": "string", "enum": ["POST", "PUT", "PATCH", "DELETE"]},
                            "url": {"type": "string", "examples": ["/api/collections/posts/records"]},
                            "body": {"type": "object", "additionalProperties": true}
                        }
                    }
                }
            }
        },
        "BatchResponse": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["status", "body"],
                "properties": {"status": {"type": "integer"}, "body": {}}
            }
        },
    })
}

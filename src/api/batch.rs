//! `POST /api/batch`: PocketBase's transactional batch of record writes.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Body, Request, Response};
use serde_json::{json, Value};

use super::body::json_object;
use super::error::ApiError;
use super::openapi::{op, r};
use super::{caller, json_response, Routes};
use crate::app::App;
use crate::records::batch::BatchOp;
use crate::util::invalid::Invalid;

/// The message of every malformed batch envelope.
const UNREADABLE: &str = "Failed to read the batch.";

#[handler]
pub async fn batch(req: &Request, body: Body, Data(app): Data<&Arc<App>>) -> Result<Response, ApiError> {
    let (who, info) = caller(app, req).await;
    let body = json_object(req, body, app.body_limits()).await?;
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
            None | Some(Value::Null) => serde_json::Map::new(),
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
        ops.push(BatchOp { method: method.to_string(), url: url.to_string(), body });
    }
    let replies = app.records.batch(&who, ops, &info, app.config.limits.max_batch_requests).await?;
    let out: Vec<Value> = replies.into_iter().map(|r| json!({"status": r.status, "body": r.body})).collect();
    Ok(json_response(StatusCode::OK, &Value::Array(out)))
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

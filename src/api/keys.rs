//! API keys (`/api/keys`) and the audit log (`/api/audit`): superusers only.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::{Data, Path, Query};
use poem::{handler, Body, Request, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::access::superuser;
use super::body::json_object;
use super::collections::page_number;
use super::error::ApiError;
use super::guard::client_ip;
use super::jobs::envelope;
use super::openapi::{list_envelope, op, page_params, path_param, query_param, r};
use super::{json_response, Routes};
use crate::app::App;
use crate::audit::{self, Actor};

#[handler]
pub async fn list(req: &Request, Data(app): Data<&Arc<App>>) -> Result<Response, ApiError> {
    superuser(app, req).await?;
    let items: Vec<Value> = app.auth.keys.list().iter().map(|k| k.to_json(&app.records)).collect();
    let total = items.len();
    Ok(json_response(StatusCode::OK, &envelope(1, total.max(1), total, items)))
}

/// Creates a key; the answer holds the secret `key`, which is never shown again.
#[handler]
pub async fn create(req: &Request, body: Body, Data(app): Data<&Arc<App>>) -> Result<Response, ApiError> {
    let who = superuser(app, req).await?;
    let body = json_object(req, body, app.body_limits()).await?;
    let (key, secret) = app.auth.keys.create(&app.records, &body, Actor::of(&who), &client_ip(req)).await?;
    let mut out = key.to_json(&app.records);
    if let Some(map) = out.as_object_mut() {
        map.insert("key".into(), Value::String(secret));
    }
    Ok(json_response(StatusCode::CREATED, &out))
}

#[handler]
pub async fn view(
    req: &Request,
    Path(id): Path<String>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    superuser(app, req).await?;
    let key =
        app.auth.keys.get(&id).ok_or_else(|| ApiError::not_found("The requested API key wasn't found."))?;
    Ok(json_response(StatusCode::OK, &key.to_json(&app.records)))
}

/// Revokes a key at once.
#[handler]
pub async fn revoke(
    req: &Request,
    Path(id): Path<String>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let who = superuser(app, req).await?;
    if !app.auth.keys.revoke(&id, Actor::of(&who), &client_ip(req)).await? {
        return Err(ApiError::not_found("The requested API key wasn't found."));
    }
    Ok(Response::builder().status(StatusCode::NO_CONTENT).finish())
}

/// Audit listing parameters.
#[derive(Debug, Default, Deserialize)]
pub struct AuditParams {
    page: Option<String>,
    #[serde(rename = "perPage")]
    per_page: Option<String>,
    action: Option<String>,
    outcome: Option<String>,
    actor: Option<String>,
    target: Option<String>,
}

/// The audit log, newest first, filtered by `action` (prefix at dots), `outcome`, `actor`
/// (id) and `target`.
#[handler]
pub async fn audit_log(
    req: &Request,
    Query(q): Query<AuditParams>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    superuser(app, req).await?;
    let page = page_number(q.page.as_deref(), 1, "page")?;
    let per_page = page_number(q.per_page.as_deref(), 30, "perPage")?.min(500);
    let query = audit::Query {
        action: q.action.filter(|s| !s.is_empty()),
        outcome: q.outcome.filter(|s| !s.is_empty()),
        actor_id: q.actor.filter(|s| !s.is_empty()),
        target: q.target.filter(|s| !s.is_empty()),
        page,
        per_page,
    };
    let (items, total) = app.store.read(move |tx| audit::list(tx, &query)).await?;
    let items = items.into_iter().map(|e| serde_json::to_value(e).unwrap_or(Value::Null)).collect();
    Ok(json_response(StatusCode::OK, &envelope(page, per_page, total, items)))
}

/// `/api/keys` and `/api/audit`.
pub(super) fn routes(api: Routes) -> Routes {
    api.at("/api/keys", |m| {
        m.get(
            list,
            op("listApiKeys", "API keys, without their secrets (superusers)", "keys", vec![], None, (200, Some(r("ApiKeyList"))), &[401, 403]),
        )
        .post(
            create,
            op("createApiKey", "Create an API key; the answer holds its secret once (superusers)", "keys", vec![], Some(r("ApiKeyInput")), (201, Some(r("ApiKeyCreated"))), &[400, 401, 403, 413, 415, 503, 507]),
        )
    })
    .at("/api/keys/:id", |m| {
        m.get(
            view,
            op("getApiKey", "One API key (superusers)", "keys", vec![path_param("id", "Key id.")], None, (200, Some(r("ApiKey"))), &[401, 403, 404]),
        )
        .delete(
            revoke,
            op("revokeApiKey", "Revoke an API key at once (superusers)", "keys", vec![path_param("id", "Key id.")], None, (204, None), &[401, 403, 404, 503, 507]),
        )
    })
    .at("/api/audit", |m| {
        m.get(
            audit_log,
            op("auditLog", "Audit log, newest first: sign-ins, sign-outs, impersonations, key, schema and settings changes (superusers)", "audit", [vec![
                query_param("action", "Action or its dotted prefix (auth matches auth.login).", json!({"type": "string"})),
                query_param("outcome", "success or failure.", json!({"type": "string"})),
                query_param("actor", "Actor id.", json!({"type": "string"})),
                query_param("target", "Target (record id, collection id, identity).", json!({"type": "string"})),
            ], page_params()].concat(), None, (200, Some(r("AuditList"))), &[400, 401, 403]),
        )
    })
}

/// Schemas of API keys and the audit log.
pub(super) fn schemas() -> Value {
    let key_props = json!({
        "id": {"type": "string"},
        "name": {"type": "string"},
        "scopes": {"type": "array", "items": {
            "type": "object",
            "properties": {
                "collection": {"type": "string", "description": "Collection id, or * for every collection."},
                "collectionName": {"type": "string"},
                "operations": {"type": "array", "items": {"enum": ["list", "view", "create", "update", "delete"]}}
            }
        }},
        "capabilities": {"type": "array", "items": {"enum": ["mail.send", "metrics.read"]}},
        "expires": {"type": "string", "description": "Expiry; empty = never."},
        "created": {"type": "string"},
        "createdBy": {"type": "string"},
        "lastUsed": {"type": "string", "description": "Last use (recorded at most once a minute); empty = never."}
    });
    let mut created_props = key_props.clone();
    created_props["key"] = json!({"type": "string", "description": "The secret key, `bbk_<id>_<secret>`: shown only in this answer."});
    json!({
        "ApiKeyInput": {
            "type": "object",
            "additionalProperties": false,
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "maxLength": 200},
                "scopes": {"type": "object", "additionalProperties": {"type": "array", "items": {"enum": ["list", "view", "create", "update", "delete"]}}, "description": "Collection name or id (or *) → operations."},
                "capabilities": {"type": "array", "items": {"enum": ["mail.send", "metrics.read"]}},
                "expires": {"type": "string", "description": "A future date; absent = never."}
            }
        },
        "ApiKey": {"type": "object", "properties": key_props},
        "ApiKeyCreated": {"type": "object", "properties": created_props},
        "ApiKeyList": list_envelope(r("ApiKey")),
        "AuditEntry": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "time": {"type": "string"},
                "action": {"type": "string", "examples": ["auth.login", "auth.logout", "auth.impersonate", "collection.update", "settings.update", "apikey.create"]},
                "outcome": {"enum": ["success", "failure"]},
                "actor": {"type": "object", "properties": {"type": {"type": "string"}, "id": {"type": "string"}, "collectionId": {"type": "string"}}},
                "ip": {"type": "string"},
                "target": {"type": "string"},
                "detail": {}
            }
        },
        "AuditList": list_envelope(r("AuditEntry")),
    })
}

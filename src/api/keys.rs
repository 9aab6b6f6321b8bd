//! API keys (`/api/keys`) and the audit log (`/api/audit`): superusers only.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::{Data, Path, Query};
use poem::{handler, Body, Request, Response};
use serde::Deserialize;
use serde_json::Value;

use super::access::superuser;
use super::body::json_object;
use super::collections::page_number;
use super::error::ApiError;
use super::guard::client_ip;
use super::jobs::envelope;
use super::json_response;
use crate::app::App;
use crate::observe::audit::{self, Actor};

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

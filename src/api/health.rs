//! Liveness and readiness.

use std::sync::Arc;

use poem::http::{Method, StatusCode};
use poem::web::Data;
use poem::{handler, IntoResponse, Request, Response};
use serde_json::json;

use super::error::ApiError;
use super::openapi::op;
use super::{json_response, Routes};
use crate::app::App;

/// Liveness: the process answers.
#[handler]
pub async fn health() -> Response {
    json_response(StatusCode::OK, &json!({"code": 200, "message": "API is healthy.", "data": {}}))
}

/// Readiness: storage writable, job workers running, enough free disk. Superusers see
/// each check's detail; everyone else sees only the verdict.
#[handler]
pub async fn ready(req: &Request, Data(app): Data<&Arc<App>>) -> Response {
    let checks = app.readiness().await;
    let ready = checks.iter().all(|c| c.ok);
    let detailed = app.auth.principal(req.header("Authorization")).await.is_superuser();
    if ready {
        let mut body = json!({"ready": true, "storage": "writable"});
        if detailed {
            body["checks"] = crate::observe::health::to_json(&checks);
        }
        return json_response(StatusCode::OK, &body);
    }
    let failed: Vec<&str> = checks.iter().filter(|c| !c.ok).map(|c| c.name).collect();
    let mut err = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "Not ready",
        format!("Failing checks: {}.", failed.join(", ")),
    );
    err.data.insert("ready".into(), json!(false));
    if detailed {
        err.data.insert("checks".into(), crate::observe::health::to_json(&checks));
    }
    err.retry_after = Some(1);
    err.into_response()
}

/// `/api/health` (also `HEAD`) and `/api/ready`.
pub(super) fn routes(api: Routes) -> Routes {
    api.at("/api/health", |m| {
        m.get(
            health,
            op("health", "Liveness check", "health", vec![], None, (200, Some(json!({"type": "object"}))), &[]),
        )
        .undocumented(Method::HEAD, health)
    })
    .at("/api/ready", |m| {
        m.get(
            ready,
            op("ready", "Readiness: storage writable, job workers running, free disk above [observe] ready_min_disk_free_mb, search indexer running; superusers also get each check's detail", "health", vec![], None, (200, Some(json!({"type": "object", "properties": {"ready": {"type": "boolean"}, "checks": {"type": "object", "additionalProperties": {"type": "object", "properties": {"ok": {"type": "boolean"}, "detail": {"type": "string"}}}}}}))), &[503]),
        )
    })
}

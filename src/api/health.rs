//! Liveness and readiness.

use std::sync::Arc;
use std::time::Duration;

use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, IntoResponse, Response};
use serde_json::json;

use super::error::ApiError;
use super::json_response;
use crate::app::App;

/// Liveness: the process answers.
#[handler]
pub async fn health() -> Response {
    json_response(StatusCode::OK, &json!({"code": 200, "message": "API is healthy.", "data": {}}))
}

/// Readiness: the data file is open and a durable write goes through within 2 s.
#[handler]
pub async fn ready(Data(app): Data<&Arc<App>>) -> Response {
    let probe = tokio::time::timeout(Duration::from_secs(2), app.probe_write()).await;
    match probe {
        Ok(Ok(())) => json_response(StatusCode::OK, &json!({"ready": true, "storage": "writable"})),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness probe failed");
            not_ready("Storage is not writable.")
        }
        Err(_) => not_ready("Storage did not answer within 2 seconds."),
    }
}

fn not_ready(detail: &str) -> Response {
    let mut err = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Not ready", detail);
    err.data.insert("ready".into(), json!(false));
    err.retry_after = Some(1);
    err.into_response()
}

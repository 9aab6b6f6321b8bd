//! Sign-in, token refresh, first-superuser setup, and the socket-only superuser upsert.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::{Data, Path};
use poem::{handler, Body, Request, Response};
use serde_json::{json, Map, Value};

use super::body::json_object;
use super::error::ApiError;
use super::{json_response, principal};
use crate::app::App;
use crate::auth::Session;
use crate::records::{FieldError, FieldErrors};

/// A required string member of a JSON body, or a validation error naming it.
fn required_string(body: &Map<String, Value>, name: &str, errors: &mut FieldErrors) -> String {
    match body.get(name) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            errors.insert(name.into(), FieldError::new("validation_required", "Cannot be blank."));
            String::new()
        }
        Some(_) => {
            errors.insert(name.into(), FieldError::new("validation_invalid_type", "Must be a string."));
            String::new()
        }
    }
}

fn session_response(session: Session) -> Response {
    json_response(StatusCode::OK, &json!({"token": session.token, "record": session.record}))
}

#[handler]
pub async fn auth_with_password(
    req: &Request,
    Path(collection): Path<String>,
    body: Body,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    app.records.collection(&collection)?;
    let body = json_object(req, body, app.body_limits()).await?;
    let mut errors = FieldErrors::new();
    let identity = required_string(&body, "identity", &mut errors);
    let password = required_string(&body, "password", &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation("Failed to authenticate.", &errors));
    }
    let session = app.auth.login(&collection, &identity, &password).await?;
    Ok(session_response(session))
}

#[handler]
pub async fn auth_refresh(
    req: &Request,
    Path(collection): Path<String>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let who = principal(app, req).await;
    let session = app.auth.refresh(&who, &collection).await?;
    Ok(session_response(session))
}

/// Whether the first superuser still has to be created.
#[handler]
pub async fn setup_status(Data(app): Data<&Arc<App>>) -> Result<Response, ApiError> {
    let needed = app.auth.setup_needed().await?;
    Ok(json_response(StatusCode::OK, &json!({"setupRequired": needed})))
}

/// Creates the first superuser with the one-time token printed at startup.
#[handler]
pub async fn setup(req: &Request, body: Body, Data(app): Data<&Arc<App>>) -> Result<Response, ApiError> {
    let body = json_object(req, body, app.body_limits()).await?;
    let mut errors = FieldErrors::new();
    let token = required_string(&body, "token", &mut errors);
    let email = required_string(&body, "email", &mut errors);
    let password = required_string(&body, "password", &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation("Failed to create the superuser.", &errors));
    }
    let session = app.auth.complete_setup(&token, &email, &password).await?;
    Ok(session_response(session))
}

/// `backbone superuser upsert` while the server runs (unix socket only).
#[handler]
pub async fn socket_superuser_upsert(
    req: &Request,
    body: Body,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let body = json_object(req, body, app.body_limits()).await?;
    let mut errors = FieldErrors::new();
    let email = required_string(&body, "email", &mut errors);
    let password = required_string(&body, "password", &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation("Failed to upsert the superuser.", &errors));
    }
    let record = app.auth.upsert_superuser(&email, &password).await?;
    Ok(json_response(StatusCode::OK, &record))
}

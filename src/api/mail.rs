//! `/api/settings` (mail settings, PocketBase's shape), `/api/settings/test/email`,
//! `/api/mail/send` and `/api/mail/log` — superusers only — plus the admin-socket route
//! behind `backbone send-test-email`.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::{Data, Path, Query};
use poem::{handler, Body, Request, Response};
use serde::Deserialize;

use super::body::json_object;
use super::error::ApiError;
use super::guard::client_ip;
use super::jobs::accepted;
use super::{json_response, principal};
use crate::app::App;
use crate::audit::{Actor, Event};
use crate::auth::Principal;
use crate::mail::{test_email_input, MailId, OutgoingMail};

/// Query parameters of `GET /api/mail/log`.
#[derive(Debug, Default, Deserialize)]
pub struct LogParams {
    state: Option<String>,
    to: Option<String>,
    page: Option<String>,
    #[serde(rename = "perPage")]
    per_page: Option<String>,
}

/// The API key capability that allows `POST /api/mail/send`.
const CAPABILITY_MAIL_SEND: &str = crate::accounts::keys::MAIL_SEND;

/// Who may configure email and read its log: superusers.
async fn require_superuser(app: &App, req: &Request) -> Result<(), ApiError> {
    require(app, req, None).await
}

/// Superusers, or API keys holding `capability` when one is given.
async fn require(app: &App, req: &Request, capability: Option<&str>) -> Result<(), ApiError> {
    match principal(app, req).await {
        Principal::Superuser { .. } => Ok(()),
        Principal::ApiKey { scopes, .. }
            if capability.is_some_and(|c| scopes.capabilities.iter().any(|k| k == c)) =>
        {
            Ok(())
        }
        Principal::Anonymous => Err(ApiError::unauthenticated("Sign in as a superuser to manage email.")),
        Principal::Record { .. } | Principal::ApiKey { .. } => {
            Err(ApiError::forbidden("Only superusers can perform this action."))
        }
    }
}

/// `202 Accepted` with the email's job.
async fn queued(app: &App, id: MailId) -> Result<Response, ApiError> {
    let job = app.jobs.get(id.0).await?;
    Ok(accepted(&job, StatusCode::ACCEPTED))
}

#[handler]
pub async fn settings_view(req: &Request, Data(app): Data<&Arc<App>>) -> Result<Response, ApiError> {
    require_superuser(app, req).await?;
    Ok(json_response(StatusCode::OK, &app.mail.settings().to_json()))
}

#[handler]
pub async fn settings_update(
    req: &Request,
    body: Body,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    require_superuser(app, req).await?;
    let patch = json_object(req, body, app.body_limits()).await?;
    let who = principal(app, req).await;
    let event = Event::new("settings.update", Actor::of(&who), &client_ip(req), "mail");
    let (settings, change) = app.mail.update_settings(patch, Some(event)).await?;
    if !change.changed.is_empty() {
        tracing::info!(changed = ?change.changed, "settings changed");
    }
    Ok(json_response(StatusCode::OK, &settings.to_json()))
}

#[handler]
pub async fn test_email(req: &Request, body: Body, Data(app): Data<&Arc<App>>) -> Result<Response, ApiError> {
    require_superuser(app, req).await?;
    let body = json_object(req, body, app.body_limits()).await?;
    let (email, template) = test_email_input(&body)?;
    let id = app.mail.send_test(&email, template.as_deref()).await?;
    queued(app, id).await
}

#[handler]
pub async fn send(req: &Request, body: Body, Data(app): Data<&Arc<App>>) -> Result<Response, ApiError> {
    require(app, req, Some(CAPABILITY_MAIL_SEND)).await?;
    let body = json_object(req, body, app.body_limits()).await?;
    let mail = OutgoingMail::from_json(&body)?;
    let id = app.mail.enqueue(mail).await?;
    queued(app, id).await
}

#[handler]
pub async fn log(
    req: &Request,
    Query(q): Query<LogParams>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    require_superuser(app, req).await?;
    let (page, per_page, total, items) =
        app.mail.log(q.state.as_deref(), q.to.as_deref(), q.page.as_deref(), q.per_page.as_deref()).await?;
    Ok(json_response(StatusCode::OK, &super::jobs::envelope(page, per_page, total, items)))
}

#[handler]
pub async fn log_view(
    req: &Request,
    Path(id): Path<String>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    require_superuser(app, req).await?;
    let not_found = || ApiError::not_found("The requested email wasn't found.");
    let id = id.parse::<u64>().map_err(|_| not_found())?;
    match app.mail.log_entry(MailId(id)).await? {
        Some(row) => Ok(json_response(StatusCode::OK, &row)),
        None => Err(not_found()),
    }
}

/// `backbone send-test-email` through the admin socket: `{email, template?}`.
#[handler]
pub async fn socket_test_email(
    req: &Request,
    body: Body,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let body = json_object(req, body, app.body_limits()).await?;
    let (email, template) = test_email_input(&body)?;
    let id = app.mail.send_test(&email, template.as_deref()).await?;
    queued(app, id).await
}

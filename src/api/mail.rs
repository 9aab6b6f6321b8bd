//! `/api/settings` (mail settings, PocketBase's shape), `/api/settings/test/email`,
//! `/api/mail/send` and `/api/mail/log` — superusers only — plus the admin-socket route
//! behind `backbone send-test-email`.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::{Data, Path, Query};
use poem::{handler, Body, Request, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::access::{superuser, superuser_or_key_with, MAIL_SEND};
use super::body::json_object;
use super::error::ApiError;
use super::guard::client_ip;
use super::jobs::accepted;
use super::jobs::job_id_param;
use super::openapi::{accepted_job, list_envelope, op, page_params, query_param, r};
use super::{json_response, Routes};
use crate::app::App;
use crate::audit::{Actor, Event};
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

/// `202 Accepted` with the email's job.
async fn queued(app: &App, id: MailId) -> Result<Response, ApiError> {
    let job = app.jobs.get(id.0).await?;
    Ok(accepted(&job, StatusCode::ACCEPTED))
}

#[handler]
pub async fn settings_view(req: &Request, Data(app): Data<&Arc<App>>) -> Result<Response, ApiError> {
    superuser(app, req).await?;
    Ok(json_response(StatusCode::OK, &app.mail.settings().to_json()))
}

#[handler]
pub async fn settings_update(
    req: &Request,
    body: Body,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let who = superuser(app, req).await?;
    let patch = json_object(req, body, app.body_limits()).await?;
    let event = Event::new("settings.update", Actor::of(&who), &client_ip(req), "mail");
    let (settings, change) = app.mail.update_settings(patch, Some(event)).await?;
    if !change.changed.is_empty() {
        tracing::info!(changed = ?change.changed, "settings changed");
    }
    Ok(json_response(StatusCode::OK, &settings.to_json()))
}

#[handler]
pub async fn test_email(req: &Request, body: Body, Data(app): Data<&Arc<App>>) -> Result<Response, ApiError> {
    superuser(app, req).await?;
    let body = json_object(req, body, app.body_limits()).await?;
    let (email, template) = test_email_input(&body)?;
    let id = app.mail.send_test(&email, template.as_deref()).await?;
    queued(app, id).await
}

#[handler]
pub async fn send(req: &Request, body: Body, Data(app): Data<&Arc<App>>) -> Result<Response, ApiError> {
    superuser_or_key_with(app, req, &MAIL_SEND).await?;
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
    superuser(app, req).await?;
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
    superuser(app, req).await?;
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

/// `/api/settings`, its test email, `/api/mail/send` and the delivery log.
pub(super) fn routes(api: Routes) -> Routes {
    api.at("/api/settings", |m| {
        m.get(
            settings_view,
            op("getSettings", "Mail settings: meta, smtp (no password) and template overrides (superusers)", "settings", vec![], None, (200, Some(r("Settings"))), &[401, 403]),
        )
        .patch(
            settings_update,
            op("updateSettings", "Change mail settings; only the given keys change (superusers)", "settings", vec![], Some(r("SettingsInput")), (200, Some(r("Settings"))), &[400, 401, 403, 413, 415, 503, 507]),
        )
    })
    .at("/api/settings/test/email", |m| {
        m.post(
            test_email,
            queue_mail_op("testEmail", "Queue a test email with the current settings (superusers); 400 while SMTP is disabled", "settings", "TestEmailInput"),
        )
    })
    .at("/api/mail/send", |m| {
        m.post(
            send,
            queue_mail_op("sendMail", "Queue a templated or raw email through the outbox (superusers, or API keys with the mail.send capability)", "mail", "MailSendInput"),
        )
    })
    .at("/api/mail/log", |m| {
        m.get(
            log,
            op("mailLog", "Delivery log, newest first (superusers)", "mail", [vec![
                query_param("state", "queued, sending, sent, retrying, dead or cancelled.", json!({"type": "string"})),
                query_param("to", "Recipient address (exact, case-insensitive).", json!({"type": "string"})),
            ], page_params()].concat(), None, (200, Some(r("MailLogList"))), &[400, 401, 403]),
        )
    })
    .at("/api/mail/log/:id", |m| {
        m.get(
            log_view,
            op("mailLogEntry", "One email's delivery record (superusers); the id is its job id", "mail", vec![job_id_param()], None, (200, Some(r("MailLogEntry"))), &[401, 403, 404]),
        )
    })
}

/// An operation that queues an email: 202 with its job.
fn queue_mail_op(id: &str, summary: &str, tag: &str, body: &str) -> Value {
    let errors = [400, 401, 403, 413, 415, 503, 507];
    accepted_job(op(id, summary, tag, vec![], Some(r(body)), (202, Some(r("Job"))), &errors), None)
}

/// Schemas of mail settings, sending and the delivery log.
pub(super) fn schemas() -> Value {
    let template_names =
        json!(["verification", "password-reset", "email-change", "otp", "export-ready", "alert"]);
    let variant = json!({
        "type": "object",
        "required": ["subject", "text"],
        "properties": {
            "subject": {"type": "string", "description": "No line breaks."},
            "text": {"type": "string"},
            "html": {"type": "string"}
        },
        "additionalProperties": false
    });
    let meta = |required: bool| {
        let mut m = json!({
            "type": "object",
            "properties": {
                "appName": {"type": "string"},
                "appURL": {"type": "string"},
                "senderName": {"type": "string"},
                "senderAddress": {"type": "string", "format": "email"}
            },
            "additionalProperties": false
        });
        if required {
            m["required"] = json!(["appName", "appURL", "senderName", "senderAddress"]);
        }
        m
    };
    let smtp_properties = json!({
        "enabled": {"type": "boolean"},
        "host": {"type": "string"},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "username": {"type": "string"},
        "authMethod": {"type": "string", "enum": ["PLAIN", "LOGIN"]},
        "tls": {"type": "boolean", "description": "PocketBase's flag: implicit TLS (same as security = tls)."},
        "security": {"type": "string", "enum": ["tls", "starttls", "none"]},
        "localName": {"type": "string"},
        "timeoutSecs": {"type": "integer", "minimum": 1, "maximum": 600}
    });
    let mut smtp_input = smtp_properties.clone();
    smtp_input["password"] =
        json!({"type": "string", "writeOnly": true, "description": "Write-only: never returned."});
    json!({
        "Settings": {
            "type": "object",
            "required": ["meta", "smtp", "templates"],
            "properties": {
                "meta": meta(true),
                "smtp": {
                    "type": "object",
                    "required": ["enabled", "host", "port", "username", "authMethod", "tls", "security", "localName", "timeoutSecs"],
                    "properties": smtp_properties,
                    "description": "The password is never returned."
                },
                "templates": {
                    "type": "object",
                    "description": "Overrides: template name → locale (lower case, or default) → variant.",
                    "propertyNames": {"enum": template_names},
                    "additionalProperties": {"type": "object", "additionalProperties": variant}
                }
            }
        },
        "SettingsInput": {
            "type": "object",
            "description": "Only the given keys change. templates.<name> = null removes all its variants; templates.<name>.<locale> = null removes one.",
            "properties": {
                "meta": meta(false),
                "smtp": {"type": "object", "properties": smtp_input, "additionalProperties": false},
                "templates": {
                    "type": "object",
                    "propertyNames": {"enum": template_names},
                    "additionalProperties": {"type": ["object", "null"], "additionalProperties": {"oneOf": [variant, {"type": "null"}]}}
                }
            },
            "additionalProperties": false
        },
        "TestEmailInput": {
            "type": "object",
            "required": ["email"],
            "properties": {
                "email": {"type": "string", "format": "email"},
                "template": {"type": "string", "enum": ["verification", "password-reset", "email-change", "otp", "export-ready", "alert", "login-alert"]},
                "collection": {"type": "string", "description": "Accepted for PocketBase compatibility; ignored."}
            },
            "additionalProperties": false
        },
        "MailSendInput": {
            "type": "object",
            "required": ["to"],
            "description": "Either template (+ vars) or subject + text (+ html). Line breaks in header values (to, toName, subject) are refused.",
            "properties": {
                "to": {"type": "string", "format": "email"},
                "toName": {"type": "string"},
                "locale": {"type": "string", "description": "Picks the template variant: exact, then language, then default."},
                "template": {"type": "string", "enum": template_names},
                "vars": {"type": "object", "description": "Template variables, e.g. token, otp, actionURL, record (object)."},
                "subject": {"type": "string"},
                "text": {"type": "string"},
                "html": {"type": "string"}
            },
            "additionalProperties": false
        },
        "MailLogEntry": {
            "type": "object",
            "required": ["id", "jobId", "to", "subject", "state", "attempts", "created", "updated"],
            "properties": {
                "id": {"type": "string", "pattern": "^[0-9]+$"},
                "jobId": {"type": "string", "pattern": "^[0-9]+$"},
                "to": {"type": "string"},
                "toName": {"type": ["string", "null"]},
                "subject": {"type": "string"},
                "template": {"type": ["string", "null"]},
                "locale": {"type": ["string", "null"]},
                "state": {"type": "string", "enum": ["queued", "sending", "sent", "retrying", "dead", "cancelled"]},
                "attempts": {"type": "integer"},
                "lastReply": {"type": ["string", "null"], "description": "The SMTP server's last reply, or why the attempt failed."},
                "created": {"type": "string"},
                "updated": {"type": "string"},
                "sentAt": {"type": ["string", "null"]}
            }
        },
        "MailLogList": list_envelope(r("MailLogEntry"))
    })
}

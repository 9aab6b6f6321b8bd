//! Sign-in, token refresh, first-superuser setup, and the socket-only superuser upsert.

use std::sync::Arc;

use poem::endpoint::BoxEndpoint;
use poem::http::StatusCode;
use poem::web::{Data, Path};
use poem::{handler, Body, EndpointExt, Request, Response};
use serde_json::{json, Map, Value};

use super::access::superuser;
use super::body::json_object;
use super::error::ApiError;
use super::guard::{client_ip, too_many_requests};
use super::openapi::{collection_param, op, r, record_id_param};
use super::{caller, json_response, principal, Routes};
use crate::accounts::Session;
use crate::app::App;
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
    let entry = app.records.collection(&collection)?;
    if let Err(limited) = app.limiter.check_identity(&entry.collection.id, &identity) {
        return Err(too_many_requests(limited.retry_after_secs));
    }
    let (_, mut info) = caller(app, req).await;
    info.body = body.clone();
    info.body.remove("password");
    let session = app.auth.login(&collection, &identity, &password, &info, &client_ip(req)).await?;
    Ok(session_response(session))
}

/// Which sign-in methods an auth collection offers (PocketBase's shape).
#[handler]
pub async fn auth_methods(
    Path(collection): Path<String>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let entry = app.records.collection(&collection)?;
    let Some(settings) = entry.collection.auth.as_ref() else {
        return Err(ApiError::bad_request(format!("{} is not an auth collection.", entry.collection.name)));
    };
    let otp_enabled = settings.otp.enabled;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "password": {
                "enabled": settings.password_auth.enabled,
                "identityFields": settings.password_auth.identity_fields,
            },
            "oauth2": {"enabled": false, "providers": []},
            "mfa": {"enabled": false, "duration": 0},
            "otp": {"enabled": otp_enabled, "duration": if otp_enabled { settings.otp.duration } else { 0 }},
        }),
    ))
}

/// Signs out: the presented token stops working (`{"all": true}`: every token of the account).
#[handler]
pub async fn auth_logout(
    req: &Request,
    Path(collection): Path<String>,
    body: Body,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    app.records.collection(&collection)?;
    let all = if body.is_empty() {
        false
    } else {
        let body = json_object(req, body, app.body_limits()).await?;
        match body.get("all") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                let mut errors = FieldErrors::new();
                errors.insert("all".into(), FieldError::new("validation_invalid_type", "Must be a boolean."));
                return Err(ApiError::validation("Failed to sign out.", &errors));
            }
        }
    };
    app.auth.logout(req.header("Authorization"), all, &client_ip(req)).await?;
    Ok(Response::builder().status(StatusCode::NO_CONTENT).finish())
}

/// A superuser gets a non-refreshable token of another account.
#[handler]
pub async fn impersonate(
    req: &Request,
    Path((collection, id)): Path<(String, String)>,
    body: Body,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let who = superuser(app, req).await?;
    let duration = if body.is_empty() {
        None
    } else {
        let body = json_object(req, body, app.body_limits()).await?;
        match body.get("duration") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(d) => Some(d),
                None => {
                    let mut errors = FieldErrors::new();
                    errors.insert(
                        "duration".into(),
                        FieldError::new("validation_invalid_type", "Must be a whole number of seconds."),
                    );
                    return Err(ApiError::validation("Failed to impersonate.", &errors));
                }
            },
        }
    };
    let session = app.auth.impersonate(&who, &collection, &id, duration, &client_ip(req)).await?;
    Ok(session_response(session))
}

#[handler]
pub async fn auth_refresh(
    req: &Request,
    Path(collection): Path<String>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let (_, info) = caller(app, req).await;
    let session = app.auth.refresh(req.header("Authorization"), &collection, &info).await?;
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

/// `POST /superusers/{create|update|delete|otp}` on the admin socket: the CLI's other
/// superuser commands while `serve` holds the data file.
#[handler]
pub async fn socket_superuser(
    req: &Request,
    Path(action): Path<String>,
    body: Body,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let body = json_object(req, body, app.body_limits()).await?;
    let mut errors = FieldErrors::new();
    let email = required_string(&body, "email", &mut errors);
    let needs_password = matches!(action.as_str(), "create" | "update");
    let password =
        if needs_password { required_string(&body, "password", &mut errors) } else { String::new() };
    if !errors.is_empty() {
        return Err(ApiError::validation("Failed to change the superuser.", &errors));
    }
    let answer = match action.as_str() {
        "create" => app.auth.create_superuser(&email, &password).await?,
        "update" => app.auth.update_superuser(&email, &password).await?,
        "delete" => {
            app.auth.delete_superuser(&email).await?;
            json!({})
        }
        "otp" => {
            let (otp_id, code) = app.auth.superuser_otp(&email).await?;
            json!({"otpId": otp_id, "password": code})
        }
        other => return Err(ApiError::not_found(format!("No superuser action {other:?}."))),
    };
    Ok(json_response(StatusCode::OK, &answer))
}

/// Reads a JSON body and the named required strings, or a 400 naming the missing ones.
async fn strings<const N: usize>(
    req: &Request,
    body: Body,
    app: &App,
    names: [&str; N],
    message: &str,
) -> Result<[String; N], ApiError> {
    let body = json_object(req, body, app.body_limits()).await?;
    let mut errors = FieldErrors::new();
    let values = names.map(|name| required_string(&body, name, &mut errors));
    if !errors.is_empty() {
        return Err(ApiError::validation(message, &errors));
    }
    Ok(values)
}

fn no_content() -> Response {
    Response::builder().status(StatusCode::NO_CONTENT).finish()
}

/// Which email an account request sends.
#[derive(Clone, Copy)]
enum AccountMail {
    Verification,
    PasswordReset,
    Otp,
}

/// Answers an email-addressed account request at once, the same way whether or not the
/// account exists, and does the lookup and the durable mail enqueue after the answer (as
/// PocketBase does): its timing cannot reveal who has an account. Each address gets at
/// most `rate_limits.mail_per_account` such emails (429 beyond, for any address, known or
/// not), so nobody can mail-bomb an inbox from many IPs.
async fn account_mail(
    app: &Arc<App>,
    collection: &str,
    email: String,
    kind: AccountMail,
) -> Result<Option<String>, ApiError> {
    let collection_id = app.auth.account_request_target(collection, matches!(kind, AccountMail::Otp))?;
    if let Err(limited) = app.limiter.check_account_mail(&collection_id, &email) {
        return Err(too_many_requests(limited.retry_after_secs));
    }
    let otp_id = matches!(kind, AccountMail::Otp).then(|| app.auth.new_otp_id());
    let (app, answer) = (Arc::clone(app), otp_id.clone());
    tokio::spawn(async move {
        let auth = &app.auth;
        let result = match kind {
            AccountMail::Verification => auth.request_verification(&app.mail, &collection_id, &email).await,
            AccountMail::PasswordReset => {
                auth.request_password_reset(&app.mail, &collection_id, &email).await
            }
            AccountMail::Otp => {
                auth.request_otp(&app.mail, &collection_id, &email, otp_id.unwrap_or_default()).await
            }
        };
        if let Err(err) = result {
            tracing::warn!(collection = %collection_id, error = %err, "account email request failed");
        }
    });
    Ok(answer)
}

/// Emails a verification link (204 whether or not the account exists).
#[handler]
pub async fn request_verification(
    req: &Request,
    Path(collection): Path<String>,
    body: Body,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let [email] = strings(req, body, app, ["email"], "Failed to request verification.").await?;
    account_mail(app, &collection, email, AccountMail::Verification).await?;
    Ok(no_content())
}

#[handler]
pub async fn confirm_verification(
    req: &Request,
    Path(collection): Path<String>,
    body: Body,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let [token] = strings(req, body, app, ["token"], "Failed to confirm verification.").await?;
    app.auth.confirm_verification(&collection, &token).await?;
    Ok(no_content())
}

/// Emails a password-reset link (204 whether or not the account exists).
#[handler]
pub async fn request_password_reset(
    req: &Request,
    Path(collection): Path<String>,
    body: Body,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let [email] = strings(req, body, app, ["email"], "Failed to request a password reset.").await?;
    account_mail(app, &collection, email, AccountMail::PasswordReset).await?;
    Ok(no_content())
}

#[handler]
pub async fn confirm_password_reset(
    req: &Request,
    Path(collection): Path<String>,
    body: Body,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let [token, password, confirm] =
        strings(req, body, app, ["token", "password", "passwordConfirm"], "Failed to reset the password.")
            .await?;
    app.auth.confirm_password_reset(&collection, &token, &password, &confirm, &client_ip(req)).await?;
    Ok(no_content())
}

/// Emails a confirmation link to a new address (the signed-in owner only).
#[handler]
pub async fn request_email_change(
    req: &Request,
    Path(collection): Path<String>,
    body: Body,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let who = principal(app, req).await;
    let [new_email] = strings(req, body, app, ["newEmail"], "Failed to request the email change.").await?;
    app.auth.request_email_change(&app.mail, &who, &collection, &new_email).await?;
    Ok(no_content())
}

#[handler]
pub async fn confirm_email_change(
    req: &Request,
    Path(collection): Path<String>,
    body: Body,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let [token, password] =
        strings(req, body, app, ["token", "password"], "Failed to confirm the email change.").await?;
    app.auth.confirm_email_change(&collection, &token, &password, &client_ip(req)).await?;
    Ok(no_content())
}

/// Emails a one-time code; answers `{"otpId"}` whether or not the account exists.
#[handler]
pub async fn request_otp(
    req: &Request,
    Path(collection): Path<String>,
    body: Body,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let [email] = strings(req, body, app, ["email"], "Failed to request a one-time password.").await?;
    let otp_id = account_mail(app, &collection, email, AccountMail::Otp).await?.unwrap_or_default();
    Ok(json_response(StatusCode::OK, &json!({"otpId": otp_id})))
}

/// Signs in with the emailed code (`password`) for an `otpId`.
#[handler]
pub async fn auth_with_otp(
    req: &Request,
    Path(collection): Path<String>,
    body: Body,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let [otp_id, code] = strings(req, body, app, ["otpId", "password"], "Failed to authenticate.").await?;
    let entry = app.records.collection(&collection)?;
    if let Err(limited) = app.limiter.check_identity(&entry.collection.id, &format!("otp:{otp_id}")) {
        return Err(too_many_requests(limited.retry_after_secs));
    }
    let (_, info) = caller(app, req).await;
    let session = app.auth.auth_with_otp(&collection, &otp_id, &code, &info, &client_ip(req)).await?;
    Ok(session_response(session))
}

/// `/api/setup`.
pub(super) fn setup_routes(api: Routes) -> Routes {
    api.at("/api/setup", |m| {
        m.get(
            setup_status,
            op(
                "setupStatus",
                "Whether the first superuser must still be created",
                "auth",
                vec![],
                None,
                (200, Some(json!({"type": "object", "properties": {"setupRequired": {"type": "boolean"}}}))),
                &[],
            ),
        )
        .post(
            setup,
            op(
                "setup",
                "Create the first superuser with the one-time setup token",
                "auth",
                vec![],
                Some(r("SetupRequest")),
                (200, Some(r("AuthResponse"))),
                &[400, 403, 413, 415],
            ),
        )
    })
}

/// Sign-in, sign-out, impersonation and the emailed account flows of auth collections.
pub(super) fn routes(api: Routes) -> Routes {
    let mut logout = op(
        "authLogout",
        "Sign out: revoke this token (or, with all, every token of the account)",
        "auth",
        vec![collection_param()],
        Some(r("LogoutInput")),
        (204, None),
        &[400, 401, 404],
    );
    logout["requestBody"]["required"] = json!(false);
    let mut impersonation = op(
        "impersonate",
        "A non-refreshable token of another account (superusers)",
        "auth",
        vec![collection_param(), record_id_param()],
        Some(r("ImpersonateInput")),
        (200, Some(r("AuthResponse"))),
        &[400, 401, 403, 404],
    );
    impersonation["requestBody"]["required"] = json!(false);
    let api = api
        .at("/api/collections/:collection/auth-with-password", |m| {
            m.post(
                auth_with_password,
                op(
                    "authWithPassword",
                    "Sign in to an auth collection",
                    "auth",
                    vec![collection_param()],
                    Some(r("AuthWithPassword")),
                    (200, Some(r("AuthResponse"))),
                    &[400, 403, 404, 413, 415],
                ),
            )
        })
        .at("/api/collections/:collection/auth-refresh", |m| {
            m.post(
                auth_refresh,
                op(
                    "authRefresh",
                    "A fresh token for the signed-in record",
                    "auth",
                    vec![collection_param()],
                    None,
                    (200, Some(r("AuthResponse"))),
                    &[401, 404],
                ),
            )
        })
        .at("/api/collections/:collection/auth-methods", |m| {
            m.get(
                auth_methods,
                op(
                    "authMethods",
                    "Sign-in methods of an auth collection",
                    "auth",
                    vec![collection_param()],
                    None,
                    (200, Some(r("AuthMethods"))),
                    &[400, 404],
                ),
            )
        })
        .at("/api/collections/:collection/auth-logout", |m| m.post(auth_logout, logout))
        .at("/api/collections/:collection/impersonate/:id", |m| m.post(impersonate, impersonation));
    account_flows().into_iter().fold(api, |api, (template, handler, id, summary, body, ok, errs)| {
        let operation = op(id, summary, "auth", vec![collection_param()], Some(body), ok, errs);
        api.at(template, |m| m.post(handler, operation))
    })
}

/// An emailed account flow: template, handler, operation id, summary, body schema, success,
/// error statuses. Each is a `POST` with a JSON body, on an auth collection.
type AccountFlow = (
    &'static str,
    BoxEndpoint<'static>,
    &'static str,
    &'static str,
    Value,
    (u16, Option<Value>),
    &'static [u16],
);

fn account_flows() -> [AccountFlow; 8] {
    [
        (
            "/api/collections/:collection/request-verification",
            request_verification.map_to_response().boxed(),
            "requestVerification",
            "Email a verification link (204 whether or not the account exists)",
            json!({"type": "object", "required": ["email"], "properties": {"email": {"type": "string"}}}),
            (204, None),
            &[400, 404, 429],
        ),
        (
            "/api/collections/:collection/confirm-verification",
            confirm_verification.map_to_response().boxed(),
            "confirmVerification",
            "Verify the account with the emailed token (works once)",
            json!({"type": "object", "required": ["token"], "properties": {"token": {"type": "string"}}}),
            (204, None),
            &[400, 404, 429],
        ),
        (
            "/api/collections/:collection/request-password-reset",
            request_password_reset.map_to_response().boxed(),
            "requestPasswordReset",
            "Email a password-reset link (204 whether or not the account exists)",
            json!({"type": "object", "required": ["email"], "properties": {"email": {"type": "string"}}}),
            (204, None),
            &[400, 404, 429],
        ),
        (
            "/api/collections/:collection/confirm-password-reset",
            confirm_password_reset.map_to_response().boxed(),
            "confirmPasswordReset",
            "Set a new password with the emailed token (works once; ends every session)",
            json!({"type": "object", "required": ["token", "password", "passwordConfirm"], "properties": {"token": {"type": "string"}, "password": {"type": "string"}, "passwordConfirm": {"type": "string"}}}),
            (204, None),
            &[400, 404, 429],
        ),
        (
            "/api/collections/:collection/request-email-change",
            request_email_change.map_to_response().boxed(),
            "requestEmailChange",
            "Email a confirmation link to a new address (signed-in owner)",
            json!({"type": "object", "required": ["newEmail"], "properties": {"newEmail": {"type": "string"}}}),
            (204, None),
            &[400, 401, 403, 404, 429],
        ),
        (
            "/api/collections/:collection/confirm-email-change",
            confirm_email_change.map_to_response().boxed(),
            "confirmEmailChange",
            "Move the account to the new address (token + account password; ends every session)",
            json!({"type": "object", "required": ["token", "password"], "properties": {"token": {"type": "string"}, "password": {"type": "string"}}}),
            (204, None),
            &[400, 404, 429],
        ),
        (
            "/api/collections/:collection/request-otp",
            request_otp.map_to_response().boxed(),
            "requestOtp",
            "Email a one-time code; answers an otpId whether or not the account exists",
            json!({"type": "object", "required": ["email"], "properties": {"email": {"type": "string"}}}),
            (200, Some(json!({"type": "object", "properties": {"otpId": {"type": "string"}}}))),
            &[400, 403, 404, 429],
        ),
        (
            "/api/collections/:collection/auth-with-otp",
            auth_with_otp.map_to_response().boxed(),
            "authWithOtp",
            "Sign in with an emailed one-time code (works once; 5 wrong tries burn it)",
            json!({"type": "object", "required": ["otpId", "password"], "properties": {"otpId": {"type": "string"}, "password": {"type": "string", "description": "The code."}}}),
            (200, Some(r("AuthResponse"))),
            &[400, 403, 404, 429],
        ),
    ]
}

/// Schemas of signing in with a password and of the token answer.
pub(super) fn sign_in_schemas() -> Value {
    json!({
        "AuthWithPassword": {
            "type": "object",
            "required": ["identity", "password"],
            "properties": {"identity": {"type": "string"}, "password": {"type": "string"}}
        },
        "AuthResponse": {
            "type": "object",
            "required": ["token", "record"],
            "properties": {"token": {"type": "string"}, "record": r("Record")}
        },
    })
}

/// The schema of the first-superuser setup.
pub(super) fn setup_schemas() -> Value {
    json!({
        "SetupRequest": {
            "type": "object",
            "required": ["token", "email", "password"],
            "properties": {
                "token": {"type": "string", "description": "The one-time token printed at first start."},
                "email": {"type": "string", "format": "email"},
                "password": {"type": "string", "minLength": 8}
            }
        }
    })
}

/// Schemas of sign-in methods, sign-out and impersonation.
pub(super) fn session_schemas() -> Value {
    json!({
        "AuthMethods": {
            "type": "object",
            "properties": {
                "password": {"type": "object", "properties": {"enabled": {"type": "boolean"}, "identityFields": {"type": "array", "items": {"type": "string"}}}},
                "oauth2": {"type": "object"},
                "mfa": {"type": "object"},
                "otp": {"type": "object", "properties": {"enabled": {"type": "boolean"}, "duration": {"type": "integer"}}}
            }
        },
        "LogoutInput": {
            "type": "object",
            "properties": {"all": {"type": "boolean", "description": "Revoke every token of the account, not only this one."}}
        },
        "ImpersonateInput": {
            "type": "object",
            "properties": {"duration": {"type": "integer", "minimum": 0, "description": "Token lifetime in seconds; 0 = the collection's."}}
        }
    })
}

//! The one error shape: RFC 9457 `application/problem+json` that is also what the
//! PocketBase SDKs read (`status`, `message`, `data`).
//!
//! Every domain error maps here explicitly; every error poem raises itself (unknown route,
//! wrong method, bad path or query) is rewritten into the same shape by [`into_problem`].
//! 5xx answers carry no internals; the log has them.

use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::accounts::AuthError;
use crate::files::FilesError;
use crate::jobs::JobsError;
use crate::mail::MailError;
use crate::records::{FieldErrors, RecordsError};
use crate::search::SearchError;
use crate::store::StoreError;
use crate::util::invalid::Invalid;

/// An HTTP error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Short slug appended to `/api/docs/errors#`.
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub data: Map<String, Value>,
    pub retry_after: Option<u32>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.title, self.detail)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> ApiError {
        ApiError { status, kind, title, detail: detail.into(), data: Map::new(), retry_after: None }
    }

    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad-request", "Bad request", detail)
    }

    /// The one answer to a validation failure of any domain: 400, the failure's message, and
    /// `data` keyed by field with each field's code and message.
    pub fn validation(detail: impl Into<String>, fields: &FieldErrors) -> ApiError {
        let mut e = ApiError::new(StatusCode::BAD_REQUEST, "validation", "Validation failed", detail);
        for (name, err) in fields {
            e.data.insert(name.clone(), json!({"code": err.code, "message": err.message}));
        }
        e
    }

    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    pub fn unauthenticated(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "Unauthenticated", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    pub fn payload_too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "Payload too large",
            format!("The request body exceeds the limit of {limit} bytes."),
        )
    }

    pub fn unsupported_media_type(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            detail,
        )
    }

    pub fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "Something went wrong while processing your request.",
        )
    }

    /// The problem+json body.
    pub fn body(&self) -> Value {
        json!({
            "type": format!("/api/docs/errors#{}", self.kind),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
            "message": self.detail,
            "data": self.data,
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut builder = Response::builder().status(self.status).content_type("application/problem+json");
        if let Some(seconds) = self.retry_after {
            builder = builder.header("Retry-After", seconds.to_string());
        }
        builder.body(serde_json::to_vec(&self.body()).unwrap_or_default())
    }
}

impl poem::error::ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        self.status
    }

    fn as_response(&self) -> Response {
        self.clone().into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        match err {
            StoreError::DiskFull => {
                tracing::error!("write refused: disk full");
                ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "disk-full",
                    "Insufficient storage",
                    "The server's disk is full; the write was not saved.",
                )
            }
            StoreError::Locked | StoreError::Unavailable(_) => {
                tracing::warn!(error = %err, "storage unavailable");
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "Service unavailable",
                    "Storage is temporarily unavailable; the write was not saved. Retry shortly.",
                );
                e.retry_after = Some(1);
                e
            }
            StoreError::TooNew { .. } | StoreError::Internal(_) => {
                tracing::error!(error = %err, "storage failure");
                ApiError::internal()
            }
        }
    }
}

impl From<Invalid> for ApiError {
    fn from(invalid: Invalid) -> ApiError {
        ApiError::validation(invalid.message, &invalid.fields)
    }
}

/// A domain's internal failure: logged with its details, answered 500 without them.
fn internal_failure(domain: &str, detail: &str) -> ApiError {
    tracing::error!(error = %detail, domain, "internal failure");
    ApiError::internal()
}

impl From<RecordsError> for ApiError {
    fn from(err: RecordsError) -> ApiError {
        match err {
            RecordsError::NotFound(m) => ApiError::not_found(m),
            RecordsError::Validation { message, fields } => ApiError::validation(message, &fields),
            RecordsError::BadRequest(m) => ApiError::bad_request(m),
            RecordsError::Forbidden(m) => ApiError::forbidden(m),
            RecordsError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", "Conflict", m),
            RecordsError::Store(e) => ApiError::from(e),
            RecordsError::Internal(m) => internal_failure("records", &m),
            RecordsError::Batch { index, error } => {
                let inner = ApiError::from(*error);
                if inner.status.is_server_error() {
                    // Storage trouble is the batch's answer as a whole (503/507/500).
                    return inner;
                }
                let mut e = ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "batch",
                    "Batch failed",
                    format!("Batch transaction failed: request {index}: {}", inner.detail),
                );
                let mut requests = Map::new();
                requests.insert(
                    index.to_string(),
                    json!({"code": "batch_request_failed", "message": inner.detail, "response": inner.body()}),
                );
                e.data.insert("requests".into(), Value::Object(requests));
                e
            }
        }
    }
}

impl From<SearchError> for ApiError {
    fn from(err: SearchError) -> ApiError {
        match err {
            SearchError::BadQuery(m) => ApiError::bad_request(m),
            SearchError::NotEnabled(m) => ApiError::bad_request(m),
            SearchError::Records(e) => ApiError::from(e),
            SearchError::Unavailable(m) => {
                tracing::warn!(reason = %m, "search unavailable");
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "Service unavailable",
                    "Search is temporarily unavailable. Retry shortly.",
                );
                e.retry_after = Some(1);
                e
            }
            SearchError::Internal(m) => internal_failure("search", &m),
        }
    }
}

impl From<FilesError> for ApiError {
    fn from(err: FilesError) -> ApiError {
        match err {
            FilesError::NotFound => ApiError::not_found("The requested file wasn't found."),
            FilesError::TooLarge { detail, fields } => {
                let mut e =
                    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", "Payload too large", detail);
                for (name, err) in &fields {
                    e.data.insert(name.clone(), json!({"code": err.code, "message": err.message}));
                }
                e
            }
            FilesError::Validation(invalid) => ApiError::from(invalid),
            FilesError::BadRequest(m) => ApiError::bad_request(m),
            FilesError::Unauthenticated => {
                ApiError::unauthenticated("The request requires valid record authorization token.")
            }
            FilesError::Forbidden(m) => ApiError::forbidden(m),
            FilesError::Timeout => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "Request timeout",
                "The request body did not arrive in time.",
            ),
            FilesError::DiskFull => ApiError::from(StoreError::DiskFull),
            FilesError::Records(e) => ApiError::from(e),
            FilesError::Io(detail) => internal_failure("files", &detail),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> ApiError {
        match err {
            AuthError::InvalidCredentials => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid-credentials",
                "Authentication failed",
                "Failed to authenticate.",
            ),
            AuthError::Unauthenticated => ApiError::unauthenticated(err.to_string()),
            AuthError::SetupRefused(m) => ApiError::forbidden(m),
            AuthError::Forbidden(m) => ApiError::forbidden(m),
            AuthError::Records(e) => ApiError::from(e),
            AuthError::Mail(e) => ApiError::from(e),
        }
    }
}

impl From<JobsError> for ApiError {
    fn from(err: JobsError) -> ApiError {
        match err {
            JobsError::NotFound(m) => ApiError::not_found(m),
            JobsError::Validation(invalid) => ApiError::from(invalid),
            JobsError::BadRequest(m) => ApiError::bad_request(m),
            JobsError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", "Conflict", m),
            JobsError::Stale => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "Conflict",
                "The job changed while the request ran; retry.",
            ),
            JobsError::Internal(m) => internal_failure("jobs", &m),
            JobsError::Store(e) => ApiError::from(e),
        }
    }
}

impl From<MailError> for ApiError {
    fn from(err: MailError) -> ApiError {
        match err {
            MailError::Validation(invalid) => ApiError::from(invalid),
            MailError::BadRequest(m) => ApiError::bad_request(m),
            MailError::Disabled(m) => {
                ApiError::new(StatusCode::BAD_REQUEST, "mail-disabled", "Email disabled", m)
            }
            MailError::Jobs(e) => ApiError::from(e),
            MailError::Store(e) => ApiError::from(e),
            MailError::Internal(m) => internal_failure("mail", &m),
        }
    }
}

impl From<crate::observe::ObserveError> for ApiError {
    fn from(err: crate::observe::ObserveError) -> ApiError {
        match err {
            crate::observe::ObserveError::BadRequest(m) => ApiError::bad_request(m),
            crate::observe::ObserveError::Invalid(invalid) => ApiError::from(invalid),
            crate::observe::ObserveError::Internal(m) => internal_failure("observe", &m),
            crate::observe::ObserveError::NotFound(m) => ApiError::not_found(m),
            crate::observe::ObserveError::Store(e) => ApiError::from(e),
        }
    }
}

/// Rewrites any error poem produced into the problem shape.
pub fn into_problem(err: poem::Error) -> Response {
    if let Some(api) = err.downcast_ref::<ApiError>() {
        return api.clone().into_response();
    }
    let status = err.status();
    let api = match status {
        StatusCode::NOT_FOUND => ApiError::not_found("The requested resource wasn't found."),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::new(
            status,
            "method-not-allowed",
            "Method not allowed",
            "This endpoint does not support the request method.",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(status, "too-large", "Payload too large", err.to_string())
        }
        s if s.is_client_error() => ApiError::new(s, "bad-request", "Bad request", err.to_string()),
        _ => {
            tracing::error!(error = %err, status = status.as_u16(), "unhandled error");
            ApiError::internal()
        }
    };
    api.into_response()
}

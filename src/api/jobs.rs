//! `/api/jobs` and `/api/crons` (superusers only): the job queue and cron schedules, plus the
//! admin-socket routes behind `backbone jobs ...`.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::{Data, Path, Query};
use poem::{handler, Body, Request, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::json_object;
use super::error::ApiError;
use super::{json_response, principal};
use crate::app::App;
use crate::auth::Principal;
use crate::jobs::model::Job;
use crate::jobs::{JobSpec, JobsError, ListFilter};

/// Query parameters of `GET /api/jobs`.
#[derive(Debug, Default, Deserialize)]
pub struct JobListParams {
    state: Option<String>,
    kind: Option<String>,
    queue: Option<String>,
    page: Option<String>,
    #[serde(rename = "perPage")]
    per_page: Option<String>,
}

/// Paging parameters.
#[derive(Debug, Default, Deserialize)]
pub struct PageParams {
    page: Option<String>,
    #[serde(rename = "perPage")]
    per_page: Option<String>,
}

pub(crate) async fn require_superuser(app: &App, req: &Request) -> Result<(), ApiError> {
    match principal(app, req).await {
        Principal::Superuser { .. } => Ok(()),
        Principal::Anonymous => Err(ApiError::unauthenticated("Sign in as a superuser.")),
        Principal::Record { .. } | Principal::ApiKey { .. } => {
            Err(ApiError::forbidden("Only superusers can perform this action."))
        }
    }
}

/// Job ids are decimal numbers; anything else names no job.
fn job_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse::<u64>()
        .map_err(|_| ApiError::from(JobsError::NotFound("The requested job wasn't found.".into())))
}

/// `202 Accepted` with the job and `Location: /api/jobs/{id}`: the answer of any request
/// whose work continues in the background.
/// A job as the API shows it: account emails' one-time secrets are redacted (the job
/// itself keeps them: it must send them).
pub(crate) fn job_json(job: &Job) -> Value {
    let mut json = job.to_json();
    if job.kind == crate::mail::JOB_KIND {
        if let Some(payload) = json.get_mut("payload") {
            crate::mail::redact_job_payload(payload);
        }
    }
    json
}

pub(crate) fn accepted(job: &Job, status: StatusCode) -> Response {
    let mut response = json_response(status, &job_json(job));
    if let Ok(value) = format!("/api/jobs/{}", job.id).parse() {
        response.headers_mut().insert("Location", value);
    }
    response
}

pub(crate) fn envelope(page: usize, per_page: usize, total: usize, items: Vec<Value>) -> Value {
    json!({
        "page": page,
        "perPage": per_page,
        "totalItems": total,
        "totalPages": total.div_ceil(per_page.max(1)),
        "items": items,
    })
}

#[handler]
pub async fn list(
    req: &Request,
    Query(q): Query<JobListParams>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    require_superuser(app, req).await?;
    let filter =
        ListFilter { state: q.state, kind: q.kind, queue: q.queue, page: q.page, per_page: q.per_page };
    let page = app.jobs.list(filter).await?;
    let items = page.items.iter().map(job_json).collect();
    Ok(json_response(StatusCode::OK, &envelope(page.page, page.per_page, page.total_items, items)))
}

#[handler]
pub async fn enqueue(req: &Request, body: Body, Data(app): Data<&Arc<App>>) -> Result<Response, ApiError> {
    require_superuser(app, req).await?;
    let body = json_object(req, body, app.body_limits()).await?;
    let spec = JobSpec::from_json(&body, app.jobs.now_ms())?;
    let enqueued = app.jobs.enqueue(spec).await?;
    let status = if enqueued.duplicate { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok(accepted(&enqueued.job, status))
}

#[handler]
pub async fn stats(req: &Request, Data(app): Data<&Arc<App>>) -> Result<Response, ApiError> {
    require_superuser(app, req).await?;
    Ok(json_response(StatusCode::OK, &app.jobs.stats().await?.to_json()))
}

#[handler]
pub async fn view(
    req: &Request,
    Path(id): Path<String>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    require_superuser(app, req).await?;
    let job = app.jobs.get(job_id(&id)?).await?;
    Ok(json_response(StatusCode::OK, &job_json(&job)))
}

#[handler]
pub async fn retry(
    req: &Request,
    Path(id): Path<String>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    require_superuser(app, req).await?;
    let job = app.jobs.retry(job_id(&id)?).await?;
    Ok(json_response(StatusCode::OK, &job_json(&job)))
}

#[handler]
pub async fn cancel(
    req: &Request,
    Path(id): Path<String>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    require_superuser(app, req).await?;
    let job = app.jobs.cancel(job_id(&id)?).await?;
    Ok(json_response(StatusCode::OK, &job_json(&job)))
}

#[handler]
pub async fn delete(
    req: &Request,
    Path(id): Path<String>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    require_superuser(app, req).await?;
    app.jobs.delete(job_id(&id)?).await?;
    Ok(Response::builder().status(StatusCode::NO_CONTENT).finish())
}

#[handler]
pub async fn cron_list(req: &Request, Data(app): Data<&Arc<App>>) -> Result<Response, ApiError> {
    require_superuser(app, req).await?;
    let crons = app.jobs.list_crons().await?;
    let total = crons.len();
    let items = crons.iter().map(|c| c.to_json()).collect();
    Ok(json_response(StatusCode::OK, &envelope(1, total.max(1), total, items)))
}

#[handler]
pub async fn cron_create(
    req: &Request,
    body: Body,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    require_superuser(app, req).await?;
    let body = json_object(req, body, app.body_limits()).await?;
    let cron = app.jobs.create_cron(body).await?;
    Ok(json_response(StatusCode::OK, &cron.to_json()))
}

#[handler]
pub async fn cron_view(
    req: &Request,
    Path(id): Path<String>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    require_superuser(app, req).await?;
    Ok(json_response(StatusCode::OK, &app.jobs.get_cron(&id).await?.to_json()))
}

#[handler]
pub async fn cron_update(
    req: &Request,
    Path(id): Path<String>,
    body: Body,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    require_superuser(app, req).await?;
    let body = json_object(req, body, app.body_limits()).await?;
    let cron = app.jobs.update_cron(&id, body).await?;
    Ok(json_response(StatusCode::OK, &cron.to_json()))
}

#[handler]
pub async fn cron_delete(
    req: &Request,
    Path(id): Path<String>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    require_superuser(app, req).await?;
    app.jobs.delete_cron(&id).await?;
    Ok(Response::builder().status(StatusCode::NO_CONTENT).finish())
}

#[handler]
pub async fn cron_run(
    req: &Request,
    Path(id): Path<String>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    require_superuser(app, req).await?;
    let (_run, job) = app.jobs.run_cron_now(&id).await?;
    Ok(accepted(&job, StatusCode::ACCEPTED))
}

#[handler]
pub async fn cron_runs(
    req: &Request,
    Path(id): Path<String>,
    Query(q): Query<PageParams>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    require_superuser(app, req).await?;
    let (page, per_page, total, runs) =
        app.jobs.cron_runs(&id, q.page.as_deref(), q.per_page.as_deref()).await?;
    let items = runs.iter().map(|r| r.to_json()).collect();
    Ok(json_response(StatusCode::OK, &envelope(page, per_page, total, items)))
}

/// A string member of a socket request body.
fn member(body: &serde_json::Map<String, Value>, name: &str) -> Option<String> {
    body.get(name).and_then(Value::as_str).map(str::to_string)
}

/// `backbone jobs list` through the admin socket: `{state, kind, queue, page, perPage}`.
#[handler]
pub async fn socket_list(
    req: &Request,
    body: Body,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let body = json_object(req, body, app.body_limits()).await?;
    let filter = ListFilter {
        state: member(&body, "state"),
        kind: member(&body, "kind"),
        queue: member(&body, "queue"),
        page: member(&body, "page"),
        per_page: member(&body, "perPage"),
    };
    let page = app.jobs.list(filter).await?;
    let items = page.items.iter().map(job_json).collect();
    Ok(json_response(StatusCode::OK, &envelope(page.page, page.per_page, page.total_items, items)))
}

/// `backbone jobs retry|cancel ID` through the admin socket: `{id}`.
#[handler]
pub async fn socket_action(
    req: &Request,
    Path(action): Path<String>,
    body: Body,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let body = json_object(req, body, app.body_limits()).await?;
    let id = job_id(&member(&body, "id").unwrap_or_default())?;
    let job = match action.as_str() {
        "retry" => app.jobs.retry(id).await?,
        "cancel" => app.jobs.cancel(id).await?,
        _ => return Err(ApiError::not_found("Unknown job action.")),
    };
    Ok(json_response(StatusCode::OK, &job_json(&job)))
}

//! `/api/jobs` and `/api/crons` (superusers only): the job queue and cron schedules, plus the
//! admin-socket routes behind `backbone jobs ...`.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::{Data, Path, Query};
use poem::{handler, Body, Request, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::access::superuser;
use super::body::json_object;
use super::error::ApiError;
use super::openapi::{accepted_job, list_envelope, op, page_params, path_param, query_param, r};
use super::{json_response, Routes};
use crate::app::App;
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
    superuser(app, req).await?;
    let filter =
        ListFilter { state: q.state, kind: q.kind, queue: q.queue, page: q.page, per_page: q.per_page };
    let page = app.jobs.list(filter).await?;
    let items = page.items.iter().map(job_json).collect();
    Ok(json_response(StatusCode::OK, &envelope(page.page, page.per_page, page.total_items, items)))
}

#[handler]
pub async fn enqueue(req: &Request, body: Body, Data(app): Data<&Arc<App>>) -> Result<Response, ApiError> {
    superuser(app, req).await?;
    let body = json_object(req, body, app.body_limits()).await?;
    let spec = JobSpec::from_json(&body, app.jobs.now_ms())?;
    let enqueued = app.jobs.enqueue(spec).await?;
    let status = if enqueued.duplicate { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok(accepted(&enqueued.job, status))
}

#[handler]
pub async fn stats(req: &Request, Data(app): Data<&Arc<App>>) -> Result<Response, ApiError> {
    superuser(app, req).await?;
    Ok(json_response(StatusCode::OK, &app.jobs.stats().await?.to_json()))
}

#[handler]
pub async fn view(
    req: &Request,
    Path(id): Path<String>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    superuser(app, req).await?;
    let job = app.jobs.get(job_id(&id)?).await?;
    Ok(json_response(StatusCode::OK, &job_json(&job)))
}

#[handler]
pub async fn retry(
    req: &Request,
    Path(id): Path<String>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    superuser(app, req).await?;
    let job = app.jobs.retry(job_id(&id)?).await?;
    Ok(json_response(StatusCode::OK, &job_json(&job)))
}

#[handler]
pub async fn cancel(
    req: &Request,
    Path(id): Path<String>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    superuser(app, req).await?;
    let job = app.jobs.cancel(job_id(&id)?).await?;
    Ok(json_response(StatusCode::OK, &job_json(&job)))
}

#[handler]
pub async fn delete(
    req: &Request,
    Path(id): Path<String>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    superuser(app, req).await?;
    app.jobs.delete(job_id(&id)?).await?;
    Ok(Response::builder().status(StatusCode::NO_CONTENT).finish())
}

#[handler]
pub async fn cron_list(req: &Request, Data(app): Data<&Arc<App>>) -> Result<Response, ApiError> {
    superuser(app, req).await?;
    let crons = app.jobs.list_crons().await?;
    // PocketBase's shape (what `pb.crons.getFullList()` reads): a plain array; each item
    // has PocketBase's `id` and `expression` and Backbone's other members.
    let items = crons.iter().map(|c| c.to_json()).collect();
    Ok(json_response(StatusCode::OK, &Value::Array(items)))
}

#[handler]
pub async fn cron_create(
    req: &Request,
    body: Body,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    superuser(app, req).await?;
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
    superuser(app, req).await?;
    Ok(json_response(StatusCode::OK, &app.jobs.get_cron(&id).await?.to_json()))
}

#[handler]
pub async fn cron_update(
    req: &Request,
    Path(id): Path<String>,
    body: Body,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    superuser(app, req).await?;
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
    superuser(app, req).await?;
    app.jobs.delete_cron(&id).await?;
    Ok(Response::builder().status(StatusCode::NO_CONTENT).finish())
}

#[handler]
pub async fn cron_run(
    req: &Request,
    Path(id): Path<String>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    superuser(app, req).await?;
    let (_run, job) = app.jobs.run_cron_now(&id).await?;
    Ok(accepted(&job, StatusCode::ACCEPTED))
}

/// `POST /api/crons/{id}`: PocketBase's `pb.crons.run(id)`: enqueues the schedule's job
/// now and answers 204 (`/api/crons/{id}/run` answers the job).
#[handler]
pub async fn cron_run_now(
    req: &Request,
    Path(id): Path<String>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    superuser(app, req).await?;
    app.jobs.run_cron_now(&id).await?;
    Ok(Response::builder().status(StatusCode::NO_CONTENT).finish())
}

#[handler]
pub async fn cron_runs(
    req: &Request,
    Path(id): Path<String>,
    Query(q): Query<PageParams>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    superuser(app, req).await?;
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

/// `/api/jobs` and `/api/crons`.
pub(super) fn routes(api: Routes) -> Routes {
    api.at("/api/jobs", |m| {
        m.get(
            list,
            op("listJobs", "List jobs, newest first (superusers)", "jobs", [vec![
                query_param("state", "scheduled, available, running, completed, retrying, dead or cancelled.", json!({"type": "string"})),
                query_param("kind", "Job kind.", json!({"type": "string"})),
                query_param("queue", "Queue name.", json!({"type": "string"})),
            ], page_params()].concat(), None, (200, Some(r("JobList"))), &[400, 401, 403]),
        )
        .post(
            enqueue,
            accepted_job(
                op(
                    "enqueueJob",
                    "Enqueue a job (superusers); 200 with the existing job for a duplicate unique key",
                    "jobs",
                    vec![],
                    Some(r("JobInput")),
                    (202, Some(r("Job"))),
                    &[400, 401, 403, 413, 415, 503, 507],
                ),
                Some("A job with this unique key is already waiting or running"),
            ),
        )
    })
    .at("/api/jobs/stats", |m| {
        m.get(
            stats,
            op("jobStats", "Counts per state and queue, oldest waiting age (superusers)", "jobs", vec![], None, (200, Some(r("JobStats"))), &[401, 403]),
        )
    })
    .at("/api/jobs/:id", |m| {
        m.get(
            view,
            op("getJob", "View a job (superusers)", "jobs", vec![job_id_param()], None, (200, Some(r("Job"))), &[401, 403, 404]),
        )
        .delete(
            delete,
            op("deleteJob", "Delete a job that is not running (superusers)", "jobs", vec![job_id_param()], None, (204, None), &[401, 403, 404, 409]),
        )
    })
    .at("/api/jobs/:id/retry", |m| {
        m.post(
            retry,
            op("retryJob", "Run a job again now; dead, cancelled and completed jobs are replayed with attempts reset (superusers)", "jobs", vec![job_id_param()], None, (200, Some(r("Job"))), &[401, 403, 404, 409]),
        )
    })
    .at("/api/jobs/:id/cancel", |m| {
        m.post(
            cancel,
            op("cancelJob", "Cancel a waiting job, or tell a running one to stop (superusers)", "jobs", vec![job_id_param()], None, (200, Some(r("Job"))), &[401, 403, 404, 409]),
        )
    })
    .at("/api/crons", |m| {
        m.get(
            cron_list,
            op("listCrons", "List cron schedules (superusers)", "crons", vec![], None, (200, Some(r("CronList"))), &[401, 403]),
        )
        .post(
            cron_create,
            op("createCron", "Create a cron schedule (superusers)", "crons", vec![], Some(r("CronInput")), (200, Some(r("Cron"))), &[400, 401, 403, 413, 415]),
        )
    })
    .at("/api/crons/:id", |m| {
        m.get(
            cron_view,
            op("getCron", "View a cron schedule (superusers)", "crons", vec![cron_id_param()], None, (200, Some(r("Cron"))), &[401, 403, 404]),
        )
        .patch(
            cron_update,
            op("updateCron", "Change a cron schedule; enabling it schedules from now (superusers)", "crons", vec![cron_id_param()], Some(r("CronInput")), (200, Some(r("Cron"))), &[400, 401, 403, 404, 413, 415]),
        )
        .post(
            cron_run_now,
            op("runCronNow", "Enqueue the schedule's job now, as PocketBase's pb.crons.run (superusers)", "crons", vec![cron_id_param()], None, (204, None), &[401, 403, 404]),
        )
        .delete(
            cron_delete,
            op("deleteCron", "Delete a cron schedule and its run history (superusers)", "crons", vec![cron_id_param()], None, (204, None), &[401, 403, 404]),
        )
    })
    .at("/api/crons/:id/run", |m| m.post(cron_run, accepted_job(op(
        "runCron",
        "Enqueue the schedule's job now (superusers)",
        "crons",
        vec![cron_id_param()],
        None,
        (202, Some(r("Job"))),
        &[401, 403, 404],
    ), None)))
    .at("/api/crons/:id/runs", |m| {
        m.get(
            cron_runs,
            op("listCronRuns", "A schedule's runs, newest first (superusers)", "crons", [vec![cron_id_param()], page_params()].concat(), None, (200, Some(r("CronRunList"))), &[400, 401, 403, 404]),
        )
    })
}

/// `{id}` of a job (also of its email in the mail log).
pub(super) fn job_id_param() -> Value {
    path_param("id", "Job id (decimal digits).")
}

fn cron_id_param() -> Value {
    path_param("id", "Cron schedule id.")
}

/// Schemas of jobs and cron schedules.
pub(super) fn schemas() -> Value {
    json!({
        "Job": {
            "type": "object",
            "required": ["id", "kind", "queue", "state", "payload", "priority", "attempt", "maxAttempts", "runAt", "created", "updated"],
            "properties": {
                "id": {"type": "string", "pattern": "^[0-9]+$"},
                "kind": {"type": "string"},
                "queue": {"type": "string"},
                "state": {"type": "string", "enum": ["scheduled", "available", "running", "completed", "retrying", "dead", "cancelled"]},
                "payload": {},
                "priority": {"type": "integer", "minimum": 0, "maximum": 9, "description": "0 runs first."},
                "attempt": {"type": "integer", "description": "Attempts started so far."},
                "maxAttempts": {"type": "integer"},
                "uniqueKey": {"type": ["string", "null"]},
                "timeoutMs": {"type": "integer"},
                "runAt": {"type": "string"},
                "created": {"type": "string"},
                "updated": {"type": "string"},
                "startedAt": {"type": ["string", "null"]},
                "finishedAt": {"type": ["string", "null"]},
                "progress": {"description": "Whatever the handler last reported (live while running)."},
                "lastError": {"type": ["string", "null"]},
                "errors": {"type": "array", "items": {"type": "object", "properties": {"attempt": {"type": "integer"}, "at": {"type": "string"}, "error": {"type": "string"}}}},
                "cancelRequested": {"type": "boolean"}
            }
        },
        "JobInput": {
            "type": "object",
            "required": ["kind"],
            "additionalProperties": false,
            "properties": {
                "kind": {"type": "string", "description": "A registered job kind."},
                "payload": {},
                "queue": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"},
                "priority": {"type": "integer", "minimum": 0, "maximum": 9},
                "runAt": {"type": "string", "description": "Run at or after this time (RFC 3339)."},
                "delayMs": {"type": "integer", "minimum": 0},
                "maxAttempts": {"type": "integer", "minimum": 1, "maximum": 1000},
                "uniqueKey": {"type": "string", "maxLength": 200, "description": "While a job with this key waits or runs, enqueueing another returns it (200)."},
                "timeoutMs": {"type": "integer", "minimum": 1}
            }
        },
        "JobList": list_envelope(r("Job")),
        "JobStats": {
            "type": "object",
            "properties": {
                "total": {"type": "integer"},
                "states": {"type": "object", "additionalProperties": {"type": "integer"}},
                "queues": {"type": "object", "additionalProperties": {"type": "object", "properties": {
                    "states": {"type": "object", "additionalProperties": {"type": "integer"}},
                    "oldestWaitingMs": {"type": ["integer", "null"]}
                }}},
                "oldestWaitingMs": {"type": ["integer", "null"], "description": "Age of the oldest runnable job."}
            }
        },
        "Cron": {
            "type": "object",
            "required": ["id", "name", "expression", "kind", "enabled"],
            "properties": {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "expression": {"type": "string", "description": "5 fields, or 6 with seconds first; UTC."},
                "kind": {"type": "string"},
                "payload": {},
                "queue": {"type": ["string", "null"]},
                "priority": {"type": ["integer", "null"]},
                "maxAttempts": {"type": ["integer", "null"]},
                "enabled": {"type": "boolean"},
                "created": {"type": "string"},
                "updated": {"type": "string"},
                "nextRunAt": {"type": ["string", "null"]},
                "lastRunAt": {"type": ["string", "null"]}
            }
        },
        "CronInput": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "name": {"type": "string"},
                "expression": {"type": "string"},
                "kind": {"type": "string"},
                "payload": {},
                "queue": {"type": ["string", "null"]},
                "priority": {"type": ["integer", "null"], "minimum": 0, "maximum": 9},
                "maxAttempts": {"type": ["integer", "null"], "minimum": 1},
                "enabled": {"type": "boolean"}
            }
        },
        "CronList": {"type": "array", "items": r("Cron")},
        "CronRun": {
            "type": "object",
            "properties": {
                "cronId": {"type": "string"},
                "scheduledFor": {"type": "string"},
                "firedAt": {"type": "string"},
                "jobId": {"type": ["string", "null"]},
                "manual": {"type": "boolean"},
                "caughtUp": {"type": "boolean", "description": "Fired late, after downtime: missed occurrences are caught up by this one run."},
                "error": {"type": ["string", "null"]}
            }
        },
        "CronRunList": list_envelope(r("CronRun"))
    })
}

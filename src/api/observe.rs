//! `/metrics` (Prometheus text), `/api/metrics` (stored history), `/api/logs` and
//! `/api/logs/stats` (the request log). Superusers and API keys holding `metrics.read` may
//! read all of them; `/metrics` also answers allowlisted scraper addresses without
//! credentials (`[observe] metrics_allowed_ips`). `/api/alerts` (rules, history) is for
//! superusers.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::{Data, Path, Query};
use poem::{handler, Body, Request, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::access::{superuser, superuser_or_key_with, METRICS_READ};
use super::body::json_object;
use super::error::ApiError;
use super::guard::ClientIp;
use super::jobs::envelope;
use super::openapi::{list_envelope, op, page_params, path_param, problem_ref, query_param};
use super::{json_response, Routes};
use crate::app::App;
use crate::jobs::paging;
use crate::observe::alerts::{self, RuleInput};
use crate::observe::history as stored;
use crate::observe::requests::LogFilter;

/// A time parameter: Unix seconds, or a date (`2026-01-02 03:04:05.000Z`, RFC 3339).
/// Returns microseconds since 1970.
fn parse_time(name: &str, raw: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else { return Ok(None) };
    if let Ok(secs) = raw.parse::<i64>() {
        return secs
            .checked_mul(1_000_000)
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(format!("{name} is out of range.")));
    }
    let parsed = crate::util::time::parse(raw)
        .or_else(|| chrono::DateTime::parse_from_rfc3339(raw).ok().map(|t| t.with_timezone(&chrono::Utc)));
    match parsed {
        Some(t) => Ok(Some(t.timestamp_micros())),
        None => Err(ApiError::bad_request(format!(
            "{name} must be Unix seconds or a date such as 2026-01-02 03:04:05.000Z."
        ))),
    }
}

/// A whole number of seconds of at least 1.
fn parse_step(raw: Option<&str>) -> Result<Option<i64>, ApiError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=31_536_000).contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::bad_request("step must be a whole number of seconds between 1 and 31536000.")),
        },
    }
}

/// `GET /metrics`.
#[handler]
pub async fn prometheus(req: &Request, Data(app): Data<&Arc<App>>) -> Result<Response, ApiError> {
    if !app.config.observe.metrics {
        return Err(ApiError::not_found("Metrics are turned off ([observe] metrics = false)."));
    }
    let ip = req.extensions().get::<ClientIp>().and_then(|c| c.0);
    if !app.observe.is_scraper(ip) {
        superuser_or_key_with(app, req, &METRICS_READ).await?;
    }
    let text = app.render_metrics().await?;
    Ok(Response::builder()
        .status(StatusCode::OK)
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}

/// Query parameters of `GET /api/metrics`.
#[derive(Debug, Default, Deserialize)]
pub struct HistoryParams {
    series: Option<String>,
    from: Option<String>,
    to: Option<String>,
    step: Option<String>,
}

/// `GET /api/metrics`: without `series`, the list of stored series.
#[handler]
pub async fn history(
    req: &Request,
    Query(q): Query<HistoryParams>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    superuser_or_key_with(app, req, &METRICS_READ).await?;
    let Some(series) = q.series.as_deref().map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(json_response(StatusCode::OK, &serde_json::json!({"available": stored::catalog()})));
    };
    let now_ms = chrono::Utc::now().timestamp_millis();
    let to_ms = parse_time("to", q.to.as_deref())?.map_or(now_ms, |us| us / 1000);
    let from_ms = parse_time("from", q.from.as_deref())?.map_or(to_ms - 3_600_000, |us| us / 1000);
    let query = stored::Query {
        series: series.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
        from_ms,
        to_ms,
        step_secs: parse_step(q.step.as_deref())?.unwrap_or(0),
    };
    let value = app.observe.history.query(query, now_ms).await?;
    Ok(json_response(StatusCode::OK, &value))
}

/// Query parameters of `GET /api/logs` and `GET /api/logs/stats`.
#[derive(Debug, Default, Deserialize)]
pub struct LogParams {
    from: Option<String>,
    to: Option<String>,
    method: Option<String>,
    route: Option<String>,
    status: Option<String>,
    ip: Option<String>,
    auth: Option<String>,
    #[serde(rename = "minDurationMs")]
    min_duration_ms: Option<String>,
    page: Option<String>,
    #[serde(rename = "perPage")]
    per_page: Option<String>,
    step: Option<String>,
}

fn filter(q: &LogParams) -> Result<LogFilter, ApiError> {
    let text = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
    let min_duration_ms = match text(&q.min_duration_ms) {
        None => None,
        Some(s) => match s.parse::<f64>() {
            Ok(n) if n.is_finite() && n >= 0.0 => Some(n),
            _ => return Err(ApiError::bad_request("minDurationMs must be a number of at least 0.")),
        },
    };
    Ok(LogFilter {
        from_us: parse_time("from", q.from.as_deref())?,
        to_us: parse_time("to", q.to.as_deref())?,
        method: text(&q.method),
        route: text(&q.route),
        status: text(&q.status),
        ip: text(&q.ip),
        auth: text(&q.auth),
        min_duration_ms,
    })
}

/// `GET /api/logs`: request log rows, newest first.
#[handler]
pub async fn logs(
    req: &Request,
    Query(q): Query<LogParams>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    superuser_or_key_with(app, req, &METRICS_READ).await?;
    let filter = filter(&q)?;
    let (page, per_page) = paging(q.page.as_deref(), q.per_page.as_deref())?;
    let (total, items) = app.observe.requests.list(filter, page, per_page).await?;
    Ok(json_response(StatusCode::OK, &envelope(page, per_page, total, items)))
}

/// `GET /api/logs/stats`: request counts per status class per step (default: the last
/// 24 hours in hours).
#[handler]
pub async fn log_stats(
    req: &Request,
    Query(q): Query<LogParams>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    superuser_or_key_with(app, req, &METRICS_READ).await?;
    let filter = filter(&q)?;
    // Without `step`, PocketBase's shape (what `pb.logs.getStats()` reads).
    let Some(step) = parse_step(q.step.as_deref())? else {
        let value = app.observe.requests.hourly(filter).await?;
        return Ok(json_response(StatusCode::OK, &value));
    };
    let value = app.observe.requests.stats(filter, step * 1_000_000).await?;
    Ok(json_response(StatusCode::OK, &value))
}

/// `GET /api/logs/{id}`: one request log row (`pb.logs.getOne`).
#[handler]
pub async fn log_view(
    req: &Request,
    Path(id): Path<String>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    superuser_or_key_with(app, req, &METRICS_READ).await?;
    let row = app.observe.requests.get(&id).await?;
    Ok(json_response(StatusCode::OK, &row))
}

/// `GET /api/alerts`: every alert rule with its state (superusers).
#[handler]
pub async fn alert_list(req: &Request, Data(app): Data<&Arc<App>>) -> Result<Response, ApiError> {
    superuser(app, req).await?;
    let rules = app.observe.alerts.list().await?;
    let total = rules.len();
    let items = rules.iter().map(alerts::Rule::to_json).collect();
    Ok(json_response(StatusCode::OK, &envelope(1, total.max(1), total, items)))
}

/// `POST /api/alerts`.
#[handler]
pub async fn alert_create(
    req: &Request,
    body: Body,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    superuser(app, req).await?;
    let input = RuleInput::parse(json_object(req, body, app.body_limits()).await?.into())?;
    let rule = app.observe.alerts.create(input).await?;
    Ok(json_response(StatusCode::OK, &rule.to_json()))
}

/// `GET /api/alerts/{id}`.
#[handler]
pub async fn alert_view(
    req: &Request,
    Path(id): Path<String>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    superuser(app, req).await?;
    Ok(json_response(StatusCode::OK, &app.observe.alerts.get(&id).await?.to_json()))
}

/// `PATCH /api/alerts/{id}`: a changed rule starts over in the `ok` state.
#[handler]
pub async fn alert_update(
    req: &Request,
    Path(id): Path<String>,
    body: Body,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    superuser(app, req).await?;
    let input = RuleInput::parse(json_object(req, body, app.body_limits()).await?.into())?;
    Ok(json_response(StatusCode::OK, &app.observe.alerts.update(&id, input).await?.to_json()))
}

/// `DELETE /api/alerts/{id}`.
#[handler]
pub async fn alert_delete(
    req: &Request,
    Path(id): Path<String>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    superuser(app, req).await?;
    app.observe.alerts.delete(&id).await?;
    Ok(Response::builder().status(StatusCode::NO_CONTENT).finish())
}

/// Query parameters of `GET /api/alerts/history`.
#[derive(Debug, Default, Deserialize)]
pub struct AlertHistoryParams {
    rule: Option<String>,
    #[serde(rename = "perPage")]
    per_page: Option<String>,
}

/// `GET /api/alerts/history`: firing and resolving transitions, newest first.
#[handler]
pub async fn alert_history(
    req: &Request,
    Query(q): Query<AlertHistoryParams>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    superuser(app, req).await?;
    let (_, per_page) = paging(None, q.per_page.as_deref())?;
    let rule = q.rule.map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
    let items = app.observe.alerts.history_rows(rule, per_page).await?;
    let total = items.len();
    Ok(json_response(StatusCode::OK, &envelope(1, per_page, total, items)))
}

/// `/metrics`, `/api/metrics`, the request log and `/api/alerts`.
pub(super) fn routes(api: Routes) -> Routes {
    let alert_rule = json!({"type": "object", "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "series": {"type": "string"},
        "op": {"enum": [">", ">=", "<", "<="]}, "threshold": {"type": "number"},
        "forSecs": {"type": "integer"}, "cooldownSecs": {"type": "integer"}, "enabled": {"type": "boolean"},
        "emails": {"type": "array", "items": {"type": "string", "format": "email"}},
        "webhooks": {"type": "array", "maxItems": 5, "items": {"type": "string", "format": "uri"},
            "description": "Receivers of signed POSTs (alert.firing, alert.resolved)."},
        "webhookSecretHint": {"type": ["string", "null"], "description": "The last characters of the webhook signing secret."},
        "webhookSecret": {"type": "string", "description": "The generated signing secret: only in the answer that generated it."},
        "state": {"enum": ["ok", "pending", "firing"]}, "since": {"type": ["integer", "null"]},
        "lastNotified": {"type": ["integer", "null"]}, "notified": {"type": "boolean"},
        "firingSince": {"type": ["integer", "null"]}, "value": {"type": ["number", "null"]}
    }});
    let alert_input = json!({"type": "object", "additionalProperties": false, "properties": {
        "name": {"type": "string"}, "series": {"type": "string"}, "op": {"enum": [">", ">=", "<", "<="]},
        "threshold": {"type": "number"}, "forSecs": {"type": "integer", "minimum": 0}, "cooldownSecs": {"type": "integer", "minimum": 0},
        "enabled": {"type": "boolean"}, "emails": {"type": "array", "items": {"type": "string", "format": "email"}},
        "webhooks": {"type": "array", "maxItems": 5, "items": {"type": "string", "format": "uri"},
            "description": "http(s) URLs; targets on private, loopback and link-local addresses are refused unless [webhooks] allows them."},
        "webhookSecret": {"type": "string", "minLength": 16, "maxLength": 256,
            "description": "The HMAC-SHA256 signing secret (write-only). Omitted: one is generated when the rule first gets webhooks."}
    }});
    api.at("/metrics", |m| {
        m.get(
            prometheus,
            json!({"operationId": "prometheusMetrics", "summary": "Every metric in the Prometheus text format (superusers, API keys with metrics.read, or [observe] metrics_allowed_ips)", "tags": ["observe"], "responses": {"200": {"description": "Prometheus text exposition 0.0.4", "content": {"text/plain": {"schema": {"type": "string"}}}}, "401": problem_ref(), "403": problem_ref(), "404": problem_ref()}}),
        )
    })
    .at("/api/metrics", |m| {
        m.get(
            history,
            op("metricHistory", "Stored metric history: without series, the list of series; with series, [unixSeconds, value] points averaged per step (superusers, API keys with metrics.read)", "observe", vec![
                query_param("series", "Comma-separated series names.", json!({"type": "string"})),
                time_param("from"),
                time_param("to"),
                query_param("step", "Seconds between points (chosen when absent).", json!({"type": "integer", "minimum": 1})),
            ], None, (200, Some(json!({"type": "object"}))), &[400, 401, 403]),
        )
    })
    .at("/api/logs", |m| {
        m.get(
            logs,
            op("requestLog", "Request log, newest first: time, method, route template, status, duration, client IP, auth kind (superusers, API keys with metrics.read)", "observe", [log_filters(), page_params()].concat(), None, (200, Some(list_envelope(json!({"type": "object", "properties": {
                "id": {"type": "string"}, "time": {"type": "string"}, "method": {"type": "string"}, "route": {"type": "string"},
                "status": {"type": "integer"}, "durationMs": {"type": "number"}, "ip": {"type": "string"}, "auth": {"type": "string"}
            }})))), &[400, 401, 403]),
        )
    })
    .at("/api/logs/stats", |m| {
        m.get(
            log_stats,
            op("requestLogStats", "Without step, PocketBase's shape: requests per hour with any, [{total, date}]; with step, counts per status class per step (default: the last 24 hours)", "observe", [log_filters(), vec![
                query_param("step", "Seconds per bucket; when given, the answer is the object with items per status class.", json!({"type": "integer", "minimum": 1})),
            ]].concat(), None, (200, Some(json!({"oneOf": [
                {"type": "array", "items": {"type": "object", "properties": {"total": {"type": "integer"}, "date": {"type": "string"}}}},
                {"type": "object", "properties": {"total": {"type": "integer"}, "items": {"type": "array", "items": {"type": "object"}}}}
            ]}))), &[400, 401, 403]),
        )
    })
    .at("/api/logs/:id", |m| {
        m.get(
            log_view,
            op("requestLogEntry", "One request log row by the id the list gives it (superusers, API keys with metrics.read)", "observe", vec![path_param("id", "Log row id.")], None, (200, Some(json!({"type": "object"}))), &[401, 403, 404]),
        )
    })
    .at("/api/alerts", |m| {
        m.get(
            alert_list,
            op("listAlertRules", "Alert rules with their state (superusers)", "observe", vec![], None, (200, Some(list_envelope(alert_rule.clone()))), &[401, 403]),
        )
        .post(
            alert_create,
            op("createAlertRule", "Create an alert rule over a history series (superusers)", "observe", vec![], Some(alert_input.clone()), (200, Some(alert_rule.clone())), &[400, 401, 403, 413, 415, 503, 507]),
        )
    })
    .at("/api/alerts/history", |m| {
        m.get(
            alert_history,
            op("alertHistory", "Firing and resolving transitions, newest first (superusers)", "observe", vec![
                query_param("rule", "Only this rule's transitions.", json!({"type": "string"})),
                query_param("perPage", "Most rows (default 30, at most 1000).", json!({"type": "integer", "minimum": 1})),
            ], None, (200, Some(list_envelope(json!({"type": "object"})))), &[400, 401, 403]),
        )
    })
    .at("/api/alerts/:id", |m| {
        m.get(
            alert_view,
            op("getAlertRule", "One alert rule (superusers)", "observe", vec![rule_id_param()], None, (200, Some(alert_rule.clone())), &[401, 403, 404]),
        )
        .patch(
            alert_update,
            op("updateAlertRule", "Change an alert rule; it starts over in the ok state (superusers)", "observe", vec![rule_id_param()], Some(alert_input), (200, Some(alert_rule)), &[400, 401, 403, 404, 413, 415, 503, 507]),
        )
        .delete(
            alert_delete,
            op("deleteAlertRule", "Delete an alert rule (superusers)", "observe", vec![rule_id_param()], None, (204, None), &[401, 403, 404, 503, 507]),
        )
    })
}

fn time_param(name: &str) -> Value {
    query_param(name, "Unix seconds or a date (2026-01-02 03:04:05.000Z).", json!({"type": "string"}))
}

/// The filters of the request log and its stats.
fn log_filters() -> Vec<Value> {
    vec![
        time_param("from"),
        time_param("to"),
        query_param("method", "HTTP method.", json!({"type": "string"})),
        query_param(
            "route",
            "Route template, e.g. /api/collections/{collection}/records/{id}.",
            json!({"type": "string"}),
        ),
        query_param("status", "Status code (404) or class (4xx).", json!({"type": "string"})),
        query_param("ip", "Client IP address.", json!({"type": "string"})),
        query_param("auth", "none, token or apiKey.", json!({"type": "string"})),
        query_param(
            "minDurationMs",
            "Only requests that took at least this long.",
            json!({"type": "number", "minimum": 0}),
        ),
    ]
}

fn rule_id_param() -> Value {
    path_param("id", "Alert rule id.")
}

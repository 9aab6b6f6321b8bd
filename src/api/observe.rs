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

use super::body::json_object;
use super::error::ApiError;
use super::guard::ClientIp;
use super::jobs::{envelope, require_superuser};
use super::{json_response, principal};
use crate::accounts::keys::METRICS_READ;
use crate::app::App;
use crate::auth::Principal;
use crate::jobs::paging;
use crate::observe::alerts::{self, RuleInput};
use crate::observe::history as stored;
use crate::observe::requests::LogFilter;

/// Superusers, or API keys holding `metrics.read`.
async fn require_reader(app: &App, req: &Request) -> Result<(), ApiError> {
    match principal(app, req).await {
        Principal::Superuser { .. } => Ok(()),
        Principal::ApiKey { scopes, .. } if scopes.capabilities.iter().any(|c| c == METRICS_READ) => Ok(()),
        Principal::Anonymous => Err(ApiError::unauthenticated(
            "Sign in as a superuser or send an API key with the metrics.read capability.",
        )),
        Principal::Record { .. } | Principal::ApiKey { .. } => Err(ApiError::forbidden(
            "Only superusers and API keys with the metrics.read capability can read metrics and logs.",
        )),
    }
}

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
        require_reader(app, req).await?;
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
    require_reader(app, req).await?;
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
    require_reader(app, req).await?;
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
    require_reader(app, req).await?;
    let filter = filter(&q)?;
    let step = parse_step(q.step.as_deref())?.unwrap_or(3600);
    let value = app.observe.requests.stats(filter, step * 1_000_000).await?;
    Ok(json_response(StatusCode::OK, &value))
}

/// `GET /api/alerts`: every alert rule with its state (superusers).
#[handler]
pub async fn alert_list(req: &Request, Data(app): Data<&Arc<App>>) -> Result<Response, ApiError> {
    require_superuser(app, req).await?;
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
    require_superuser(app, req).await?;
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
    require_superuser(app, req).await?;
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
    require_superuser(app, req).await?;
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
    require_superuser(app, req).await?;
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
    require_superuser(app, req).await?;
    let (_, per_page) = paging(None, q.per_page.as_deref())?;
    let rule = q.rule.map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
    let items = app.observe.alerts.history_rows(rule, per_page).await?;
    let total = items.len();
    Ok(json_response(StatusCode::OK, &envelope(1, per_page, total, items)))
}

//! `/api/collections/{c}/search`, `/api/search`, `/api/search/status`, `/api/search/reindex`.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::{Data, Path, Query};
use poem::{handler, Body, Request, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::access::superuser;
use super::body::json_object;
use super::error::ApiError;
use super::jobs::accepted;
use super::{caller, json_response};
use crate::app::App;
use crate::search::{SearchPage, SearchParams};

/// Query parameters of the search endpoints (unknown ones are ignored).
#[derive(Debug, Default, Deserialize)]
pub struct SearchQueryParams {
    q: Option<String>,
    filter: Option<String>,
    sort: Option<String>,
    page: Option<String>,
    #[serde(rename = "perPage")]
    per_page: Option<String>,
    fields: Option<String>,
    expand: Option<String>,
    #[serde(rename = "skipTotal")]
    skip_total: Option<String>,
    facets: Option<String>,
    collections: Option<String>,
}

impl From<SearchQueryParams> for SearchParams {
    fn from(q: SearchQueryParams) -> SearchParams {
        SearchParams {
            q: q.q,
            filter: q.filter,
            sort: q.sort,
            page: q.page,
            per_page: q.per_page,
            fields: q.fields,
            expand: q.expand,
            skip_total: q.skip_total,
            facets: q.facets,
            collections: q.collections,
        }
    }
}

fn envelope(page: SearchPage) -> Value {
    let mut body = super::records::list_envelope(page.page, page.per_page, page.total_items, page.items);
    if let Some(facets) = page.facets {
        body["facets"] = Value::Object(facets);
    }
    body
}

#[handler]
pub async fn collection_search(
    req: &Request,
    Path(collection): Path<String>,
    Query(q): Query<SearchQueryParams>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let (who, info) = caller(app, req).await;
    let page = app.search.search_collection(&who, &collection, q.into(), &info).await?;
    Ok(json_response(StatusCode::OK, &envelope(page)))
}

#[handler]
pub async fn search_all(
    req: &Request,
    Query(q): Query<SearchQueryParams>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let (who, info) = caller(app, req).await;
    let page = app.search.search_all(&who, q.into(), &info).await?;
    Ok(json_response(StatusCode::OK, &envelope(page)))
}

/// The indexer's state: lag, sequence numbers, documents (superusers).
#[handler]
pub async fn search_status(req: &Request, Data(app): Data<&Arc<App>>) -> Result<Response, ApiError> {
    superuser(app, req).await?;
    let status = app.search.status().await?;
    Ok(json_response(StatusCode::OK, &json!(status)))
}

fn collection_member(body: &serde_json::Map<String, Value>) -> Option<String> {
    body.get("collection").and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(String::from)
}

/// Enqueues a `search.reindex` job: `{"collection": "posts"}` or `{}` for everything.
#[handler]
pub async fn reindex(req: &Request, body: Body, Data(app): Data<&Arc<App>>) -> Result<Response, ApiError> {
    superuser(app, req).await?;
    let body = json_object(req, body, app.body_limits()).await?;
    let enqueued = app.search.enqueue_reindex(&app.jobs, collection_member(&body).as_deref()).await?;
    let status = if enqueued.duplicate { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok(accepted(&enqueued.job, status))
}

/// `backbone search reindex [collection]` through the admin socket.
#[handler]
pub async fn socket_reindex(
    req: &Request,
    body: Body,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let body = json_object(req, body, app.body_limits()).await?;
    let enqueued = app.search.enqueue_reindex(&app.jobs, collection_member(&body).as_deref()).await?;
    Ok(json_response(StatusCode::OK, &enqueued.job.to_json()))
}

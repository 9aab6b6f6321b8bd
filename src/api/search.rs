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
use super::openapi::{accepted_job, collection_param, list_envelope, op, page_params, query_param, r};
use super::{caller, json_response, Routes};
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

/// `/api/collections/{collection}/search`, `/api/search`, its status and reindexing.
pub(super) fn routes(api: Routes) -> Routes {
    api.at("/api/collections/:collection/search", |m| {
        m.get(
            collection_search,
            op("searchRecords", "Full-text search of one collection, ranked, obeying its list rule (results, totals and facets count only records the caller may list)", "search", [vec![collection_param()], search_params(), vec![
                query_param("filter", "Filter expression (the list filter language), combined with the query.", json!({"type": "string"})),
                query_param("sort", "Sort by plain fields instead of relevance (e.g. -created).", json!({"type": "string"})),
                query_param("expand", "Relations to embed (as for list).", json!({"type": "string"})),
                query_param("facets", "Comma-separated select fields to count values of.", json!({"type": "string"})),
            ]].concat(), None, (200, Some(r("SearchResults"))), &[400, 403, 404, 503]),
        )
    })
    .at("/api/search", |m| {
        m.get(
            search_all,
            op("searchAll", "Full-text search across collections (default: every searchable one the caller may list), merged by score", "search", [search_params(), vec![
                query_param("collections", "Comma-separated collection names or ids.", json!({"type": "string"})),
            ]].concat(), None, (200, Some(r("SearchResults"))), &[400, 404, 503]),
        )
    })
    .at("/api/search/status", |m| {
        m.get(
            search_status,
            op("searchStatus", "Indexer state and index lag (superusers)", "search", vec![], None, (200, Some(r("SearchStatus"))), &[401, 403]),
        )
    })
    .at("/api/search/reindex", |m| {
        m.post(
            reindex,
            accepted_job(
                op(
                    "searchReindex",
                    "Enqueue a search.reindex job for one collection ({\"collection\": \"posts\"}) or the whole index ({}) (superusers)",
                    "search",
                    vec![],
                    Some(json!({"type": "object", "properties": {"collection": {"type": "string"}}})),
                    (202, Some(r("Job"))),
                    &[400, 401, 403, 404, 413, 415, 503, 507],
                ),
                Some("A full rebuild is already waiting or running"),
            ),
        )
    })
}

/// The query parameters both searches take.
fn search_params() -> Vec<Value> {
    let mut params = vec![query_param("q", "The search: words (all must match, typos tolerated from 5 letters, the last one also as a prefix unless followed by a space), \"phrases\", field:word, -excluded.", json!({"type": "string", "maxLength": 1000})),];
    params.extend(page_params());
    params.extend([
        query_param("fields", "Comma-separated fields to return (as for list).", json!({"type": "string"})),
        query_param("skipTotal", "1 to skip counting (totals are -1).", json!({"type": "string"})),
    ]);
    params
}

/// Schemas of search settings, hits and the indexer's state.
pub(super) fn schemas() -> Value {
    json!({
        "SearchSettings": {
            "type": "object",
            "description": "Full-text search settings of a collection (Backbone extension).",
            "properties": {
                "enabled": {"type": "boolean"},
                "language": {"type": "string", "enum": ["default", "english"]},
                "fields": {"type": "array", "maxItems": 32, "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}, "boost": {"type": "number", "exclusiveMinimum": 0, "maximum": 100, "default": 1}}
                }}
            }
        },
        "SearchHit": {
            "type": "object",
            "description": "A record as list renders it, plus `@search`.",
            "properties": {
                "collectionId": {"type": "string"},
                "collectionName": {"type": "string"},
                "id": {"type": "string"},
                "@search": {"type": "object", "properties": {
                    "score": {"type": "number", "description": "BM25 with field boosts; typo and prefix matches score lower"},
                    "highlights": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Searched field → HTML-escaped snippet with <mark> around matches"}
                }}
            },
            "additionalProperties": true
        },
        "SearchResults": {
            "allOf": [list_envelope(r("SearchHit")), {"type": "object", "properties": {
                "facets": {"type": "object", "description": "With `facets`: select field → value → count of visible matches", "additionalProperties": {"type": "object", "additionalProperties": {"type": "integer"}}}
            }}]
        },
        "SearchStatus": {
            "type": "object",
            "properties": {
                "healthy": {"type": "boolean"},
                "rebuilding": {"type": "boolean"},
                "outboxSeq": {"type": "integer"},
                "indexedSeq": {"type": "integer"},
                "lag": {"type": "integer", "description": "outboxSeq - indexedSeq: changes not yet searchable"},
                "documents": {"type": "integer"}
            }
        },
    })
}

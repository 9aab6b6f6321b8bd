//! `/api/collections`: collection definitions (superusers only).

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::{Data, Path, Query};
use poem::{handler, Body, Request, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::access::superuser;
use super::body::json_value;
use super::error::ApiError;
use super::guard::client_ip;
use super::openapi::{collection_param, list_envelope, op, page_params, problem_ref, query_param, r};
use super::{json_response, principal, Routes};
use crate::app::App;
use crate::records::schema;

#[derive(Debug, Deserialize)]
pub struct PageParams {
    page: Option<String>,
    #[serde(rename = "perPage")]
    per_page: Option<String>,
    filter: Option<String>,
    sort: Option<String>,
    #[serde(rename = "skipTotal")]
    skip_total: Option<String>,
}

pub(crate) fn page_number(raw: Option<&str>, default: usize, name: &str) -> Result<usize, ApiError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(default),
        Some(s) => s
            .parse::<i64>()
            .map(|n| if n < 1 { default } else { n as usize })
            .map_err(|_| ApiError::bad_request(format!("{name} must be a whole number, got {s:?}."))),
    }
}

#[handler]
pub async fn list(
    req: &Request,
    Query(params): Query<PageParams>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let who = superuser(app, req).await?;
    let page = page_number(params.page.as_deref(), 1, "page")?;
    let per_page = page_number(params.per_page.as_deref(), 30, "perPage")?.min(1000);
    let all =
        app.records.collections().list_matching(&who, params.filter.as_deref(), params.sort.as_deref())?;
    let total = all.len();
    let items: Vec<_> = all.into_iter().skip((page - 1).saturating_mul(per_page)).take(per_page).collect();
    // As PocketBase: with skipTotal the totals are -1.
    let skip_total =
        matches!(params.skip_total.as_deref().map(str::trim), Some("1" | "true" | "TRUE" | "True"));
    let (total_items, total_pages) =
        if skip_total { (json!(-1), json!(-1)) } else { (json!(total), json!(total.div_ceil(per_page))) };
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "page": page,
            "perPage": per_page,
            "totalItems": total_items,
            "totalPages": total_pages,
            "items": items,
        }),
    ))
}

/// `GET /api/collections/meta/scaffolds`: the default shape of a new collection per type.
#[handler]
pub async fn scaffolds(req: &Request, Data(app): Data<&Arc<App>>) -> Result<Response, ApiError> {
    let who = superuser(app, req).await?;
    let scaffolds = app.records.collections().scaffolds(&who)?;
    Ok(json_response(StatusCode::OK, &scaffolds))
}

/// `DELETE /api/collections/{collection}/truncate`: deletes every record (204).
#[handler]
pub async fn truncate(
    req: &Request,
    Path(collection): Path<String>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let who = superuser(app, req).await?;
    app.records.truncate(&who, &collection).await?;
    Ok(Response::builder().status(StatusCode::NO_CONTENT).finish())
}

#[handler]
pub async fn create(req: &Request, body: Body, Data(app): Data<&Arc<App>>) -> Result<Response, ApiError> {
    let who = superuser(app, req).await?;
    let input = json_value(req, body, app.body_limits()).await?;
    let created = app.records.collections().create(&who, input, &client_ip(req)).await?;
    Ok(json_response(StatusCode::OK, &json!(created)))
}

#[handler]
pub async fn view(
    req: &Request,
    Path(collection): Path<String>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let who = superuser(app, req).await?;
    let found = app.records.collections().get(&who, &collection)?;
    Ok(json_response(StatusCode::OK, &json!(found)))
}

#[handler]
pub async fn update(
    req: &Request,
    Path(collection): Path<String>,
    body: Body,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let who = superuser(app, req).await?;
    let input = json_value(req, body, app.body_limits()).await?;
    let updated = app.records.collections().update(&who, &collection, input, &client_ip(req)).await?;
    Ok(json_response(StatusCode::OK, &json!(updated)))
}

#[handler]
pub async fn delete(
    req: &Request,
    Path(collection): Path<String>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let who = superuser(app, req).await?;
    app.records.collections().delete(&who, &collection, &client_ip(req)).await?;
    app.files.collection_deleted().await;
    Ok(Response::builder().status(StatusCode::NO_CONTENT).finish())
}

/// JSON Schema 2020-12 of the collection's records. Visible to exactly those who find the
/// collection in their `/api/openapi.json` (`schema::shape_visible`), and described as
/// there: without hidden fields for anyone but superusers.
#[handler]
pub async fn json_schema(
    req: &Request,
    Path(collection): Path<String>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let who = principal(app, req).await;
    let entry = app.records.collection(&collection)?;
    if !schema::shape_visible(&who, &entry.collection) {
        return Err(ApiError::forbidden("Only superusers can perform this action."));
    }
    let c = schema::visible_collection(&who, &entry.collection);
    let doc = schema::json_schema_document(&c, &app.public_url());
    Ok(Response::builder()
        .status(StatusCode::OK)
        .content_type("application/schema+json")
        .body(serde_json::to_vec(&doc).unwrap_or_default()))
}

/// `/api/collections`, `/api/collections/{collection}` and its JSON Schema.
pub(super) fn routes(api: Routes) -> Routes {
    api.at("/api/collections", |m| {
        m.get(
            list,
            op("listCollections", "List collections (superusers); filter and sort name id, name, type, system, created, updated and the rules", "collections", [page_params(), vec![
                query_param("filter", "A filter over id, name, type, system, created, updated, listRule, viewRule, createRule, updateRule, deleteRule.", json!({"type": "string"})),
                query_param("sort", "Comma-separated members of the same list, `-` for descending.", json!({"type": "string"})),
                query_param("skipTotal", "true: totalItems and totalPages are -1.", json!({"type": "boolean"})),
            ]].concat(), None, (200, Some(r("CollectionList"))), &[400, 403]),
        )
        .post(
            create,
            op("createCollection", "Create a collection (superusers)", "collections", vec![], Some(r("CollectionInput")), (200, Some(r("Collection"))), &[400, 403, 413, 415]),
        )
    })
    .at("/api/collections/:collection", |m| {
        m.get(
            view,
            op("getCollection", "View a collection (superusers)", "collections", vec![collection_param()], None, (200, Some(r("Collection"))), &[403, 404]),
        )
        .patch(
            update,
            op("updateCollection", "Update a collection; records are migrated or the change is refused (superusers)", "collections", vec![collection_param()], Some(r("CollectionInput")), (200, Some(r("Collection"))), &[400, 403, 404, 409, 413, 415]),
        )
        .delete(
            delete,
            op("deleteCollection", "Delete a collection and its records (superusers)", "collections", vec![collection_param()], None, (204, None), &[400, 403, 404]),
        )
    })
    .at("/api/collections/meta/scaffolds", |m| {
        m.get(
            scaffolds,
            op("collectionScaffolds", "The default shape of a new collection, by type: auth, base, view (superusers)", "collections", vec![], None, (200, Some(json!({"type": "object", "properties": {"auth": r("Collection"), "base": r("Collection"), "view": {"type": "object"}}}))), &[403]),
        )
    })
    .at("/api/collections/:collection/truncate", |m| {
        m.delete(
            truncate,
            op("truncateCollection", "Delete every record of a collection, with cascades and file removal, all or nothing (superusers)", "collections", vec![collection_param()], None, (204, None), &[400, 403, 404]),
        )
    })
    .at("/api/collections/:collection/schema", |m| {
        m.get(
            json_schema,
            json!({
                "operationId": "getCollectionSchema",
                "summary": "JSON Schema (2020-12) of the collection's records",
                "tags": ["collections"],
                "parameters": [collection_param()],
                "responses": {
                    "200": {"description": "JSON Schema", "content": {"application/schema+json": {"schema": {"type": "object"}}}},
                    "401": problem_ref(),
                    "403": problem_ref(),
                    "404": problem_ref()
                }
            }),
        )
    })
}

/// Schemas of collection definitions.
pub(super) fn schemas() -> Value {
    json!({
        "Field": {
            "type": "object",
            "required": ["name", "type"],
            "properties": {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "type": {"type": "string", "enum": ["text", "number", "bool", "email", "url", "date", "autodate", "select", "json", "editor", "password", "relation"]},
                "system": {"type": "boolean"},
                "hidden": {"type": "boolean"},
                "presentable": {"type": "boolean"},
                "required": {"type": "boolean"}
            },
            "additionalProperties": true
        },
        "Collection": {
            "type": "object",
            "required": ["id", "name", "type", "fields"],
            "properties": {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "type": {"type": "string", "enum": ["base", "auth"]},
                "system": {"type": "boolean"},
                "fields": {"type": "array", "items": r("Field")},
                "indexes": {"type": "array", "items": {"type": "string"}},
                "listRule": {"type": ["string", "null"]},
                "viewRule": {"type": ["string", "null"]},
                "createRule": {"type": ["string", "null"]},
                "updateRule": {"type": ["string", "null"]},
                "deleteRule": {"type": ["string", "null"]},
                "search": r("SearchSettings"),
                "created": {"type": "string"},
                "updated": {"type": "string"}
            },
            "additionalProperties": true
        },
        "CollectionInput": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "type": {"type": "string", "enum": ["base"]},
                "fields": {"type": "array", "items": r("Field")},
                "indexes": {"type": "array", "items": {"type": "string"}, "maxItems": 0},
                "listRule": {"type": ["string", "null"]},
                "viewRule": {"type": ["string", "null"]},
                "createRule": {"type": ["string", "null"]},
                "updateRule": {"type": ["string", "null"]},
                "deleteRule": {"type": ["string", "null"]}
            }
        },
        "CollectionList": list_envelope(r("Collection")),
    })
}

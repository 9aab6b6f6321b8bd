//! `/api/collections`: collection definitions (superusers only).

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::{Data, Path, Query};
use poem::{handler, Body, Request, Response};
use serde::Deserialize;
use serde_json::json;

use super::access::superuser;
use super::body::json_value;
use super::error::ApiError;
use super::guard::client_ip;
use super::{json_response, principal};
use crate::app::App;
use crate::records::schema;

#[derive(Debug, Deserialize)]
pub struct PageParams {
    page: Option<String>,
    #[serde(rename = "perPage")]
    per_page: Option<String>,
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
    let all = app.records.list_collections(&who)?;
    let total = all.len();
    let items: Vec<_> = all.into_iter().skip((page - 1).saturating_mul(per_page)).take(per_page).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "page": page,
            "perPage": per_page,
            "totalItems": total,
            "totalPages": total.div_ceil(per_page),
            "items": items,
        }),
    ))
}

#[handler]
pub async fn create(req: &Request, body: Body, Data(app): Data<&Arc<App>>) -> Result<Response, ApiError> {
    let who = superuser(app, req).await?;
    let input = json_value(req, body, app.body_limits()).await?;
    let created = app.records.create_collection(&who, input, &client_ip(req)).await?;
    Ok(json_response(StatusCode::OK, &json!(created)))
}

#[handler]
pub async fn view(
    req: &Request,
    Path(collection): Path<String>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let who = superuser(app, req).await?;
    let found = app.records.get_collection(&who, &collection)?;
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
    let updated = app.records.update_collection(&who, &collection, input, &client_ip(req)).await?;
    Ok(json_response(StatusCode::OK, &json!(updated)))
}

#[handler]
pub async fn delete(
    req: &Request,
    Path(collection): Path<String>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let who = superuser(app, req).await?;
    app.records.delete_collection(&who, &collection, &client_ip(req)).await?;
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

//! `/api/collections/{c}/records`: record CRUD in PocketBase's dialect.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::{Data, Path, Query};
use poem::{handler, Body, Request, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::files::{discard_temps, record_body};
use super::openapi::{
    self, collection_param, expand_param, fields_param, list_params, op, r, record_id_param, with_multipart,
};
use super::{caller, json_response, Routes};
use crate::app::App;
use crate::records::list::ListParams;
use crate::records::RecordWrite;

/// Query parameters of the list endpoint (unknown ones are ignored, as PocketBase does).
#[derive(Debug, Default, Deserialize)]
pub struct ListQueryParams {
    page: Option<String>,
    #[serde(rename = "perPage")]
    per_page: Option<String>,
    sort: Option<String>,
    filter: Option<String>,
    expand: Option<String>,
    fields: Option<String>,
    #[serde(rename = "skipTotal")]
    skip_total: Option<String>,
    cursor: Option<String>,
    explain: Option<String>,
}

/// Query parameters of the single-record endpoints.
#[derive(Debug, Default, Deserialize)]
pub struct ViewQueryParams {
    expand: Option<String>,
    fields: Option<String>,
}

/// The list envelope of records (also of search hits): without a total (`skipTotal`),
/// `totalItems` and `totalPages` are -1, as in PocketBase.
pub(crate) fn list_envelope(
    page: usize,
    per_page: usize,
    total: Option<u64>,
    items: Vec<serde_json::Value>,
) -> serde_json::Value {
    let (total_items, total_pages) = match total {
        Some(total) => (total as i64, total.div_ceil(per_page.max(1) as u64) as i64),
        None => (-1, -1),
    };
    json!({
        "page": page,
        "perPage": per_page,
        "totalItems": total_items,
        "totalPages": total_pages,
        "items": items,
    })
}

#[handler]
pub async fn list(
    req: &Request,
    Path(collection): Path<String>,
    Query(q): Query<ListQueryParams>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let (who, info) = caller(app, req).await;
    let params = ListParams {
        page: q.page,
        per_page: q.per_page,
        sort: q.sort,
        filter: q.filter,
        expand: q.expand,
        fields: q.fields,
        skip_total: q.skip_total,
        cursor: q.cursor,
        explain: q.explain,
    };
    let page = app.records.list_records(&who, &collection, params, &info).await?;
    let mut body = list_envelope(page.page, page.per_page, page.total_items, page.items);
    if let Some(next) = page.next_cursor {
        body["nextCursor"] = json!(next);
    }
    if let Some(plan) = page.explain {
        body["explain"] = plan;
    }
    Ok(json_response(StatusCode::OK, &body))
}

#[handler]
pub async fn view(
    req: &Request,
    Path((collection, id)): Path<(String, String)>,
    Query(q): Query<ViewQueryParams>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let (who, info) = caller(app, req).await;
    let record = app
        .records
        .get_record(&who, &collection, &id, q.fields.as_deref(), q.expand.as_deref(), &info)
        .await?;
    Ok(json_response(StatusCode::OK, &record))
}

#[handler]
pub async fn create(
    req: &Request,
    Path(collection): Path<String>,
    Query(q): Query<ViewQueryParams>,
    body: Body,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let (who, info) = caller(app, req).await;
    // Resolve the collection first so an unknown one is a 404 whatever the body.
    app.records.collection(&collection)?;
    let (input, uploads, temps) = record_body(app, req, body, &collection).await?;
    let created = match app.records.check_expand(&who, &collection, q.expand.as_deref()) {
        Ok(()) => {
            app.records.create_record(&who, &collection, RecordWrite { body: input, uploads }, &info).await
        }
        Err(e) => Err(e),
    };
    discard_temps(temps).await;
    let record = created?;
    let record = app.records.expand_response(&who, &collection, record, q.expand.as_deref(), &info).await?;
    Ok(json_response(StatusCode::OK, &record))
}

#[handler]
pub async fn update(
    req: &Request,
    Path((collection, id)): Path<(String, String)>,
    Query(q): Query<ViewQueryParams>,
    body: Body,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let (who, info) = caller(app, req).await;
    app.records.collection(&collection)?;
    let (input, uploads, temps) = record_body(app, req, body, &collection).await?;
    let updated = match app.records.check_expand(&who, &collection, q.expand.as_deref()) {
        Ok(()) => {
            app.records
                .update_record(&who, &collection, &id, RecordWrite { body: input, uploads }, &info, None)
                .await
        }
        Err(e) => Err(e),
    };
    discard_temps(temps).await;
    let record = updated?;
    let record = app.records.expand_response(&who, &collection, record, q.expand.as_deref(), &info).await?;
    Ok(json_response(StatusCode::OK, &record))
}

#[handler]
pub async fn delete(
    req: &Request,
    Path((collection, id)): Path<(String, String)>,
    Data(app): Data<&Arc<App>>,
) -> Result<Response, ApiError> {
    let (who, info) = caller(app, req).await;
    app.records.delete_record(&who, &collection, &id, &info).await?;
    Ok(Response::builder().status(StatusCode::NO_CONTENT).finish())
}

/// `/api/collections/{collection}/records` and `.../records/{id}`.
pub(super) fn routes(api: Routes) -> Routes {
    api.at("/api/collections/:collection/records", |m| {
        m.get(
            list,
            op("listRecords", "List records", "records", [vec![collection_param()], list_params()].concat(), None, (200, Some(r("RecordList"))), &[400, 403, 404]),
        )
        .post(
            create,
            with_multipart(op("createRecord", "Create a record (JSON, or multipart/form-data with files)", "records", vec![collection_param()], Some(r("RecordBody")), (200, Some(r("Record"))), &[400, 403, 404, 409, 413, 415, 503, 507])),
        )
    })
    .at("/api/collections/:collection/records/:id", |m| {
        m.get(
            view,
            op("getRecord", "View a record", "records", vec![collection_param(), record_id_param(), fields_param(), expand_param()], None, (200, Some(r("Record"))), &[400, 403, 404]),
        )
        .patch(
            update,
            with_multipart(op("updateRecord", "Update a record (absent fields are kept; multipart/form-data with files, `field+`/`field-` to add/remove files)", "records", vec![collection_param(), record_id_param()], Some(r("RecordBody")), (200, Some(r("Record"))), &[400, 403, 404, 409, 413, 415, 503, 507])),
        )
        .delete(
            delete,
            op("deleteRecord", "Delete a record", "records", vec![collection_param(), record_id_param()], None, (204, None), &[403, 404, 409, 503, 507]),
        )
    })
}

/// Schemas of generic records.
pub(super) fn schemas() -> Value {
    json!({
        "Record": {
            "type": "object",
            "description": "A record; with `fields`, only the selected properties are present.",
            "properties": {
                "collectionId": {"type": "string"},
                "collectionName": {"type": "string"},
                "id": {"type": "string", "pattern": "^[a-z0-9]{15}$"},
                "created": {"type": "string"},
                "updated": {"type": "string"}
            },
            "additionalProperties": true
        },
        "RecordBody": {"type": "object", "additionalProperties": true},
        "RecordList": openapi::list_envelope(r("Record")),
    })
}

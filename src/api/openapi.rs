//! The OpenAPI 3.1 description of the API: the shared pieces and the assembly.
//!
//! Each area (`api::jobs`, `api::mail`, ...) registers its routes together with their
//! operations (`Routes::at` in `api`) and owns its component schemas; this module holds what
//! they share (problem responses, parameters, envelopes), puts the static spec together
//! ([`static_spec`]) and adds the live per-collection part ([`live_spec_for`]).
//!
//! The static spec describes every endpoint with generic record bodies; it is committed as
//! `openapi/openapi.json` (a test fails when the file is stale; `backbone export-openapi`
//! regenerates it). [`live_spec`] adds typed paths and component schemas for every
//! collection that exists right now and that the caller may see, generated from its fields.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Request, Response};
use serde_json::{json, Map, Value};

use super::{json_response, Routes};
use crate::app::App;
use crate::auth::Principal;
use crate::records::schema::{record_schema, shape_visible, visible_collection, Shape};
use crate::records::Catalog;

pub(super) fn problem_ref() -> Value {
    json!({"$ref": "#/components/responses/Problem"})
}

fn errors(codes: &[u16]) -> Map<String, Value> {
    codes.iter().map(|c| (c.to_string(), problem_ref())).collect()
}

pub(super) fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

/// One operation: summary, tag, parameters, optional body schema, success status and schema.
pub(super) fn op(
    id: &str,
    summary: &str,
    tag: &str,
    params: Vec<Value>,
    body: Option<Value>,
    ok: (u16, Option<Value>),
    errs: &[u16],
) -> Value {
    let mut responses = errors(errs);
    // Any refusal can be a 401: credentials the server did not accept (malformed, expired,
    // revoked) are answered 401 with the reason (see `api::guard`).
    if errs.contains(&403) {
        responses.insert("401".into(), problem_ref());
    }
    // The HTTP layer refuses an over-long request line before any handler runs.
    responses.insert(
        "414".into(),
        json!({"description": "URI too long: the request line exceeds the server's limit (no body)"}),
    );
    let ok_response = match ok.1 {
        Some(schema) => json!({"description": "Success", "content": json_content(schema)}),
        None => json!({"description": "Success, no content"}),
    };
    responses.insert(ok.0.to_string(), ok_response);
    let mut o = json!({
        "operationId": id,
        "summary": summary,
        "tags": [tag],
        "parameters": params,
        "responses": responses,
    });
    if let Some(schema) = body {
        o["requestBody"] = json!({"required": true, "content": json_content(schema)});
    }
    o
}

/// Adds the multipart form a record write also accepts (files, PocketBase's SDK shape).
pub(super) fn with_multipart(mut operation: Value) -> Value {
    operation["requestBody"]["content"]["multipart/form-data"] = json!({"schema": {
        "type": "object",
        "description": "File parts under the field name (`name+`/`+name` append/prepend), text parts as values, `@jsonPayload` holding the other fields as a JSON object.",
        "additionalProperties": true
    }});
    operation
}

pub(super) fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": {"type": "string"}})
}

pub(super) fn query_param(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

pub(super) fn list_params() -> Vec<Value> {
    vec![
        query_param("page", "Page number, from 1.", json!({"type": "integer", "minimum": 1})),
        query_param(
            "perPage",
            "Items per page (default 30, at most 1000).",
            json!({"type": "integer", "minimum": 1}),
        ),
        query_param(
            "sort",
            "Comma-separated fields; `-` for descending; `@random`; relation paths through single relations (`author.name`). Ties break on id in the direction of the last key. An index whose columns are the sort keys (after columns the filter pins with `=`) serves the order without sorting.",
            json!({"type": "string"}),
        ),
        query_param(
            "filter",
            "Filter expression in PocketBase's language, e.g. `views > 10 && title ~ 'rust'`.",
            json!({"type": "string", "maxLength": 8192}),
        ),
        fields_param(),
        expand_param(),
        query_param("skipTotal", "Skip counting; totals are -1.", json!({"type": "boolean"})),
        query_param(
            "cursor",
            "Cursor paging (Backbone): empty to start, then the previous page's `nextCursor`; `page` is ignored.",
            json!({"type": "string"}),
        ),
        query_param("explain", "Superusers: add the chosen query plan as `explain` (strategy, index, pinned columns, range terms, whether the index serves the sort, records examined).", json!({"type": "boolean"})),
    ]
}

pub(super) fn expand_param() -> Value {
    query_param(
        "expand",
        "Comma-separated relation paths to embed (up to 6 levels), incl. back-relations `<collection>_via_<field>`.",
        json!({"type": "string"}),
    )
}

pub(super) fn r(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

pub(super) fn list_envelope(items: Value) -> Value {
    json!({
        "type": "object",
        "required": ["page", "perPage", "totalItems", "totalPages", "items"],
        "properties": {
            "page": {"type": "integer"},
            "perPage": {"type": "integer"},
            "totalItems": {"type": "integer", "description": "-1 with skipTotal"},
            "totalPages": {"type": "integer", "description": "-1 with skipTotal"},
            "nextCursor": {"type": ["string", "null"], "description": "With `cursor`: the next page's cursor, null on the last page"},
            "items": {"type": "array", "items": items},
        }
    })
}

/// `fields`: which properties an answer carries.
pub(super) fn fields_param() -> Value {
    query_param("fields", "Comma-separated fields to return: names, dotted paths into expand and JSON values (`expand.author.name`), `*` for the rest of a level, `name:excerpt(max[,ellipsis])` at any depth.", json!({"type": "string"}))
}

/// `{collection}`: a collection's id or name.
pub(super) fn collection_param() -> Value {
    path_param("collection", "Collection id or name.")
}

/// `{id}`: a record's id.
pub(super) fn record_id_param() -> Value {
    path_param("id", "Record id (15 characters a-z0-9).")
}

/// `page` and `perPage` of the plain paged lists.
pub(super) fn page_params() -> Vec<Value> {
    vec![
        query_param("page", "Page number, from 1.", json!({"type": "integer", "minimum": 1})),
        query_param("perPage", "Items per page (at most 1000).", json!({"type": "integer", "minimum": 1})),
    ]
}

/// An operation whose 202 answer is a job, with its `Location`; `duplicate`, when given, is
/// the 200 answered instead when the same work already waits or runs.
pub(super) fn accepted_job(mut operation: Value, duplicate: Option<&str>) -> Value {
    operation["responses"]["202"]["headers"] =
        json!({"Location": {"description": "/api/jobs/{id}", "schema": {"type": "string"}}});
    if let Some(description) = duplicate {
        operation["responses"]["200"] =
            json!({"description": description, "content": json_content(r("Job"))});
    }
    operation
}

/// The OpenAPI path of a route template: `/api/jobs/:id` → `/api/jobs/{id}` (and `*rest` →
/// `{rest}`).
pub(super) fn path_of(template: &str) -> String {
    template
        .split('/')
        .map(|part| match part.strip_prefix(':').or_else(|| part.strip_prefix('*')) {
            Some(name) => format!("{{{name}}}"),
            None => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// `GET /api/openapi.json`.
pub(super) fn routes(api: Routes) -> Routes {
    api.at("/api/openapi.json", |m| {
        m.get(
            live_spec,
            op(
                "openapi",
                "This specification, with typed paths for every collection",
                "meta",
                vec![],
                None,
                (200, Some(json!({"type": "object"}))),
                &[],
            ),
        )
    })
}

/// The component schemas, area by area.
fn components() -> Value {
    let mut schemas = Map::new();
    schemas.insert(
        "Problem".into(),
        json!({
            "type": "object",
            "description": "RFC 9457 problem details, also PocketBase's error shape.",
            "required": ["type", "title", "status", "detail", "message", "data"],
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "message": {"type": "string"},
                "data": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}}
                    }
                }
            }
        }),
    );
    for area in [
        super::records::schemas(),
        super::collections::schemas(),
        super::search::schemas(),
        super::auth::sign_in_schemas(),
        super::batch::schemas(),
        super::auth::setup_schemas(),
        super::jobs::schemas(),
        super::mail::schemas(),
        super::auth::session_schemas(),
        super::keys::schemas(),
        super::realtime::schemas(),
    ] {
        if let Value::Object(area) = area {
            schemas.extend(area);
        }
    }
    json!({
        "schemas": schemas,
        "responses": {
            "Problem": {
                "description": "Error (problem+json)",
                "content": {"application/problem+json": {"schema": r("Problem")}}
            }
        },
        "securitySchemes": {
            "token": {
                "type": "apiKey",
                "in": "header",
                "name": "Authorization",
                "description": "An auth token from auth-with-password, or an API key (`bbk_…`), optionally prefixed with `Bearer `."
            }
        }
    })
}

/// The spec of the static API (no user collections).
pub fn static_spec() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Backbone API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Backbone's REST API: PocketBase's dialect plus extensions. Errors are application/problem+json.",
            "license": {"name": "MIT", "identifier": "MIT"}
        },
        "security": [{}, {"token": []}],
        "tags": [
            {"name": "health"}, {"name": "meta"}, {"name": "auth"}, {"name": "collections"}, {"name": "records"},
            {"name": "search"}, {"name": "files"}, {"name": "jobs"}, {"name": "crons"}, {"name": "settings"},
            {"name": "mail"}, {"name": "keys"}, {"name": "audit"}, {"name": "observe"},
            {"name": "realtime", "description": "PocketBase's realtime protocol (server-sent events) over the durable change feed."},
            {"name": "pending", "description": "PocketBase endpoints Backbone does not serve yet: each answers 501 with what to use meanwhile."}
        ],
        "paths": super::route_table().paths,
        "components": components(),
    })
}

/// A component-name-safe form of a collection name.
fn component_name(collection: &str) -> String {
    let mut out = String::new();
    let mut upper = true;
    for ch in collection.chars() {
        if ch == '_' {
            upper = true;
            continue;
        }
        if upper {
            out.extend(ch.to_uppercase());
            upper = false;
        } else {
            out.push(ch);
        }
    }
    out
}

/// The static spec plus typed paths and schemas for every collection in `catalog` that
/// `who` may see the shape of ([`shape_visible`]: superusers all of them, API keys those
/// their scopes let them list or view, anyone else those whose list or view rule is not
/// superuser-only), described without hidden fields unless `who` is a superuser. The
/// static part is the same for everyone.
pub fn live_spec_for(catalog: &Catalog, who: &Principal) -> Value {
    let mut spec = static_spec();
    for entry in catalog.all() {
        if !shape_visible(who, &entry.collection) {
            continue;
        }
        let collection = &*visible_collection(who, &entry.collection);
        let base = component_name(&collection.name);
        let (rec, create, update, list) = (
            format!("{base}Record"),
            format!("{base}Create"),
            format!("{base}Update"),
            format!("{base}List"),
        );
        if let Some(schemas) = spec.pointer_mut("/components/schemas").and_then(Value::as_object_mut) {
            // Answers carry every property unless `fields` picks a subset, so the API's
            // record schema names none as required (the standalone JSON Schema at
            // /api/collections/{c}/schema describes a whole record and does).
            let mut response = record_schema(collection, Shape::Response);
            if let Some(map) = response.as_object_mut() {
                map.remove("required");
                map.insert(
                    "description".into(),
                    json!("A record; with `fields`, only the selected properties are present."),
                );
            }
            schemas.insert(rec.clone(), response);
            schemas.insert(create.clone(), record_schema(collection, Shape::Create));
            schemas.insert(update.clone(), record_schema(collection, Shape::Update));
            schemas.insert(list.clone(), list_envelope(r(&rec)));
        }
        let tag = format!("collection: {}", collection.name);
        let id = record_id_param;
        let name = &collection.name;
        let records_path = json!({
            "get": op(&format!("list_{name}"), &format!("List {name} records"), &tag, list_params(), None, (200, Some(r(&list))), &[400, 403, 404]),
            "post": op(&format!("create_{name}"), &format!("Create a {name} record"), &tag, vec![], Some(r(&create)), (200, Some(r(&rec))), &[400, 403, 404, 409, 413, 415, 503, 507]),
        });
        let record_path = json!({
            "get": op(&format!("get_{name}"), &format!("View a {name} record"), &tag, vec![id()], None, (200, Some(r(&rec))), &[403, 404]),
            "patch": op(&format!("update_{name}"), &format!("Update a {name} record"), &tag, vec![id()], Some(r(&update)), (200, Some(r(&rec))), &[400, 403, 404, 409, 413, 415, 503, 507]),
            "delete": op(&format!("delete_{name}"), &format!("Delete a {name} record"), &tag, vec![id()], None, (204, None), &[403, 404, 409, 503, 507]),
        });
        if let Some(paths) = spec.get_mut("paths").and_then(Value::as_object_mut) {
            paths.insert(format!("/api/collections/{name}/records"), records_path);
            paths.insert(format!("/api/collections/{name}/records/{{id}}"), record_path);
        }
        if let Some(tags) = spec.get_mut("tags").and_then(Value::as_array_mut) {
            tags.push(json!({"name": tag}));
        }
    }
    spec
}

/// `GET /api/openapi.json`.
#[handler]
pub async fn live_spec(req: &Request, Data(app): Data<&Arc<App>>) -> Response {
    let who = super::principal(app, req).await;
    let mut spec = live_spec_for(&app.records.catalog(), &who);
    spec["servers"] = json!([{"url": app.public_url()}]);
    json_response(StatusCode::OK, &spec)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::static_spec;

    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    out.push(target);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_names_a_component() {
        let spec = static_spec();
        let mut targets = Vec::new();
        refs(&spec, &mut targets);
        assert!(!targets.is_empty());
        for target in targets {
            let pointer = target.strip_prefix('#').expect("a local reference");
            assert!(spec.pointer(pointer).is_some(), "{target} names no component");
        }
    }

    #[test]
    fn every_operation_has_a_declared_tag_and_every_tag_is_used() {
        let spec = static_spec();
        let declared: Vec<&str> =
            spec["tags"].as_array().expect("tags").iter().filter_map(|t| t["name"].as_str()).collect();
        let mut used = Vec::new();
        for item in spec["paths"].as_object().expect("paths").values() {
            for operation in item.as_object().expect("path item").values() {
                let tag = operation["tags"][0].as_str().expect("a tag");
                assert!(declared.contains(&tag), "{tag} is not declared");
                used.push(tag);
            }
        }
        for tag in declared {
            assert!(used.contains(&tag), "{tag} is declared but unused");
        }
    }

    #[test]
    fn every_operation_describes_exactly_its_path_parameters() {
        let spec = static_spec();
        for (path, item) in spec["paths"].as_object().expect("paths") {
            let mut in_path: Vec<&str> =
                path.split('/').filter_map(|p| p.strip_prefix('{')?.strip_suffix('}')).collect();
            in_path.sort_unstable();
            for (method, operation) in item.as_object().expect("path item") {
                let mut described: Vec<&str> = operation["parameters"]
                    .as_array()
                    .map(|ps| {
                        ps.iter().filter(|p| p["in"] == "path").filter_map(|p| p["name"].as_str()).collect()
                    })
                    .unwrap_or_default();
                described.sort_unstable();
                assert_eq!(described, in_path, "{method} {path}");
            }
        }
    }

    #[test]
    fn template_parameters_become_openapi_parameters() {
        assert_eq!(super::path_of("/api/jobs/:id/retry"), "/api/jobs/{id}/retry");
        assert_eq!(super::path_of("/api/docs/*path"), "/api/docs/{path}");
        assert_eq!(super::path_of("/_/"), "/_/");
    }
}

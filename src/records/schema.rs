//! JSON Schema (2020-12) of a collection's records, also used for the OpenAPI components.

use std::borrow::Cow;

use serde_json::{json, Map, Value};

use super::collection::Collection;
use super::field::{Field, FieldKind};
use crate::auth::{Op, Principal};

/// Which shape of the record a schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A record as returned by the API.
    Response,
    /// A create body.
    Create,
    /// An update body (every property optional).
    Update,
}

/// Schema of one field's value.
pub fn field_schema(field: &Field, shape: Shape) -> Value {
    let mut schema = match &field.kind {
        FieldKind::Text(o) => {
            let mut s = json!({"type": "string"});
            if o.min > 0 && shape != Shape::Response && !(o.primary_key && shape == Shape::Create) {
                s["minLength"] = json!(o.min);
            }
            s["maxLength"] = json!(if o.max == 0 { super::field::DEFAULT_TEXT_MAX } else { o.max });
            if !o.pattern.is_empty() {
                s["pattern"] = json!(o.pattern);
            }
            s
        }
        FieldKind::Editor(_) => json!({"type": "string", "contentMediaType": "text/html"}),
        FieldKind::Number(o) => {
            let mut s = json!({"type": if o.only_int { "integer" } else { "number" }});
            if let Some(min) = o.min {
                s["minimum"] = json!(min);
            }
            if let Some(max) = o.max {
                s["maximum"] = json!(max);
            }
            s
        }
        FieldKind::Bool(_) => json!({"type": "boolean"}),
        FieldKind::Email(_) => json!({"type": "string", "format": "email"}),
        FieldKind::Url(_) => json!({"type": "string", "format": "uri"}),
        FieldKind::Date(_) | FieldKind::Autodate(_) => {
            json!({"type": "string", "description": "UTC date-time, `YYYY-MM-DD HH:MM:SS.sssZ`", "examples": ["2024-01-31 12:00:00.000Z"]})
        }
        FieldKind::Select(o) => {
            let mut values: Vec<Value> = o.values.iter().map(|v| json!(v)).collect();
            if o.is_multiple() {
                json!({"type": "array", "items": {"type": "string", "enum": values}, "maxItems": o.max_select, "uniqueItems": true})
            } else {
                values.push(json!(""));
                json!({"type": "string", "enum": values})
            }
        }
        FieldKind::Json(_) => json!({}),
        FieldKind::Relation(o) => {
            let id = json!({"type": "string", "pattern": "^[a-z0-9]{15}$", "description": format!("Record id in collection {}", o.collection_id)});
            if o.is_multiple() {
                json!({"type": "array", "items": id, "maxItems": o.max_select, "uniqueItems": true})
            } else if shape == Shape::Response {
                json!({"type": "string", "description": format!("Record id in collection {} (empty when unset)", o.collection_id)})
            } else {
                id
            }
        }
        FieldKind::File(o) => {
            let name = json!({"type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9._-]*$", "description": "Stored file name; download from /api/files/{collection}/{recordId}/{filename}"});
            if o.is_multiple() {
                json!({"type": "array", "items": name, "maxItems": o.max_select, "uniqueItems": true})
            } else if shape == Shape::Response {
                json!({"type": "string", "description": "Stored file name (empty when unset)"})
            } else {
                name
            }
        }
        FieldKind::Password(o) => {
            json!({"type": "string", "writeOnly": true, "minLength": if o.min == 0 { 8 } else { o.min }})
        }
    };
    if let (Value::Object(map), true) = (&mut schema, matches!(field.kind, FieldKind::Autodate(_))) {
        map.insert("readOnly".into(), json!(true));
    }
    // An optional field's "no value" is its zero value ("" or 0), which the constraints
    // above (pattern, format, minimum, minLength) do not apply to.
    if !field.required {
        let zero = match &field.kind {
            FieldKind::Text(o) if !o.primary_key && (!o.pattern.is_empty() || o.min > 0) => Some(json!("")),
            FieldKind::Email(_) | FieldKind::Url(_) => Some(json!("")),
            FieldKind::Number(o) if o.min.is_some_and(|m| m > 0.0) || o.max.is_some_and(|m| m < 0.0) => {
                Some(json!(0))
            }
            _ => None,
        };
        if let Some(zero) = zero {
            schema = json!({"anyOf": [schema, {"const": zero}]});
        }
    }
    schema
}

/// The object schema of a collection's records in the given shape.
pub fn record_schema(collection: &Collection, shape: Shape) -> Value {
    let mut properties = Map::new();
    let mut required: Vec<Value> = Vec::new();
    if shape == Shape::Response {
        properties.insert("collectionId".into(), json!({"type": "string", "const": collection.id}));
        properties.insert("collectionName".into(), json!({"type": "string", "const": collection.name}));
        required.push(json!("collectionId"));
        required.push(json!("collectionName"));
    }
    for field in &collection.fields {
        let writable = !field.is_server_managed();
        let include = match shape {
            Shape::Response => !field.is_never_returned(),
            Shape::Create => writable,
            Shape::Update => writable && field.name != "id",
        };
        if !include {
            continue;
        }
        properties.insert(field.name.clone(), field_schema(field, shape));
        let is_required = match shape {
            Shape::Response => !(collection.is_auth() && field.name == "email"),
            Shape::Create => field.required && field.name != "id",
            Shape::Update => false,
        };
        if is_required {
            required.push(json!(field.name));
        }
    }
    if collection.is_auth() && shape != Shape::Response {
        properties.insert("passwordConfirm".into(), json!({"type": "string", "writeOnly": true}));
        if shape == Shape::Create {
            required.push(json!("passwordConfirm"));
        }
    }
    let title = match shape {
        Shape::Response => format!("{} record", collection.name),
        Shape::Create => format!("{} create body", collection.name),
        Shape::Update => format!("{} update body", collection.name),
    };
    json!({
        "title": title,
        "type": "object",
        "properties": properties,
        "required": required,
    })
}

/// The standalone JSON Schema document served at `/api/collections/{c}/schema`.
pub fn json_schema_document(collection: &Collection, base_url: &str) -> Value {
    let mut schema = record_schema(collection, Shape::Response);
    if let Value::Object(map) = &mut schema {
        let mut doc = Map::new();
        doc.insert("$schema".into(), json!("https://json-schema.org/draft/2020-12/schema"));
        doc.insert("$id".into(), json!(format!("{base_url}/api/collections/{}/schema", collection.name)));
        doc.extend(std::mem::take(map));
        doc.insert(
            "$defs".into(),
            json!({
                "create": record_schema(collection, Shape::Create),
                "update": record_schema(collection, Shape::Update),
            }),
        );
        return Value::Object(doc);
    }
    schema
}

/// Whether `principal` may see the shape of `collection`'s records (its paths and schemas
/// in `/api/openapi.json`, its `/api/collections/{c}/schema`): superusers always; an API
/// key when its scopes grant listing or viewing; anyone else when the list or the view
/// rule is not `null` (superusers only), i.e. when some record could reach them through
/// the API at all. A caller who may not see it gets neither the spec entry nor the schema.
pub fn shape_visible(principal: &Principal, collection: &Collection) -> bool {
    match principal {
        Principal::Superuser { .. } => true,
        Principal::ApiKey { scopes, .. } => {
            scopes.grants(collection.scope_target(), Op::List)
                || scopes.grants(collection.scope_target(), Op::View)
        }
        Principal::Anonymous | Principal::Record { .. } => {
            collection.list_rule.is_some() || collection.view_rule.is_some()
        }
    }
}

/// The collection as `principal` may see it described: superusers see every field, anyone
/// else (API keys included) never sees hidden fields, whose names and constraints are not
/// theirs to know. The one exception is an auth collection's system `password`, which stays
/// in the create and update bodies (write-only: signing up needs it, and every auth
/// collection has it); `password` and `tokenKey` are never in a response schema for anyone.
pub fn visible_collection<'a>(principal: &Principal, collection: &'a Collection) -> Cow<'a, Collection> {
    let shown = |f: &Field| !f.hidden || (collection.is_auth() && f.system && f.name == "password");
    if principal.is_superuser() || collection.fields.iter().all(shown) {
        return Cow::Borrowed(collection);
    }
    let mut described = collection.clone();
    described.fields.retain(shown);
    Cow::Owned(described)
}

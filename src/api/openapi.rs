//! The OpenAPI 3.1 description of the API.
//!
//! [`static_spec`] describes every endpoint with generic record bodies; it is committed as
//! `openapi/openapi.json` (a test fails when the file is stale; `backbone export-openapi`
//! regenerates it). [`live_spec`] adds typed paths and component schemas for every
//! collection that exists right now and that the caller may see, generated from its fields.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Request, Response};
use serde_json::{json, Map, Value};

use super::json_response;
use crate::app::App;
use crate::auth::Principal;
use crate::records::schema::{record_schema, shape_visible, visible_collection, Shape};
use crate::records::Catalog;

fn problem_ref() -> Value {
    json!({"$ref": "#/components/responses/Problem"})
}

fn errors(codes: &[u16]) -> Map<String, Value> {
    codes.iter().map(|c| (c.to_string(), problem_ref())).collect()
}

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

/// One operation: summary, tag, parameters, optional body schema, success status and schema.
fn op(
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
fn with_multipart(mut operation: Value) -> Value {
    operation["requestBody"]["content"]["multipart/form-data"] = json!({"schema": {
        "type": "object",
        "description": "File parts under the field name (`name+`/`+name` append/prepend), text parts as values, `@jsonPayload` holding the other fields as a JSON object.",
        "additionalProperties": true
    }});
    operation
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": {"type": "string"}})
}

fn query_param(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

fn list_params() -> Vec<Value> {
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
        query_param("fields", "Comma-separated fields to return: names, dotted paths into expand and JSON values (`expand.author.name`), `*` for the rest of a level, `name:excerpt(max[,ellipsis])` at any depth.", json!({"type": "string"})),
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

fn expand_param() -> Value {
    query_param(
        "expand",
        "Comma-separated relation paths to embed (up to 6 levels), incl. back-relations `<collection>_via_<field>`.",
        json!({"type": "string"}),
    )
}

fn r(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn list_envelope(items: Value) -> Value {
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

fn components() -> Value {
    let mut components = json!({
        "schemas": {
            "Problem": {
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
            },
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
            "RecordList": list_envelope(r("Record")),
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
            "AuthWithPassword": {
                "type": "object",
                "required": ["identity", "password"],
                "properties": {"identity": {"type": "string"}, "password": {"type": "string"}}
            },
            "AuthResponse": {
                "type": "object",
                "required": ["token", "record"],
                "properties": {"token": {"type": "string"}, "record": r("Record")}
            },
            "BatchRequest": {
                "type": "object",
                "required": ["requests"],
                "properties": {
                    "requests": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["method", "url"],
                            "properties": {
                                "method": {"type": "string", "enum": ["POST", "PUT", "PATCH", "DELETE"]},
                                "url": {"type": "string", "examples": ["/api/collections/posts/records"]},
                                "body": {"type": "object", "additionalProperties": true}
                            }
                        }
                    }
                }
            },
            "BatchResponse": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["status", "body"],
                    "properties": {"status": {"type": "integer"}, "body": {}}
                }
            },
            "SetupRequest": {
                "type": "object",
                "required": ["token", "email", "password"],
                "properties": {
                    "token": {"type": "string", "description": "The one-time token printed at first start."},
                    "email": {"type": "string", "format": "email"},
                    "password": {"type": "string", "minLength": 8}
                }
            }
        },
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
    });
    if let (Some(schemas), Value::Object(jobs)) = (components["schemas"].as_object_mut(), job_schemas()) {
        schemas.extend(jobs);
    }
    if let (Some(schemas), Value::Object(mail)) = (components["schemas"].as_object_mut(), mail_schemas()) {
        schemas.extend(mail);
    }
    if let (Some(schemas), Value::Object(more)) = (components["schemas"].as_object_mut(), access_schemas()) {
        schemas.extend(more);
    }
    components
}

/// Schemas of sign-in methods, API keys and the audit log.
fn access_schemas() -> Value {
    let key_props = json!({
        "id": {"type": "string"},
        "name": {"type": "string"},
        "scopes": {"type": "array", "items": {
            "type": "object",
            "properties": {
                "collection": {"type": "string", "description": "Collection id, or * for every collection."},
                "collectionName": {"type": "string"},
                "operations": {"type": "array", "items": {"enum": ["list", "view", "create", "update", "delete"]}}
            }
        }},
        "capabilities": {"type": "array", "items": {"enum": ["mail.send", "metrics.read"]}},
        "expires": {"type": "string", "description": "Expiry; empty = never."},
        "created": {"type": "string"},
        "createdBy": {"type": "string"},
        "lastUsed": {"type": "string", "description": "Last use (recorded at most once a minute); empty = never."}
    });
    let mut created_props = key_props.clone();
    created_props["key"] = json!({"type": "string", "description": "The secret key, `bbk_<id>_<secret>`: shown only in this answer."});
    json!({
        "AuthMethods": {
            "type": "object",
            "properties": {
                "password": {"type": "object", "properties": {"enabled": {"type": "boolean"}, "identityFields": {"type": "array", "items": {"type": "string"}}}},
                "oauth2": {"type": "object"},
                "mfa": {"type": "object"},
                "otp": {"type": "object", "properties": {"enabled": {"type": "boolean"}, "duration": {"type": "integer"}}}
            }
        },
        "LogoutInput": {
            "type": "object",
            "properties": {"all": {"type": "boolean", "description": "Revoke every token of the account, not only this one."}}
        },
        "ImpersonateInput": {
            "type": "object",
            "properties": {"duration": {"type": "integer", "minimum": 0, "description": "Token lifetime in seconds; 0 = the collection's."}}
        },
        "ApiKeyInput": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "maxLength": 200},
                "scopes": {"type": "object", "additionalProperties": {"type": "array", "items": {"enum": ["list", "view", "create", "update", "delete"]}}, "description": "Collection name or id (or *) → operations."},
                "capabilities": {"type": "array", "items": {"enum": ["mail.send", "metrics.read"]}},
                "expires": {"type": "string", "description": "A future date; absent = never."}
            }
        },
        "ApiKey": {"type": "object", "properties": key_props},
        "ApiKeyCreated": {"type": "object", "properties": created_props},
        "ApiKeyList": list_envelope(r("ApiKey")),
        "AuditEntry": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "time": {"type": "string"},
                "action": {"type": "string", "examples": ["auth.login", "auth.logout", "auth.impersonate", "collection.update", "settings.update", "apikey.create"]},
                "outcome": {"enum": ["success", "failure"]},
                "actor": {"type": "object", "properties": {"type": {"type": "string"}, "id": {"type": "string"}, "collectionId": {"type": "string"}}},
                "ip": {"type": "string"},
                "target": {"type": "string"},
                "detail": {}
            }
        },
        "AuditList": list_envelope(r("AuditEntry")),
    })
}

/// Schemas of `/api/jobs` and `/api/crons`.
fn job_schemas() -> Value {
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
            "CronList": list_envelope(r("Cron")),
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

/// Schemas of `/api/settings` and `/api/mail`.
fn mail_schemas() -> Value {
    let template_names =
        json!(["verification", "password-reset", "email-change", "otp", "export-ready", "alert"]);
    let variant = json!({
        "type": "object",
        "required": ["subject", "text"],
        "properties": {
            "subject": {"type": "string", "description": "No line breaks."},
            "text": {"type": "string"},
            "html": {"type": "string"}
        },
        "additionalProperties": false
    });
    let meta = |required: bool| {
        let mut m = json!({
            "type": "object",
            "properties": {
                "appName": {"type": "string"},
                "appURL": {"type": "string"},
                "senderName": {"type": "string"},
                "senderAddress": {"type": "string", "format": "email"}
            },
            "additionalProperties": false
        });
        if required {
            m["required"] = json!(["appName", "appURL", "senderName", "senderAddress"]);
        }
        m
    };
    let smtp_properties = json!({
        "enabled": {"type": "boolean"},
        "host": {"type": "string"},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "username": {"type": "string"},
        "authMethod": {"type": "string", "enum": ["PLAIN", "LOGIN"]},
        "tls": {"type": "boolean", "description": "PocketBase's flag: implicit TLS (same as security = tls)."},
        "security": {"type": "string", "enum": ["tls", "starttls", "none"]},
        "localName": {"type": "string"},
        "timeoutSecs": {"type": "integer", "minimum": 1, "maximum": 600}
    });
    let mut smtp_input = smtp_properties.clone();
    smtp_input["password"] =
        json!({"type": "string", "writeOnly": true, "description": "Write-only: never returned."});
    json!({
        "Settings": {
            "type": "object",
            "required": ["meta", "smtp", "templates"],
            "properties": {
                "meta": meta(true),
                "smtp": {
                    "type": "object",
                    "required": ["enabled", "host", "port", "username", "authMethod", "tls", "security", "localName", "timeoutSecs"],
                    "properties": smtp_properties,
                    "description": "The password is never returned."
                },
                "templates": {
                    "type": "object",
                    "description": "Overrides: template name → locale (lower case, or default) → variant.",
                    "propertyNames": {"enum": template_names},
                    "additionalProperties": {"type": "object", "additionalProperties": variant}
                }
            }
        },
        "SettingsInput": {
            "type": "object",
            "description": "Only the given keys change. templates.<name> = null removes all its variants; templates.<name>.<locale> = null removes one.",
            "properties": {
                "meta": meta(false),
                "smtp": {"type": "object", "properties": smtp_input, "additionalProperties": false},
                "templates": {
                    "type": "object",
                    "propertyNames": {"enum": template_names},
                    "additionalProperties": {"type": ["object", "null"], "additionalProperties": {"oneOf": [variant, {"type": "null"}]}}
                }
            },
            "additionalProperties": false
        },
        "TestEmailInput": {
            "type": "object",
            "required": ["email"],
            "properties": {
                "email": {"type": "string", "format": "email"},
                "template": {"type": "string", "enum": ["verification", "password-reset", "email-change", "otp", "export-ready", "alert", "login-alert"]},
                "collection": {"type": "string", "description": "Accepted for PocketBase compatibility; ignored."}
            },
            "additionalProperties": false
        },
        "MailSendInput": {
            "type": "object",
            "required": ["to"],
            "description": "Either template (+ vars) or subject + text (+ html). Line breaks in header values (to, toName, subject) are refused.",
            "properties": {
                "to": {"type": "string", "format": "email"},
                "toName": {"type": "string"},
                "locale": {"type": "string", "description": "Picks the template variant: exact, then language, then default."},
                "template": {"type": "string", "enum": template_names},
                "vars": {"type": "object", "description": "Template variables, e.g. token, otp, actionURL, record (object)."},
                "subject": {"type": "string"},
                "text": {"type": "string"},
                "html": {"type": "string"}
            },
            "additionalProperties": false
        },
        "MailLogEntry": {
            "type": "object",
            "required": ["id", "jobId", "to", "subject", "state", "attempts", "created", "updated"],
            "properties": {
                "id": {"type": "string", "pattern": "^[0-9]+$"},
                "jobId": {"type": "string", "pattern": "^[0-9]+$"},
                "to": {"type": "string"},
                "toName": {"type": ["string", "null"]},
                "subject": {"type": "string"},
                "template": {"type": ["string", "null"]},
                "locale": {"type": ["string", "null"]},
                "state": {"type": "string", "enum": ["queued", "sending", "sent", "retrying", "dead", "cancelled"]},
                "attempts": {"type": "integer"},
                "lastReply": {"type": ["string", "null"], "description": "The SMTP server's last reply, or why the attempt failed."},
                "created": {"type": "string"},
                "updated": {"type": "string"},
                "sentAt": {"type": ["string", "null"]}
            }
        },
        "MailLogList": list_envelope(r("MailLogEntry"))
    })
}

/// The spec of the static API (no user collections).
pub fn static_spec() -> Value {
    let c = || path_param("collection", "Collection id or name.");
    let id = || path_param("id", "Record id (15 characters a-z0-9).");
    let fields_param = || {
        query_param("fields", "Comma-separated fields to return: names, dotted paths into expand and JSON values (`expand.author.name`), `*` for the rest of a level, `name:excerpt(max[,ellipsis])` at any depth.", json!({"type": "string"}))
    };
    let mut paths = Map::new();
    paths.insert("/api/health".into(), json!({
        "get": op("health", "Liveness check", "health", vec![], None, (200, Some(json!({"type": "object"}))), &[]),
    }));
    paths.insert("/api/ready".into(), json!({
        "get": op("ready", "Readiness: storage writable, job workers running, free disk above [observe] ready_min_disk_free_mb, search indexer running; superusers also get each check's detail", "health", vec![], None, (200, Some(json!({"type": "object", "properties": {"ready": {"type": "boolean"}, "checks": {"type": "object", "additionalProperties": {"type": "object", "properties": {"ok": {"type": "boolean"}, "detail": {"type": "string"}}}}}}))), &[503]),
    }));
    paths.insert("/api/setup".into(), json!({
        "get": op("setupStatus", "Whether the first superuser must still be created", "auth", vec![], None, (200, Some(json!({"type": "object", "properties": {"setupRequired": {"type": "boolean"}}}))), &[]),
        "post": op("setup", "Create the first superuser with the one-time setup token", "auth", vec![], Some(r("SetupRequest")), (200, Some(r("AuthResponse"))), &[400, 403, 413, 415]),
    }));
    paths.insert("/api/openapi.json".into(), json!({
        "get": op("openapi", "This specification, with typed paths for every collection", "meta", vec![], None, (200, Some(json!({"type": "object"}))), &[]),
    }));
    paths.insert("/api/docs".into(), json!({
        "get": {"operationId": "docs", "summary": "Interactive API reference", "tags": ["meta"], "responses": {"200": {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}}},
    }));
    paths.insert("/api/batch".into(), json!({
        "post": op("batch", "Apply several record writes all-or-nothing in one transaction", "records", vec![], Some(r("BatchRequest")), (200, Some(r("BatchResponse"))), &[400, 403, 413, 415, 503, 507]),
    }));
    paths.insert("/api/collections".into(), json!({
        "get": op("listCollections", "List collections (superusers)", "collections", vec![
            query_param("page", "Page number, from 1.", json!({"type": "integer", "minimum": 1})),
            query_param("perPage", "Items per page (at most 1000).", json!({"type": "integer", "minimum": 1})),
        ], None, (200, Some(r("CollectionList"))), &[400, 403]),
        "post": op("createCollection", "Create a collection (superusers)", "collections", vec![], Some(r("CollectionInput")), (200, Some(r("Collection"))), &[400, 403, 413, 415]),
    }));
    paths.insert("/api/collections/{collection}".into(), json!({
        "get": op("getCollection", "View a collection (superusers)", "collections", vec![c()], None, (200, Some(r("Collection"))), &[403, 404]),
        "patch": op("updateCollection", "Update a collection; records are migrated or the change is refused (superusers)", "collections", vec![c()], Some(r("CollectionInput")), (200, Some(r("Collection"))), &[400, 403, 404, 409, 413, 415]),
        "delete": op("deleteCollection", "Delete a collection and its records (superusers)", "collections", vec![c()], None, (204, None), &[400, 403, 404]),
    }));
    paths.insert("/api/collections/{collection}/schema".into(), json!({
        "get": {
            "operationId": "getCollectionSchema",
            "summary": "JSON Schema (2020-12) of the collection's records",
            "tags": ["collections"],
            "parameters": [c()],
            "responses": {
                "200": {"description": "JSON Schema", "content": {"application/schema+json": {"schema": {"type": "object"}}}},
                "401": problem_ref(),
                "403": problem_ref(),
                "404": problem_ref()
            }
        },
    }));
    paths.insert("/api/collections/{collection}/auth-with-password".into(), json!({
        "post": op("authWithPassword", "Sign in to an auth collection", "auth", vec![c()], Some(r("AuthWithPassword")), (200, Some(r("AuthResponse"))), &[400, 403, 404, 413, 415]),
    }));
    paths.insert("/api/collections/{collection}/auth-refresh".into(), json!({
        "post": op("authRefresh", "A fresh token for the signed-in record", "auth", vec![c()], None, (200, Some(r("AuthResponse"))), &[401, 404]),
    }));
    paths.insert("/api/collections/{collection}/auth-methods".into(), json!({
        "get": op("authMethods", "Sign-in methods of an auth collection", "auth", vec![c()], None, (200, Some(r("AuthMethods"))), &[400, 404]),
    }));
    let mut logout = op(
        "authLogout",
        "Sign out: revoke this token (or, with all, every token of the account)",
        "auth",
        vec![c()],
        Some(r("LogoutInput")),
        (204, None),
        &[400, 401, 404],
    );
    logout["requestBody"]["required"] = json!(false);
    paths.insert("/api/collections/{collection}/auth-logout".into(), json!({"post": logout}));
    let mut impersonate = op(
        "impersonate",
        "A non-refreshable token of another account (superusers)",
        "auth",
        vec![c(), id()],
        Some(r("ImpersonateInput")),
        (200, Some(r("AuthResponse"))),
        &[400, 401, 403, 404],
    );
    impersonate["requestBody"]["required"] = json!(false);
    paths.insert("/api/collections/{collection}/impersonate/{id}".into(), json!({"post": impersonate}));
    /// Path, operation id, summary, body schema, success, error statuses.
    type Flow<'a> = (&'a str, &'a str, &'a str, Value, (u16, Option<Value>), &'a [u16]);
    let flows: [Flow; 8] = [
        (
            "request-verification",
            "requestVerification",
            "Email a verification link (204 whether or not the account exists)",
            json!({"type": "object", "required": ["email"], "properties": {"email": {"type": "string"}}}),
            (204, None),
            &[400, 404, 429],
        ),
        (
            "confirm-verification",
            "confirmVerification",
            "Verify the account with the emailed token (works once)",
            json!({"type": "object", "required": ["token"], "properties": {"token": {"type": "string"}}}),
            (204, None),
            &[400, 404, 429],
        ),
        (
            "request-password-reset",
            "requestPasswordReset",
            "Email a password-reset link (204 whether or not the account exists)",
            json!({"type": "object", "required": ["email"], "properties": {"email": {"type": "string"}}}),
            (204, None),
            &[400, 404, 429],
        ),
        (
            "confirm-password-reset",
            "confirmPasswordReset",
            "Set a new password with the emailed token (works once; ends every session)",
            json!({"type": "object", "required": ["token", "password", "passwordConfirm"], "properties": {"token": {"type": "string"}, "password": {"type": "string"}, "passwordConfirm": {"type": "string"}}}),
            (204, None),
            &[400, 404, 429],
        ),
        (
            "request-email-change",
            "requestEmailChange",
            "Email a confirmation link to a new address (signed-in owner)",
            json!({"type": "object", "required": ["newEmail"], "properties": {"newEmail": {"type": "string"}}}),
            (204, None),
            &[400, 401, 403, 404, 429],
        ),
        (
            "confirm-email-change",
            "confirmEmailChange",
            "Move the account to the new address (token + account password; ends every session)",
            json!({"type": "object", "required": ["token", "password"], "properties": {"token": {"type": "string"}, "password": {"type": "string"}}}),
            (204, None),
            &[400, 404, 429],
        ),
        (
            "request-otp",
            "requestOtp",
            "Email a one-time code; answers an otpId whether or not the account exists",
            json!({"type": "object", "required": ["email"], "properties": {"email": {"type": "string"}}}),
            (200, Some(json!({"type": "object", "properties": {"otpId": {"type": "string"}}}))),
            &[400, 403, 404, 429],
        ),
        (
            "auth-with-otp",
            "authWithOtp",
            "Sign in with an emailed one-time code (works once; 5 wrong tries burn it)",
            json!({"type": "object", "required": ["otpId", "password"], "properties": {"otpId": {"type": "string"}, "password": {"type": "string", "description": "The code."}}}),
            (200, Some(r("AuthResponse"))),
            &[400, 403, 404, 429],
        ),
    ];
    for (path, op_id, summary, body, ok, errs) in flows {
        paths.insert(
            format!("/api/collections/{{collection}}/{path}"),
            json!({"post": op(op_id, summary, "auth", vec![c()], Some(body), ok, errs)}),
        );
    }
    paths.insert("/api/collections/{collection}/records".into(), json!({
        "get": op("listRecords", "List records", "records", [vec![c()], list_params()].concat(), None, (200, Some(r("RecordList"))), &[400, 403, 404]),
        "post": with_multipart(op("createRecord", "Create a record (JSON, or multipart/form-data with files)", "records", vec![c()], Some(r("RecordBody")), (200, Some(r("Record"))), &[400, 403, 404, 409, 413, 415, 503, 507])),
    }));
    paths.insert("/api/collections/{collection}/records/{id}".into(), json!({
        "get": op("getRecord", "View a record", "records", vec![c(), id(), fields_param(), expand_param()], None, (200, Some(r("Record"))), &[400, 403, 404]),
        "patch": with_multipart(op("updateRecord", "Update a record (absent fields are kept; multipart/form-data with files, `field+`/`field-` to add/remove files)", "records", vec![c(), id()], Some(r("RecordBody")), (200, Some(r("Record"))), &[400, 403, 404, 409, 413, 415, 503, 507])),
        "delete": op("deleteRecord", "Delete a record", "records", vec![c(), id()], None, (204, None), &[403, 404, 409, 503, 507]),
    }));
    let search_params = || {
        vec![
            query_param("q", "The search: words (all must match, typos tolerated from 5 letters, the last one also as a prefix unless followed by a space), \"phrases\", field:word, -excluded.", json!({"type": "string", "maxLength": 1000})),
            query_param("page", "Page number, from 1.", json!({"type": "integer", "minimum": 1})),
            query_param("perPage", "Items per page (at most 1000).", json!({"type": "integer", "minimum": 1})),
            query_param("fields", "Comma-separated fields to return (as for list).", json!({"type": "string"})),
            query_param("skipTotal", "1 to skip counting (totals are -1).", json!({"type": "string"})),
        ]
    };
    paths.insert("/api/collections/{collection}/search".into(), json!({
        "get": op("searchRecords", "Full-text search of one collection, ranked, obeying its list rule (results, totals and facets count only records the caller may list)", "search", [vec![c()], search_params(), vec![
            query_param("filter", "Filter expression (the list filter language), combined with the query.", json!({"type": "string"})),
            query_param("sort", "Sort by plain fields instead of relevance (e.g. -created).", json!({"type": "string"})),
            query_param("expand", "Relations to embed (as for list).", json!({"type": "string"})),
            query_param("facets", "Comma-separated select fields to count values of.", json!({"type": "string"})),
        ]].concat(), None, (200, Some(r("SearchResults"))), &[400, 403, 404, 503]),
    }));
    paths.insert("/api/search".into(), json!({
        "get": op("searchAll", "Full-text search across collections (default: every searchable one the caller may list), merged by score", "search", [search_params(), vec![
            query_param("collections", "Comma-separated collection names or ids.", json!({"type": "string"})),
        ]].concat(), None, (200, Some(r("SearchResults"))), &[400, 404, 503]),
    }));
    paths.insert("/api/search/status".into(), json!({
        "get": op("searchStatus", "Indexer state and index lag (superusers)", "search", vec![], None, (200, Some(r("SearchStatus"))), &[401, 403]),
    }));
    let mut reindex = op(
        "searchReindex",
        "Enqueue a search.reindex job for one collection ({\"collection\": \"posts\"}) or the whole index ({}) (superusers)",
        "search",
        vec![],
        Some(json!({"type": "object", "properties": {"collection": {"type": "string"}}})),
        (202, Some(r("Job"))),
        &[400, 401, 403, 404, 413, 415, 503, 507],
    );
    reindex["responses"]["202"]["headers"] =
        json!({"Location": {"description": "/api/jobs/{id}", "schema": {"type": "string"}}});
    reindex["responses"]["200"] = json!({"description": "A full rebuild is already waiting or running", "content": json_content(r("Job"))});
    paths.insert("/api/search/reindex".into(), json!({"post": reindex}));
    let file_params = vec![
        c(),
        path_param("recordId", "Record id."),
        path_param("filename", "Stored file name."),
        query_param("thumb", "A variant size the field lists (`WxH`, `WxHt`, `WxHb`, `WxHf`, `0xH`, `Wx0`) or `100x100`; served as WebP. Other sizes, and files that are not images, answer the original.", json!({"type": "string"})),
        query_param("token", "A file token (`POST /api/files/token`); required for protected fields.", json!({"type": "string"})),
        query_param("download", "Non-empty: always `Content-Disposition: attachment`.", json!({"type": "string"})),
    ];
    let mut download = op("downloadFile", "Download a file; the record must be visible under the collection's view rule. Supports Range, ETag/If-None-Match and Last-Modified/If-Modified-Since. The content type is sniffed at upload; SVG, HTML and unknown types are attachments.", "files", file_params, None, (200, None), &[404]);
    download["responses"]["200"] = json!({"description": "The file", "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}});
    download["responses"]["206"] = json!({"description": "The requested byte range"});
    download["responses"]["304"] = json!({"description": "Not modified"});
    download["responses"]["416"] = json!({"description": "Range not satisfiable"});
    paths.insert("/api/files/{collection}/{recordId}/{filename}".into(), json!({"get": download}));
    paths.insert("/api/files/token".into(), json!({
        "post": op("fileToken", "A short-lived token for protected files (signed-in callers)", "files", vec![], None, (200, Some(json!({"type": "object", "properties": {"token": {"type": "string"}}, "required": ["token"]}))), &[401]),
    }));
    paths.insert("/api/files/usage".into(), json!({
        "get": op("fileUsage", "Storage used by files: total, per collection, and with `collection` per record (superusers)", "files", vec![query_param("collection", "Collection id or name: add per-record usage.", json!({"type": "string"}))], None, (200, Some(json!({"type": "object", "properties": {"totalBytes": {"type": "integer"}, "totalFiles": {"type": "integer"}, "collections": {"type": "array", "items": {"type": "object"}}, "records": {"type": "array", "items": {"type": "object"}}}, "required": ["totalBytes", "totalFiles", "collections"]}))), &[401, 403, 404]),
    }));
    let job_id = || path_param("id", "Job id (decimal digits).");
    let cron_id = || path_param("id", "Cron schedule id.");
    let page_params = || {
        vec![
            query_param("page", "Page number, from 1.", json!({"type": "integer", "minimum": 1})),
            query_param(
                "perPage",
                "Items per page (at most 1000).",
                json!({"type": "integer", "minimum": 1}),
            ),
        ]
    };
    let accepted = |op: &mut Value| {
        op["responses"]["202"]["headers"] =
            json!({"Location": {"description": "/api/jobs/{id}", "schema": {"type": "string"}}});
    };
    let mut enqueue = op(
        "enqueueJob",
        "Enqueue a job (superusers); 200 with the existing job for a duplicate unique key",
        "jobs",
        vec![],
        Some(r("JobInput")),
        (202, Some(r("Job"))),
        &[400, 401, 403, 413, 415, 503, 507],
    );
    accepted(&mut enqueue);
    enqueue["responses"]["200"] = json!({"description": "A job with this unique key is already waiting or running", "content": json_content(r("Job"))});
    paths.insert("/api/jobs".into(), json!({
        "get": op("listJobs", "List jobs, newest first (superusers)", "jobs", [vec![
            query_param("state", "scheduled, available, running, completed, retrying, dead or cancelled.", json!({"type": "string"})),
            query_param("kind", "Job kind.", json!({"type": "string"})),
            query_param("queue", "Queue name.", json!({"type": "string"})),
        ], page_params()].concat(), None, (200, Some(r("JobList"))), &[400, 401, 403]),
        "post": enqueue,
    }));
    paths.insert("/api/jobs/stats".into(), json!({
        "get": op("jobStats", "Counts per state and queue, oldest waiting age (superusers)", "jobs", vec![], None, (200, Some(r("JobStats"))), &[401, 403]),
    }));
    paths.insert("/api/jobs/{id}".into(), json!({
        "get": op("getJob", "View a job (superusers)", "jobs", vec![job_id()], None, (200, Some(r("Job"))), &[401, 403, 404]),
        "delete": op("deleteJob", "Delete a job that is not running (superusers)", "jobs", vec![job_id()], None, (204, None), &[401, 403, 404, 409]),
    }));
    paths.insert("/api/jobs/{id}/retry".into(), json!({
        "post": op("retryJob", "Run a job again now; dead, cancelled and completed jobs are replayed with attempts reset (superusers)", "jobs", vec![job_id()], None, (200, Some(r("Job"))), &[401, 403, 404, 409]),
    }));
    paths.insert("/api/jobs/{id}/cancel".into(), json!({
        "post": op("cancelJob", "Cancel a waiting job, or tell a running one to stop (superusers)", "jobs", vec![job_id()], None, (200, Some(r("Job"))), &[401, 403, 404, 409]),
    }));
    paths.insert("/api/crons".into(), json!({
        "get": op("listCrons", "List cron schedules (superusers)", "crons", vec![], None, (200, Some(r("CronList"))), &[401, 403]),
        "post": op("createCron", "Create a cron schedule (superusers)", "crons", vec![], Some(r("CronInput")), (200, Some(r("Cron"))), &[400, 401, 403, 413, 415]),
    }));
    paths.insert("/api/crons/{id}".into(), json!({
        "get": op("getCron", "View a cron schedule (superusers)", "crons", vec![cron_id()], None, (200, Some(r("Cron"))), &[401, 403, 404]),
        "patch": op("updateCron", "Change a cron schedule; enabling it schedules from now (superusers)", "crons", vec![cron_id()], Some(r("CronInput")), (200, Some(r("Cron"))), &[400, 401, 403, 404, 413, 415]),
        "delete": op("deleteCron", "Delete a cron schedule and its run history (superusers)", "crons", vec![cron_id()], None, (204, None), &[401, 403, 404]),
    }));
    let mut run_now = op(
        "runCron",
        "Enqueue the schedule's job now (superusers)",
        "crons",
        vec![cron_id()],
        None,
        (202, Some(r("Job"))),
        &[401, 403, 404],
    );
    accepted(&mut run_now);
    paths.insert("/api/crons/{id}/run".into(), json!({"post": run_now}));
    paths.insert("/api/crons/{id}/runs".into(), json!({
        "get": op("listCronRuns", "A schedule's runs, newest first (superusers)", "crons", [vec![cron_id()], page_params()].concat(), None, (200, Some(r("CronRunList"))), &[400, 401, 403, 404]),
    }));
    paths.insert("/api/settings".into(), json!({
        "get": op("getSettings", "Mail settings: meta, smtp (no password) and template overrides (superusers)", "settings", vec![], None, (200, Some(r("Settings"))), &[401, 403]),
        "patch": op("updateSettings", "Change mail settings; only the given keys change (superusers)", "settings", vec![], Some(r("SettingsInput")), (200, Some(r("Settings"))), &[400, 401, 403, 413, 415, 503, 507]),
    }));
    let mut test_email = op(
        "testEmail",
        "Queue a test email with the current settings (superusers); 400 while SMTP is disabled",
        "settings",
        vec![],
        Some(r("TestEmailInput")),
        (202, Some(r("Job"))),
        &[400, 401, 403, 413, 415, 503, 507],
    );
    accepted(&mut test_email);
    paths.insert("/api/settings/test/email".into(), json!({"post": test_email}));
    let mut send_mail = op(
        "sendMail",
        "Queue a templated or raw email through the outbox (superusers, or API keys with the mail.send capability)",
        "mail",
        vec![],
        Some(r("MailSendInput")),
        (202, Some(r("Job"))),
        &[400, 401, 403, 413, 415, 503, 507],
    );
    accepted(&mut send_mail);
    paths.insert("/api/mail/send".into(), json!({"post": send_mail}));
    paths.insert("/api/mail/log".into(), json!({
        "get": op("mailLog", "Delivery log, newest first (superusers)", "mail", [vec![
            query_param("state", "queued, sending, sent, retrying, dead or cancelled.", json!({"type": "string"})),
            query_param("to", "Recipient address (exact, case-insensitive).", json!({"type": "string"})),
        ], page_params()].concat(), None, (200, Some(r("MailLogList"))), &[400, 401, 403]),
    }));
    paths.insert("/api/mail/log/{id}".into(), json!({
        "get": op("mailLogEntry", "One email's delivery record (superusers); the id is its job id", "mail", vec![job_id()], None, (200, Some(r("MailLogEntry"))), &[401, 403, 404]),
    }));
    paths.insert("/api/keys".into(), json!({
        "get": op("listApiKeys", "API keys, without their secrets (superusers)", "keys", vec![], None, (200, Some(r("ApiKeyList"))), &[401, 403]),
        "post": op("createApiKey", "Create an API key; the answer holds its secret once (superusers)", "keys", vec![], Some(r("ApiKeyInput")), (201, Some(r("ApiKeyCreated"))), &[400, 401, 403, 413, 415, 503, 507]),
    }));
    paths.insert("/api/keys/{id}".into(), json!({
        "get": op("getApiKey", "One API key (superusers)", "keys", vec![path_param("id", "Key id.")], None, (200, Some(r("ApiKey"))), &[401, 403, 404]),
        "delete": op("revokeApiKey", "Revoke an API key at once (superusers)", "keys", vec![path_param("id", "Key id.")], None, (204, None), &[401, 403, 404, 503, 507]),
    }));
    paths.insert("/api/audit".into(), json!({
        "get": op("auditLog", "Audit log, newest first: sign-ins, sign-outs, impersonations, key, schema and settings changes (superusers)", "audit", [vec![
            query_param("action", "Action or its dotted prefix (auth matches auth.login).", json!({"type": "string"})),
            query_param("outcome", "success or failure.", json!({"type": "string"})),
            query_param("actor", "Actor id.", json!({"type": "string"})),
            query_param("target", "Target (record id, collection id, identity).", json!({"type": "string"})),
        ], page_params()].concat(), None, (200, Some(r("AuditList"))), &[400, 401, 403]),
    }));
    let time_param = |name: &str| {
        query_param(name, "Unix seconds or a date (2026-01-02 03:04:05.000Z).", json!({"type": "string"}))
    };
    let log_filters = || {
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
    };
    paths.insert("/metrics".into(), json!({
        "get": {"operationId": "prometheusMetrics", "summary": "Every metric in the Prometheus text format (superusers, API keys with metrics.read, or [observe] metrics_allowed_ips)", "tags": ["observe"], "responses": {"200": {"description": "Prometheus text exposition 0.0.4", "content": {"text/plain": {"schema": {"type": "string"}}}}, "401": problem_ref(), "403": problem_ref(), "404": problem_ref()}},
    }));
    paths.insert("/api/metrics".into(), json!({
        "get": op("metricHistory", "Stored metric history: without series, the list of series; with series, [unixSeconds, value] points averaged per step (superusers, API keys with metrics.read)", "observe", vec![
            query_param("series", "Comma-separated series names.", json!({"type": "string"})),
            time_param("from"),
            time_param("to"),
            query_param("step", "Seconds between points (chosen when absent).", json!({"type": "integer", "minimum": 1})),
        ], None, (200, Some(json!({"type": "object"}))), &[400, 401, 403]),
    }));
    paths.insert("/api/logs".into(), json!({
        "get": op("requestLog", "Request log, newest first: time, method, route template, status, duration, client IP, auth kind (superusers, API keys with metrics.read)", "observe", [log_filters(), page_params()].concat(), None, (200, Some(list_envelope(json!({"type": "object", "properties": {
            "id": {"type": "string"}, "time": {"type": "string"}, "method": {"type": "string"}, "route": {"type": "string"},
            "status": {"type": "integer"}, "durationMs": {"type": "number"}, "ip": {"type": "string"}, "auth": {"type": "string"}
        }})))), &[400, 401, 403]),
    }));
    paths.insert("/api/logs/stats".into(), json!({
        "get": op("requestLogStats", "Request counts per status class per step (default: the last 24 hours by hour)", "observe", [log_filters(), vec![
            query_param("step", "Seconds per bucket (default 3600).", json!({"type": "integer", "minimum": 1})),
        ]].concat(), None, (200, Some(json!({"type": "object", "properties": {"total": {"type": "integer"}, "items": {"type": "array", "items": {"type": "object"}}}}))), &[400, 401, 403]),
    }));
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
    let rule_id = || path_param("id", "Alert rule id.");
    paths.insert("/api/alerts".into(), json!({
        "get": op("listAlertRules", "Alert rules with their state (superusers)", "observe", vec![], None, (200, Some(list_envelope(alert_rule.clone()))), &[401, 403]),
        "post": op("createAlertRule", "Create an alert rule over a history series (superusers)", "observe", vec![], Some(alert_input.clone()), (200, Some(alert_rule.clone())), &[400, 401, 403, 413, 415, 503, 507]),
    }));
    paths.insert("/api/alerts/history".into(), json!({
        "get": op("alertHistory", "Firing and resolving transitions, newest first (superusers)", "observe", vec![
            query_param("rule", "Only this rule's transitions.", json!({"type": "string"})),
            query_param("perPage", "Most rows (default 30, at most 1000).", json!({"type": "integer", "minimum": 1})),
        ], None, (200, Some(list_envelope(json!({"type": "object"})))), &[400, 401, 403]),
    }));
    paths.insert("/api/alerts/{id}".into(), json!({
        "get": op("getAlertRule", "One alert rule (superusers)", "observe", vec![rule_id()], None, (200, Some(alert_rule.clone())), &[401, 403, 404]),
        "patch": op("updateAlertRule", "Change an alert rule; it starts over in the ok state (superusers)", "observe", vec![rule_id()], Some(alert_input), (200, Some(alert_rule)), &[400, 401, 403, 404, 413, 415, 503, 507]),
        "delete": op("deleteAlertRule", "Delete an alert rule (superusers)", "observe", vec![rule_id()], None, (204, None), &[401, 403, 404, 503, 507]),
    }));
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
            {"name": "mail"}, {"name": "keys"}, {"name": "audit"}, {"name": "observe"}
        ],
        "paths": paths,
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
        let id = || path_param("id", "Record id (15 characters a-z0-9).");
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

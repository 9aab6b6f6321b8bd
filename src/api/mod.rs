//! HTTP ↔ domain translation. The only module that imports poem.
//!
//! Handlers have one shape: extract → call the domain → map the result. Errors of every
//! origin leave through [`error::ApiError`] as problem+json.
//!
//! # How it works
//!
//! Handlers in one shape: extract → call the domain → map. `error.rs` is the one error
//! shape (RFC 9457 problem+json that is also PocketBase's `{status, message, data}`), with
//! explicit mappings from `RecordsError`, `AuthError` and `StoreError`, and a catch-all
//! that rewrites poem's own errors (404, 405, bad query) into it. `body.rs` enforces body
//! limits on the stream and the JSON content type. `guard.rs` wraps every request: the
//! client IP (after trusted proxies), rate limits (429 + `Retry-After`), admission (503 +
//! `Retry-After` when over the in-flight or memory cap), CORS preflights and
//! the allowlist, security headers and `Cache-Control: no-store`; and it turns a 401 or 403
//! answered to a request whose credentials were not accepted (malformed, expired, revoked
//! token; unknown API key) into a 401 that gives the reason ([`crate::accounts::Auth::rejection`]), since that
//! caller was served as anonymous. Superuser-only endpoints answer a request without
//! credentials 401 (PocketBase's "The request requires valid superuser authorization token."),
//! a signed-in non-superuser 403; `access.rs` is the one place that decides this (also for the
//! endpoints that admit API keys holding a capability). `keys.rs` serves API keys and the audit
//! log. Each area file (`jobs.rs`, `mail.rs`, ...) registers its routes together with their
//! OpenAPI operations and owns its component schemas; a test checks that every served method has
//! an operation and every operation is served. `openapi.rs` holds the shared pieces and
//! assembles the spec: the static part (the same for everyone) plus typed paths and schemas for
//! the collections the caller may see the shape of ([`crate::records::schema::shape_visible`]:
//! superusers all; API keys those their scopes let them list or view; anyone else those whose
//! list or view rule is not superuser-only), described without hidden fields for anyone but
//! superusers ([`crate::records::schema::visible_collection`]; an auth collection's `password` stays write-only
//! in the create/update bodies). `/api/collections/{c}/schema` uses the same two functions, so
//! it answers 403 exactly when the collection is absent from the caller's spec. `docs.rs`
//! serves the embedded interactive reference, the errors reference at `/api/docs/errors`
//! (every problem's `type` is `/api/docs/errors#<kind>`, and each kind has a section there).
//! `admin.rs` serves `/_/`, the embedded admin UI, which also holds the pages account emails
//! link to (`/_/#/auth/confirm-verification/<token>` and the reset and email-change forms);
//! it uses only the public API, as SDK clients do.
//!
//! **Architecture invariant:** `api` is the only module that imports poem. Domain modules
//! return domain errors; 5xx bodies carry no internals (the log has them).

mod access;
mod admin;
mod auth;
mod batch;
pub mod body;
pub(crate) mod collections;
mod docs;
pub mod error;
mod files;
pub(crate) mod guard;
mod health;
mod held;
pub(crate) mod jobs;
mod keys;
mod mail;
mod observe;
pub mod openapi;
mod pending;
mod realtime;
mod records;
mod search;

use std::sync::Arc;

use poem::http::{Method, StatusCode};
use poem::{post, Endpoint, EndpointExt, IntoEndpoint, Request, Response, Route, RouteMethod};
use serde_json::{Map, Value};

use crate::app::App;
use crate::auth::Principal;
use crate::records::filter::RequestInfo;

/// The route table and the static OpenAPI paths, registered together so that they cannot
/// drift apart: each area (`jobs::routes`, `mail::routes`, ...) registers every method it
/// serves under a template with that method's operation, or, for the few pages the spec does
/// not describe, explicitly without one. The templates are also the labels of the request
/// metrics.
#[derive(Default)]
struct Routes {
    route: Route,
    templates: Vec<&'static str>,
    /// The spec's path items, in registration order (the order of `openapi/openapi.json`).
    paths: Map<String, Value>,
    /// Every method served under every template, and whether the spec describes it.
    served: Vec<(Method, &'static str, bool)>,
}

impl Routes {
    /// Serves the methods `methods` registers at `template`, and adds their operations to the
    /// spec under the template's OpenAPI path (`:id` → `{id}`).
    fn at(mut self, template: &'static str, methods: impl FnOnce(Methods) -> Methods) -> Routes {
        let Methods { route, operations, served } = methods(Methods::default());
        self.templates.push(template);
        self.route = self.route.at(template, route);
        if !operations.is_empty() {
            self.paths.insert(openapi::path_of(template), Value::Object(operations));
        }
        self.served.extend(served.into_iter().map(|(method, documented)| (method, template, documented)));
        self
    }

    /// Adds an area's routes.
    fn with(self, area: fn(Routes) -> Routes) -> Routes {
        area(self)
    }
}

/// The methods served at one template, each with its OpenAPI operation.
#[derive(Default)]
struct Methods {
    route: RouteMethod,
    /// Lower-case method → operation.
    operations: Map<String, Value>,
    served: Vec<(Method, bool)>,
}

/// `Methods::get(handler, operation)` and the like: serve the method and describe it.
macro_rules! documented_methods {
    ($($name:ident => $method:ident),*) => {$(
        fn $name<E: IntoEndpoint>(self, ep: E, operation: Value) -> Methods
        where
            E::Endpoint: 'static,
        {
            self.serve(Method::$method, ep, Some(operation))
        }
    )*};
}

impl Methods {
    documented_methods!(get => GET, post => POST, put => PUT, patch => PATCH, delete => DELETE);

    /// Serves `method` without describing it in the spec: the reference's own pages and
    /// assets, the account confirmation page, `HEAD /api/health`.
    fn undocumented<E: IntoEndpoint>(self, method: Method, ep: E) -> Methods
    where
        E::Endpoint: 'static,
    {
        self.serve(method, ep, None)
    }

    fn serve<E: IntoEndpoint>(mut self, method: Method, ep: E, operation: Option<Value>) -> Methods
    where
        E::Endpoint: 'static,
    {
        self.served.push((method.clone(), operation.is_some()));
        if let Some(operation) = operation {
            self.operations.insert(method.as_str().to_ascii_lowercase(), operation);
        }
        self.route = self.route.method(method, ep);
        self
    }
}

/// The public HTTP API.
pub fn routes(app: Arc<App>) -> impl Endpoint {
    let table = route_table();
    app.observe.set_routes(&table.templates);
    table
        .route
        .data(app.clone())
        .catch_all_error(|err| async move { error::into_problem(err) })
        .around(move |ep, req| guard::guard(ep, req, app.clone()))
}

/// Every route of the public API with its operation, area by area, in the spec's order.
fn route_table() -> Routes {
    Routes::default()
        .with(health::routes)
        .with(auth::setup_routes)
        .with(openapi::routes)
        .with(docs::routes)
        .with(admin::routes)
        .with(batch::routes)
        .with(collections::routes)
        .with(auth::routes)
        .with(records::routes)
        .with(realtime::routes)
        .with(search::routes)
        .with(files::routes)
        .with(jobs::routes)
        .with(mail::routes)
        .with(keys::routes)
        .with(observe::routes)
        .with(pending::routes)
}

/// Routes served only on the unix socket in the data directory (same-host administration
/// while `serve` holds the data file).
pub fn admin_socket_routes(app: Arc<App>) -> impl Endpoint {
    Route::new()
        .at("/superusers/upsert", post(auth::socket_superuser_upsert))
        .at("/superusers/:action", post(auth::socket_superuser))
        .at("/jobs/list", post(jobs::socket_list))
        .at("/jobs/:action", post(jobs::socket_action))
        .at("/mail/test", post(mail::socket_test_email))
        .at("/search/reindex", post(search::socket_reindex))
        .data(app)
        .catch_all_error(|err| async move { error::into_problem(err) })
}

/// A JSON response.
pub(crate) fn json_response(status: StatusCode, value: &Value) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(serde_json::to_vec(value).unwrap_or_default())
}

/// The caller, from the `Authorization` header.
pub(crate) async fn principal(app: &App, req: &Request) -> Principal {
    app.auth.principal(req.header("Authorization")).await
}

/// The caller and what access rules see of the request (`@request.*`); the body is added
/// by the record service.
pub(crate) async fn caller(app: &App, req: &Request) -> (Principal, RequestInfo) {
    let (who, auth) = app.auth.identify(req.header("Authorization")).await;
    let mut query = Map::new();
    if let Some(q) = req.uri().query() {
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            query.insert(k.into_owned(), Value::String(v.into_owned()));
        }
    }
    let mut headers = Map::new();
    for (name, value) in req.headers() {
        if let Ok(v) = value.to_str() {
            headers.insert(name.as_str().to_lowercase().replace('-', "_"), Value::String(v.to_string()));
        }
    }
    let info =
        RequestInfo { auth, method: req.method().as_str().to_string(), query, headers, body: Map::new() };
    (who, info)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use poem::error::{MethodNotAllowedError, NotFoundError};
    use poem::http::Method;
    use poem::{Endpoint, Request};

    use crate::observe::http::RouteTable;

    /// `/a/:b/*c` → (`/a/x1/c1/c2`, `/a/{b}/{c}`).
    fn instantiate(template: &str) -> (String, String) {
        let mut path = String::new();
        let mut label = String::new();
        for (i, part) in template.split('/').filter(|p| !p.is_empty()).enumerate() {
            if let Some(name) = part.strip_prefix(':') {
                path.push_str(&format!("/x{i}"));
                label.push_str(&format!("/{{{name}}}"));
            } else if let Some(name) = part.strip_prefix('*') {
                path.push_str("/c1/c2");
                label.push_str(&format!("/{{{name}}}"));
            } else {
                path.push_str(&format!("/{part}"));
                label.push_str(&format!("/{part}"));
            }
        }
        (path, label)
    }

    #[test]
    fn every_route_maps_to_its_own_template_label() {
        let templates = super::route_table().templates;
        let table = RouteTable::new(&templates);
        for template in &templates {
            let (path, label) = instantiate(template);
            assert_eq!(table.template(&path), label, "{path}");
        }
    }

    /// The spec's (path, method) pairs and the registry's documented ones are the same set,
    /// and the only routes the spec leaves out are the listed pages.
    #[test]
    fn every_served_route_has_an_operation_and_every_operation_is_served() {
        let table = super::route_table();
        let mut documented = BTreeSet::new();
        let mut undocumented = BTreeSet::new();
        for (method, template, described) in &table.served {
            let entry = (super::openapi::path_of(template), method.as_str().to_ascii_lowercase());
            if *described {
                documented.insert(entry);
            } else {
                undocumented.insert(entry);
            }
        }
        let spec = super::openapi::static_spec();
        let mut in_spec = BTreeSet::new();
        for (path, item) in spec["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                in_spec.insert((path.clone(), method.clone()));
            }
        }
        assert_eq!(
            documented.difference(&in_spec).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "served and registered as documented, but missing from the spec"
        );
        assert_eq!(
            in_spec.difference(&documented).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "in the spec, but not served"
        );
        let pages: BTreeSet<(String, String)> = [
            ("/api/health", "head"),
            ("/api/docs/{path}", "get"),
            ("/_/", "get"),
            ("/_/v/{version}/{path}", "get"),
        ]
        .into_iter()
        .map(|(p, m)| (p.to_string(), m.to_string()))
        .collect();
        assert_eq!(undocumented, pages, "served without an operation");
    }

    /// The registry's list of served methods is what the router really serves: every
    /// registered method is routed, every other one is answered 405.
    #[tokio::test]
    async fn the_router_serves_exactly_the_registered_methods() {
        let table = super::route_table();
        let methods = [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE];
        for template in &table.templates {
            let path: Vec<String> = template
                .split('/')
                .map(|part| match part.chars().next() {
                    Some(':') => "x1".to_string(),
                    Some('*') => "c1/c2".to_string(),
                    _ => part.to_string(),
                })
                .collect();
            let path = path.join("/");
            for method in &methods {
                let registered = table.served.iter().any(|(m, t, _)| m == method && t == template);
                let req = Request::builder().method(method.clone()).uri_str(&path).finish();
                let routed = match table.route.call(req).await {
                    Ok(_) => true,
                    Err(err) => !(err.is::<NotFoundError>() || err.is::<MethodNotAllowedError>()),
                };
                assert_eq!(routed, registered, "{method} {path}");
            }
        }
    }
}

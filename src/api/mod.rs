//! HTTP ↔ domain translation. The only module that imports poem.
//!
//! Handlers have one shape: extract → call the domain → map the result. Errors of every
//! origin leave through [`error::ApiError`] as problem+json.

mod access;
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
mod records;
mod search;

use std::sync::Arc;

use poem::http::StatusCode;
use poem::{get, post, Endpoint, EndpointExt, IntoEndpoint, Request, Response, Route};
use serde_json::{Map, Value};

use crate::app::App;
use crate::records::filter::RequestInfo;
use crate::records::rules::Principal;

/// A route table that remembers its templates (the label values of the request metrics).
#[derive(Default)]
struct Routes {
    route: Route,
    templates: Vec<&'static str>,
}

impl Routes {
    fn at<E>(mut self, template: &'static str, ep: E) -> Routes
    where
        E: IntoEndpoint,
        E::Endpoint: 'static,
    {
        self.templates.push(template);
        self.route = self.route.at(template, ep);
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

/// Every route of the public API with its template.
fn route_table() -> Routes {
    Routes::default()
        .at("/api/health", get(health::health).head(health::health))
        .at("/api/ready", get(health::ready))
        .at("/api/setup", get(auth::setup_status).post(auth::setup))
        .at("/api/openapi.json", get(openapi::live_spec))
        .at("/api/docs", get(docs::index))
        .at("/api/docs/*path", get(docs::asset))
        .at("/_/", get(docs::account_page))
        .at("/_/confirm.js", get(docs::account_script))
        .at("/api/batch", post(batch::batch))
        .at("/api/collections", get(collections::list).post(collections::create))
        .at(
            "/api/collections/:collection",
            get(collections::view).patch(collections::update).delete(collections::delete),
        )
        .at("/api/collections/:collection/schema", get(collections::json_schema))
        .at("/api/collections/:collection/auth-with-password", post(auth::auth_with_password))
        .at("/api/collections/:collection/auth-refresh", post(auth::auth_refresh))
        .at("/api/collections/:collection/auth-methods", get(auth::auth_methods))
        .at("/api/collections/:collection/auth-logout", post(auth::auth_logout))
        .at("/api/collections/:collection/request-verification", post(auth::request_verification))
        .at("/api/collections/:collection/confirm-verification", post(auth::confirm_verification))
        .at("/api/collections/:collection/request-password-reset", post(auth::request_password_reset))
        .at("/api/collections/:collection/confirm-password-reset", post(auth::confirm_password_reset))
        .at("/api/collections/:collection/request-email-change", post(auth::request_email_change))
        .at("/api/collections/:collection/confirm-email-change", post(auth::confirm_email_change))
        .at("/api/collections/:collection/request-otp", post(auth::request_otp))
        .at("/api/collections/:collection/auth-with-otp", post(auth::auth_with_otp))
        .at("/api/collections/:collection/impersonate/:id", post(auth::impersonate))
        .at("/api/collections/:collection/records", get(records::list).post(records::create))
        .at("/api/collections/:collection/search", get(search::collection_search))
        .at(
            "/api/collections/:collection/records/:id",
            get(records::view).patch(records::update).delete(records::delete),
        )
        .at("/api/search", get(search::search_all))
        .at("/api/search/status", get(search::search_status))
        .at("/api/search/reindex", post(search::reindex))
        .at("/api/files/token", post(files::token))
        .at("/api/files/usage", get(files::usage))
        .at("/api/files/:collection/:recordId/:filename", get(files::download))
        .at("/api/jobs", get(jobs::list).post(jobs::enqueue))
        .at("/api/jobs/stats", get(jobs::stats))
        .at("/api/jobs/:id", get(jobs::view).delete(jobs::delete))
        .at("/api/jobs/:id/retry", post(jobs::retry))
        .at("/api/jobs/:id/cancel", post(jobs::cancel))
        .at("/api/keys", get(keys::list).post(keys::create))
        .at("/api/keys/:id", get(keys::view).delete(keys::revoke))
        .at("/api/audit", get(keys::audit_log))
        .at("/api/crons", get(jobs::cron_list).post(jobs::cron_create))
        .at("/api/crons/:id", get(jobs::cron_view).patch(jobs::cron_update).delete(jobs::cron_delete))
        .at("/api/crons/:id/run", post(jobs::cron_run))
        .at("/api/crons/:id/runs", get(jobs::cron_runs))
        .at("/api/settings", get(mail::settings_view).patch(mail::settings_update))
        .at("/api/settings/test/email", post(mail::test_email))
        .at("/api/mail/send", post(mail::send))
        .at("/api/mail/log", get(mail::log))
        .at("/api/mail/log/:id", get(mail::log_view))
        .at("/metrics", get(observe::prometheus))
        .at("/api/metrics", get(observe::history))
        .at("/api/logs", get(observe::logs))
        .at("/api/logs/stats", get(observe::log_stats))
        .at("/api/alerts", get(observe::alert_list).post(observe::alert_create))
        .at("/api/alerts/history", get(observe::alert_history))
        .at(
            "/api/alerts/:id",
            get(observe::alert_view).patch(observe::alert_update).delete(observe::alert_delete),
        )
}

/// Routes served only on the unix socket in the data directory (same-host administration
/// while `serve` holds the data file).
pub fn admin_socket_routes(app: Arc<App>) -> impl Endpoint {
    Route::new()
        .at("/superusers/upsert", post(auth::socket_superuser_upsert))
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
    use crate::observe::metrics::RouteTable;

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

    #[test]
    fn every_route_is_in_the_openapi_spec() {
        let spec = super::openapi::static_spec();
        let paths = spec["paths"].as_object().cloned().unwrap_or_default();
        for template in super::route_table().templates {
            let (_, label) = instantiate(template);
            if label.starts_with("/api/docs/") || label == "/_" || label.starts_with("/_/") {
                continue; // the reference's static assets, the account confirmation page
            }
            assert!(paths.contains_key(&label), "{label} is routed but missing from the spec");
        }
    }
}

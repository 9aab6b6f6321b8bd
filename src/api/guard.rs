//! What wraps every HTTP request: the client address, rate limits, CORS, the security and
//! caching headers of every response, and the request metrics and request log row.

use std::net::IpAddr;
use std::sync::Arc;

use poem::http::{header, HeaderValue, Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};

use super::error::ApiError;
use crate::app::App;
use crate::observe::pressure::Shed;
use crate::observe::requests::Row;

/// The client's IP address as the rate limiter and the audit log see it (after trusted
/// proxies), stored in the request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

/// The client address of a request, as text for logs ("" when unknown).
pub(crate) fn client_ip(req: &Request) -> String {
    match req.extensions().get::<ClientIp>() {
        Some(ClientIp(Some(ip))) => ip.to_string(),
        _ => String::new(),
    }
}

/// A 429 problem with `Retry-After`.
pub(crate) fn too_many_requests(retry_after_secs: u64) -> ApiError {
    let mut err = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate-limited",
        "Too many requests",
        "Too many requests; retry after the time in Retry-After.",
    );
    err.retry_after = Some(u32::try_from(retry_after_secs).unwrap_or(u32::MAX));
    err
}

/// A 503 problem with `Retry-After` for a request refused by load shedding.
fn overloaded(shed: Shed) -> ApiError {
    let mut err = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "Server overloaded",
        "The server is at capacity; retry after the time in Retry-After.",
    );
    err.retry_after = Some(u32::try_from(shed.retry_after_secs()).unwrap_or(u32::MAX));
    err
}

/// Paths answered even when the server sheds load: the probes and the metrics scrape,
/// so monitoring sees an overloaded server as overloaded, not as down.
fn always_admitted(path: &str) -> bool {
    matches!(path, "/api/health" | "/api/ready" | "/metrics")
}

const ALLOWED_METHODS: &str = "GET, HEAD, POST, PATCH, PUT, DELETE";

/// The `Access-Control-Allow-Origin` value for `origin`, if the allowlist admits it.
fn allowed_origin(app: &App, origin: &str) -> Option<HeaderValue> {
    let origins = &app.config.cors.allowed_origins;
    if origins.iter().any(|o| o == "*") {
        return Some(HeaderValue::from_static("*"));
    }
    origins.iter().find(|o| o.eq_ignore_ascii_case(origin)).and_then(|o| HeaderValue::from_str(o).ok())
}

fn preflight(app: &App, req: &Request, origin: &str) -> Response {
    let Some(allow) = allowed_origin(app, origin) else {
        return ApiError::forbidden(
            "This origin is not allowed to call the API (see [cors] allowed_origins).",
        )
        .into_response();
    };
    let mut resp = Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow)
        .header(header::ACCESS_CONTROL_ALLOW_METHODS, ALLOWED_METHODS)
        .header(header::ACCESS_CONTROL_MAX_AGE, "600")
        .header(header::VARY, "Origin")
        .finish();
    if let Some(requested) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        resp.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
    }
    resp
}

/// Headers every response carries. API answers are never cached by shared caches, and
/// answers to authenticated requests are never stored anywhere.
fn secure(app: &App, path: &str, authenticated: bool, origin: Option<&str>, resp: &mut Response) {
    // The API reference and the admin UI (`/_/`) are pages with scripts. The admin UI has
    // the stricter policy: no inline styles either, and it talks only to this origin.
    let admin = path.starts_with("/_/");
    let docs = admin || path == "/api/docs" || path.starts_with("/api/docs/");
    let headers = resp.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert("Cross-Origin-Opener-Policy", HeaderValue::from_static("same-origin"));
    headers
        .insert("Permissions-Policy", HeaderValue::from_static("camera=(), microphone=(), geolocation=()"));
    let csp = if admin {
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
         connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    } else if docs {
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
    } else {
        "default-src 'none'; frame-ancestors 'none'"
    };
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    if app.public_url().starts_with("https://") {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    }
    if authenticated || (!docs && !headers.contains_key(header::CACHE_CONTROL)) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if let Some(allow) = origin.and_then(|o| allowed_origin(app, o)) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        headers
            .insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("Location, Retry-After"));
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// What kind of credentials a request carried, for the request log (never the secret).
fn auth_kind(req: &Request) -> &'static str {
    match req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        None => "none",
        Some(v) => {
            let v = v.trim();
            let token = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).unwrap_or(v);
            if token.trim_start().starts_with(crate::accounts::keys::PREFIX) {
                "apiKey"
            } else {
                "token"
            }
        }
    }
}

/// A request refused (401/403) that carried credentials the server did not accept (a
/// malformed, expired or revoked token, an unknown API key) is answered 401 with the reason:
/// the caller was treated as anonymous, and "only superusers" would send them looking in the
/// wrong place. Refusals of accepted credentials stay as they are.
async fn explain_refused_credentials(app: &App, credentials: Option<&str>, resp: Response) -> Response {
    if !matches!(resp.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) || credentials.is_none() {
        return resp;
    }
    match app.auth.rejection(credentials).await {
        Some(reason) => ApiError::unauthenticated(reason).into_response(),
        None => resp,
    }
}

/// Runs `ep` for `req` inside the guard, counting it in the request metrics and the
/// request log.
pub async fn guard<E: Endpoint>(ep: Arc<E>, mut req: Request, app: Arc<App>) -> poem::Result<Response> {
    let started = std::time::Instant::now();
    let peer = req.remote_addr().as_socket_addr().map(|a| a.ip());
    let forwarded = req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok());
    let ip = app.limiter.client_ip(peer, forwarded);
    req.extensions_mut().insert(ClientIp(ip));
    let path = req.uri().path().to_string();
    let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_string);
    let authenticated = req.headers().contains_key(header::AUTHORIZATION);
    let method = crate::observe::http::method_label(req.method().as_str());
    let http = app.observe.http();
    let flight = http.filter(|_| app.config.observe.metrics).map(|h| h.start(method, &path));
    let log = app.observe.requests.is_enabled().then(|| auth_kind(&req));

    let mut resp = if req.method() == Method::OPTIONS
        && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        && origin.is_some()
    {
        preflight(&app, &req, origin.as_deref().unwrap_or_default())
    } else {
        let limited = match ip {
            Some(ip) => app.limiter.check_request(ip, &path).err(),
            None => None,
        };
        match limited {
            Some(limited) => {
                tracing::info!(client = ?ip, path = %path, "rate limited");
                too_many_requests(limited.retry_after_secs).into_response()
            }
            None => {
                // An event stream stays open for hours: it holds no request slot (realtime
                // has its own client limit).
                let stream = path == "/api/realtime" && req.method() == Method::GET;
                let slot = if always_admitted(&path) || stream {
                    Ok(None)
                } else {
                    app.observe.pressure.admit().map(Some)
                };
                match slot {
                    Err(shed) => {
                        tracing::debug!(path = %path, reason = shed.label(), "request shed");
                        super::body::discard(req.take_body(), std::time::Duration::from_secs(10)).await;
                        overloaded(shed).into_response()
                    }
                    Ok(slot) => {
                        let credentials = req.header("Authorization").map(str::to_string);
                        let resp = match ep.call(req).await {
                            Ok(r) => r.into_response(),
                            Err(err) => super::error::into_problem(err),
                        };
                        let resp = explain_refused_credentials(&app, credentials.as_deref(), resp).await;
                        match slot {
                            // A large answer keeps the slot until it has been sent.
                            Some(slot) => {
                                let (parts, body) = resp.into_parts();
                                Response::from_parts(parts, super::held::hold(body, slot))
                            }
                            None => resp,
                        }
                    }
                }
            }
        }
    };
    secure(&app, &path, authenticated, origin.as_deref(), &mut resp);
    let status = resp.status().as_u16();
    let (route, elapsed) = match flight {
        Some(flight) => (flight.route(), flight.finish(status)),
        None => (http.map_or(usize::MAX, |h| h.routes.slot(&path)), started.elapsed()),
    };
    if let (Some(auth), Some(http)) = (log, http) {
        app.observe.requests.record(Row {
            time_us: chrono::Utc::now().timestamp_micros(),
            method,
            route: http.routes.shared_label(route),
            status,
            duration_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            ip,
            auth,
        });
    }
    Ok(resp)
}

//! `/api/docs`: the interactive API reference, `/api/docs/errors`, the reference of every
//! error `type`, and `/_/`, the page account emails link to; served from assets embedded in
//! the binary.

use poem::http::{Method, StatusCode};
use poem::web::Path;
use poem::{handler, Response};
use rust_embed::RustEmbed;
use serde_json::json;

use super::error::ApiError;
use super::Routes;

#[derive(RustEmbed)]
#[folder = "assets/docs/"]
#[exclude = "*.md"]
struct DocsAssets;

/// The page account emails link to (`/_/#/auth/confirm-verification/<token>` and the
/// password-reset and email-change equivalents, PocketBase's link shape): it reads the
/// token from the fragment and calls the collection's confirm endpoint.
#[derive(RustEmbed)]
#[folder = "assets/confirm/"]
struct ConfirmAssets;

const CSP: &str =
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'";

fn serve(name: &str) -> Result<Response, ApiError> {
    let file =
        DocsAssets::get(name).ok_or_else(|| ApiError::not_found("The requested resource wasn't found."))?;
    Ok(asset_response(name, file.data.into_owned()))
}

fn asset_response(name: &str, data: Vec<u8>) -> Response {
    let content_type = match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        _ => "text/plain; charset=utf-8",
    };
    Response::builder()
        .status(StatusCode::OK)
        .content_type(content_type)
        .header("Content-Security-Policy", CSP)
        .header("Cache-Control", "public, max-age=3600")
        .body(data)
}

/// `/_/`: the account confirmation page.
#[handler]
pub async fn account_page() -> Result<Response, ApiError> {
    account_asset("index.html")
}

/// `/_/confirm.js`: its script.
#[handler]
pub async fn account_script() -> Result<Response, ApiError> {
    account_asset("confirm.js")
}

fn account_asset(name: &str) -> Result<Response, ApiError> {
    let file = ConfirmAssets::get(name)
        .ok_or_else(|| ApiError::not_found("The requested resource wasn't found."))?;
    Ok(asset_response(name, file.data.into_owned()))
}

#[handler]
pub async fn index() -> Result<Response, ApiError> {
    serve("index.html")
}

#[handler]
pub async fn asset(Path(path): Path<String>) -> Result<Response, ApiError> {
    // `/api/docs/errors`: the page every error's `type` links to (`/api/docs/errors#kind`).
    if path == "errors" {
        return serve("errors.html");
    }
    serve(&path)
}

/// `/api/docs` (described in the spec), its assets and `/_/` (not described).
pub(super) fn routes(api: Routes) -> Routes {
    api.at("/api/docs", |m| {
        m.get(
            index,
            json!({"operationId": "docs", "summary": "Interactive API reference", "tags": ["meta"], "responses": {"200": {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}}}),
        )
    })
    .at("/api/docs/*path", |m| m.undocumented(Method::GET, asset))
    .at("/_/", |m| m.undocumented(Method::GET, account_page))
    .at("/_/confirm.js", |m| m.undocumented(Method::GET, account_script))
}

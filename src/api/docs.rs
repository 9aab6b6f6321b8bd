//! `/api/docs`: the interactive API reference and `/api/docs/errors`, the reference of every
//! error `type`; served from assets embedded in the binary. (`/_/`, the admin UI and the
//! account pages emails link to, is `admin.rs`.)

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

/// `/api/docs` (described in the spec) and its assets (not described).
pub(super) fn routes(api: Routes) -> Routes {
    api.at("/api/docs", |m| {
        m.get(
            index,
            json!({"operationId": "docs", "summary": "Interactive API reference", "tags": ["meta"], "responses": {"200": {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}}}),
        )
    })
    .at("/api/docs/*path", |m| m.undocumented(Method::GET, asset))
}

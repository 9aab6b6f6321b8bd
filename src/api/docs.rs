//! `/api/docs`: the interactive API reference, served from assets embedded in the binary.

use poem::http::StatusCode;
use poem::web::Path;
use poem::{handler, Response};
use rust_embed::RustEmbed;

use super::error::ApiError;

#[derive(RustEmbed)]
#[folder = "assets/docs/"]
#[exclude = "*.md"]
struct DocsAssets;

const CSP: &str =
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'";

fn serve(name: &str) -> Result<Response, ApiError> {
    let file =
        DocsAssets::get(name).ok_or_else(|| ApiError::not_found("The requested resource wasn't found."))?;
    let content_type = match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        _ => "text/plain; charset=utf-8",
    };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .content_type(content_type)
        .header("Content-Security-Policy", CSP)
        .header("Cache-Control", "public, max-age=3600")
        .body(file.data.into_owned()))
}

#[handler]
pub async fn index() -> Result<Response, ApiError> {
    serve("index.html")
}

#[handler]
pub async fn asset(Path(path): Path<String>) -> Result<Response, ApiError> {
    serve(&path)
}

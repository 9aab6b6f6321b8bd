//! `/_/`: the embedded admin UI (and the account pages emails link to), served from
//! `assets/admin/` compiled into the binary.
//!
//! `index.html` is never cached; it names its scripts and styles under
//! `/_/v/<version>/...`, where the version is a hash of every embedded asset, so those are
//! cached for a year and a new binary with changed assets gets new URLs. The UI is plain ES
//! modules (vendored Preact + htm): there is no Node build step.
//!
//! In debug builds only, `ADMIN_UI_DEV_DIR=assets/admin` serves the files from disk instead
//! (version `dev`, never cached), so the UI can be edited without rebuilding the server.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::OnceLock;

use poem::http::{Method, StatusCode};
use poem::web::Path;
use poem::{handler, Response};
use rust_embed::RustEmbed;

use super::error::ApiError;
use super::Routes;

#[derive(RustEmbed)]
#[folder = "assets/admin/"]
#[exclude = "*.sh"]
#[exclude = "*.md"]
struct AdminAssets;

/// The placeholder `index.html` carries where the asset version goes.
const VERSION_MARK: &str = "__ASSET_VERSION__";

/// A hash of every embedded asset (name and content), as 16 hex digits.
fn embedded_version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut names: Vec<_> = AdminAssets::iter().collect();
        names.sort();
        let mut hasher = DefaultHasher::new();
        for name in names {
            name.hash(&mut hasher);
            if let Some(file) = AdminAssets::get(&name) {
                file.metadata.sha256_hash().hash(&mut hasher);
            }
        }
        format!("{:016x}", hasher.finish())
    })
}

/// The directory to serve from instead of the embedded files (debug builds only).
fn dev_dir() -> Option<std::path::PathBuf> {
    if cfg!(debug_assertions) {
        std::env::var_os("ADMIN_UI_DEV_DIR").map(std::path::PathBuf::from)
    } else {
        None
    }
}

/// The current asset version and the bytes of `name`, if it exists.
fn load(name: &str) -> Option<(String, Vec<u8>)> {
    if name.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
        return None;
    }
    match dev_dir() {
        Some(dir) => std::fs::read(dir.join(name)).ok().map(|data| ("dev".to_string(), data)),
        None => AdminAssets::get(name).map(|f| (embedded_version().to_string(), f.data.into_owned())),
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "text/plain; charset=utf-8",
    }
}

fn not_found() -> ApiError {
    ApiError::not_found("The requested resource wasn't found.")
}

/// `/_/`: the single page; every view is a `#/...` route inside it.
#[handler]
pub async fn index() -> Result<Response, ApiError> {
    let (version, data) = load("index.html").ok_or_else(not_found)?;
    let html = String::from_utf8_lossy(&data).replace(VERSION_MARK, &version);
    Ok(Response::builder()
        .status(StatusCode::OK)
        .content_type(content_type("index.html"))
        .header("Cache-Control", "no-cache")
        .body(html))
}

/// `/_/v/<version>/<path>`: a script, style sheet or image of the UI.
#[handler]
pub async fn asset(Path((version, path)): Path<(String, String)>) -> Result<Response, ApiError> {
    if path == "index.html" {
        return Err(not_found());
    }
    let (current, data) = load(&path).ok_or_else(not_found)?;
    // An old version's URL still gets today's file, but only this version's URLs are cached.
    let cache = if version == current && current != "dev" {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .content_type(content_type(&path))
        .header("Cache-Control", cache)
        .body(data))
}

/// `/_/` and its assets (pages, not described in the spec).
pub(super) fn routes(api: Routes) -> Routes {
    api.at("/_/", |m| m.undocumented(Method::GET, index))
        .at("/_/v/:version/*path", |m| m.undocumented(Method::GET, asset))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_version_is_stable_and_hex() {
        let v = super::embedded_version();
        assert_eq!(v.len(), 16);
        assert!(v.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(v, super::embedded_version());
    }

    #[test]
    fn paths_that_climb_out_are_refused() {
        assert!(super::load("../Cargo.toml").is_none());
        assert!(super::load("vendor/../../Cargo.toml").is_none());
        assert!(super::load("index.html").is_some());
    }
}

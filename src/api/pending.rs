//! PocketBase endpoints the JS SDK calls that Backbone does not serve yet: each answers
//! 501 problem+json whose title names the feature and whose detail says what to use meanwhile, instead of a bare 404 (the SDK surfaces the message).

use poem::http::StatusCode;
use poem::{handler, Request};

use super::error::ApiError;
use super::openapi::{op, path_param};
use super::Routes;

/// What is missing behind `path`, and what to do meanwhile.
fn missing(path: &str) -> (&'static str, &'static str) {
    if path.starts_with("/api/backups") {
        ("Backups are not available yet", "Backbone has no backup endpoints yet: stop the server (or run `backbone check`) and copy the data directory.")
    } else if path == "/api/collections/import" {
        (
            "Importing collections is not available yet",
            "Create, update and delete collections one by one with /api/collections.",
        )
    } else if path.ends_with("/auth-with-oauth2") {
        (
            "OAuth2 sign-in is not available yet",
            "Backbone has no OAuth2 providers yet: sign in with a password or a one-time code.",
        )
    } else if path.starts_with("/api/settings/test/s3") {
        ("S3 storage is not available yet", "Backbone stores files on the local disk only.")
    } else {
        (
            "OAuth2 providers are not available yet",
            "Backbone has no OAuth2 providers yet, so no Apple client secret either.",
        )
    }
}

#[handler]
pub async fn not_yet(req: &Request) -> ApiError {
    let (title, meanwhile) = missing(req.uri().path());
    // The SDK shows `message` (the detail), so it repeats what is missing.
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "not-implemented",
        title,
        format!("{title} in Backbone. {meanwhile}"),
    )
}

fn key_param() -> serde_json::Value {
    path_param("key", "Backup file name.")
}

/// A 501 operation.
fn pending(id: &str, summary: &str, tag: &str, params: Vec<serde_json::Value>) -> serde_json::Value {
    op(id, &format!("{summary} (not yet: answers 501)"), tag, params, None, (204, None), &[501])
}

/// The PocketBase endpoints that answer 501 for now.
pub(super) fn routes(api: Routes) -> Routes {
    api.at("/api/backups", |m| {
        m.get(not_yet, pending("listBackups", "List backups", "pending", vec![]))
            .post(not_yet, pending("createBackup", "Create a backup", "pending", vec![]))
    })
    .at("/api/backups/upload", |m| {
        m.post(not_yet, pending("uploadBackup", "Upload a backup", "pending", vec![]))
    })
    .at("/api/backups/:key", |m| {
        m.get(not_yet, pending("downloadBackup", "Download a backup", "pending", vec![key_param()]))
            .delete(not_yet, pending("deleteBackup", "Delete a backup", "pending", vec![key_param()]))
    })
    .at("/api/backups/:key/restore", |m| {
        m.post(not_yet, pending("restoreBackup", "Restore a backup", "pending", vec![key_param()]))
    })
    .at("/api/collections/import", |m| {
        m.put(not_yet, pending("importCollections", "Import collections", "pending", vec![]))
    })
    .at("/api/collections/:collection/auth-with-oauth2", |m| {
        m.post(
            not_yet,
            pending(
                "authWithOAuth2",
                "Sign in with an OAuth2 provider",
                "pending",
                vec![path_param("collection", "Collection id or name.")],
            ),
        )
    })
    .at("/api/settings/test/s3", |m| {
        m.post(not_yet, pending("testS3", "Test the S3 storage", "pending", vec![]))
    })
    .at("/api/settings/apple/generate-client-secret", |m| {
        m.post(
            not_yet,
            pending("generateAppleClientSecret", "Generate an Apple client secret", "pending", vec![]),
        )
    })
}

use crate::common::Server;

#[tokio::test]
async fn health_answers_200() {
    let s = Server::start();
    let r = s.call("GET", "/api/health", None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["message"], "API is healthy.");
}

#[tokio::test]
async fn ready_reports_writable_storage() {
    let s = Server::start();
    let r = s.call("GET", "/api/ready", None, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["ready"], true);
}

#[tokio::test]
async fn security_headers_are_set() {
    let s = Server::start();
    let r = s.call("GET", "/api/health", None, None).await;
    assert_eq!(r.headers.get("x-content-type-options").and_then(|v| v.to_str().ok()), Some("nosniff"));
    assert_eq!(r.headers.get("x-frame-options").and_then(|v| v.to_str().ok()), Some("DENY"));
}

#[tokio::test]
async fn sigterm_shuts_down_cleanly_and_data_survives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Server::start_in(dir.path(), Default::default());
    let token = s.setup_superuser().await;
    let r = s
        .call("POST", "/api/collections", Some(&token), Some(crate::common::posts_collection("notes")))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let created = s
        .call(
            "POST",
            "/api/collections/notes/records",
            Some(&token),
            Some(serde_json::json!({"title": "kept"})),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    assert_eq!(s.terminate(), Some(0), "graceful exit code");
    assert!(!dir.path().join("backbone.sock").exists(), "admin socket removed on shutdown");
    let s = Server::start_in(dir.path(), Default::default());
    assert!(s.setup_token.is_none(), "no setup token once a superuser exists");
    let token = s.login().await;
    let id = created.body["id"].as_str().expect("id");
    let r = s.call("GET", &format!("/api/collections/notes/records/{id}"), Some(&token), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["title"], "kept");
}

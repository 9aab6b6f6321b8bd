//! API keys: created by superusers, shown once, scoped to collections × operations, never
//! privileged beyond their scopes, expiring, revocable, with last use recorded and audited.

use serde_json::json;

use crate::common::{posts_collection, Server};

#[tokio::test]
async fn a_scoped_key_does_what_its_scopes_say_and_nothing_else() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    let posts = s.call("POST", "/api/collections", Some(&su), Some(posts_collection("posts"))).await;
    assert_eq!(posts.status, 200, "{}", posts.text);
    s.call(
        "POST",
        "/api/collections",
        Some(&su),
        Some(json!({"name": "other", "fields": [{"name": "t", "type": "text"}]})),
    )
    .await;
    let rec = s
        .call(
            "POST",
            "/api/collections/posts/records",
            Some(&su),
            Some(json!({"title": "hello", "secret": "s3"})),
        )
        .await;
    let id = rec.body["id"].as_str().expect("id").to_string();

    // Bad input is a field error.
    s.call("POST", "/api/keys", Some(&su), Some(json!({"name": "x", "scopes": {"posts": ["read"]}})))
        .await
        .assert_problem(400)
        .assert_field_error("scopes", "validation_invalid_scope");
    s.call("POST", "/api/keys", Some(&su), Some(json!({"name": "x", "scopes": {"missing": ["list"]}})))
        .await
        .assert_problem(400)
        .assert_field_error("scopes", "validation_unknown_collection");
    s.call("POST", "/api/keys", Some(&su), Some(json!({"scopes": {"posts": ["list"]}})))
        .await
        .assert_problem(400)
        .assert_field_error("name", "validation_required");
    s.call(
        "POST",
        "/api/keys",
        Some(&su),
        Some(json!({"name": "x", "scopes": {"posts": ["list"]}, "expires": "2001-01-01 00:00:00Z"})),
    )
    .await
    .assert_problem(400)
    .assert_field_error("expires", "validation_invalid_date");
    // A misspelt member is refused by name, not ignored (a key that never expires).
    s.call(
        "POST",
        "/api/keys",
        Some(&su),
        Some(json!({"name": "x", "scopes": {"posts": ["list"]}, "expirs": "2099-01-01 00:00:00Z"})),
    )
    .await
    .assert_problem(400)
    .assert_field_error("expirs", "validation_unknown_field");

    let created = s
        .call(
            "POST",
            "/api/keys",
            Some(&su),
            Some(json!({"name": "reporting", "scopes": {"posts": ["list", "view"]}})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let key = created.body["key"].as_str().expect("key shown once").to_string();
    let key_id = created.body["id"].as_str().expect("id").to_string();
    assert!(key.starts_with("bbk_"));
    let auth = format!("Bearer {key}");

    // In scope: list and view pass the rules (posts' list rule is null = superusers only).
    let list = s.call("GET", "/api/collections/posts/records", Some(&auth), None).await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(list.body["totalItems"], 1);
    assert!(list.body["items"][0].get("secret").is_none(), "keys never see hidden fields");
    assert_eq!(
        s.call("GET", &format!("/api/collections/posts/records/{id}"), Some(&auth), None).await.status,
        200
    );
    s.call("GET", "/api/collections/posts/records?filter=secret='s3'", Some(&auth), None)
        .await
        .assert_problem(400);
    // Out of scope: other operations, other collections, schema, jobs, keys, audit.
    s.call("POST", "/api/collections/posts/records", Some(&auth), Some(json!({"title": "x"})))
        .await
        .assert_problem(403);
    s.call(
        "PATCH",
        &format!("/api/collections/posts/records/{id}"),
        Some(&auth),
        Some(json!({"title": "x"})),
    )
    .await
    .assert_problem(403);
    s.call("DELETE", &format!("/api/collections/posts/records/{id}"), Some(&auth), None)
        .await
        .assert_problem(403);
    s.call("GET", "/api/collections/other/records", Some(&auth), None).await.assert_problem(403);
    s.call("GET", "/api/collections", Some(&auth), None).await.assert_problem(403);
    s.call("GET", "/api/jobs", Some(&auth), None).await.assert_problem(403);
    s.call("GET", "/api/keys", Some(&auth), None).await.assert_problem(403);
    s.call("GET", "/api/audit", Some(&auth), None).await.assert_problem(403);
    let batch = s
        .call("POST", "/api/batch", Some(&auth), Some(json!({"requests": [{"method": "POST", "url": "/api/collections/posts/records", "body": {"title": "b"}}]})))
        .await;
    batch.assert_problem(400);
    assert_eq!(batch.body["data"]["requests"]["0"]["response"]["status"], 403, "{}", batch.text);
    // A wrong secret for a real key id is not accepted: 401, naming the key as the problem.
    let forged = format!("Bearer bbk_{key_id}_{}", "x".repeat(40));
    let r = s.call("GET", "/api/collections/posts/records", Some(&forged), None).await;
    r.assert_problem(401);
    assert!(r.body["message"].as_str().unwrap_or_default().contains("API key"), "{}", r.text);

    // Listing shows the key without its secret or hash, with its last use.
    let keys = s.call("GET", "/api/keys", Some(&su), None).await;
    assert_eq!(keys.status, 200, "{}", keys.text);
    assert!(!keys.text.contains(&key[20..]), "secret leaked: {}", keys.text);
    assert!(keys.body["items"][0].get("hash").is_none());
    assert!(!keys.body["items"][0]["lastUsed"].as_str().unwrap_or_default().is_empty(), "{}", keys.text);
    assert_eq!(keys.body["items"][0]["scopes"][0]["collectionName"], "posts");

    // Revoked: refused at once.
    let revoked = s.call("DELETE", &format!("/api/keys/{key_id}"), Some(&su), None).await;
    assert_eq!(revoked.status, 204, "{}", revoked.text);
    s.call("GET", "/api/collections/posts/records", Some(&auth), None).await.assert_problem(401);
    s.call("DELETE", &format!("/api/keys/{key_id}"), Some(&su), None).await.assert_problem(404);
    let audit = s.call("GET", "/api/audit?action=apikey", Some(&su), None).await;
    assert_eq!(audit.body["totalItems"], 2, "{}", audit.text);
    assert_eq!(audit.body["items"][0]["action"], "apikey.revoke");
    assert!(!audit.text.contains(&key[20..]), "secret in the audit log");
    // Regression (found by schemathesis): a huge page number overflowed the offset (500).
    let far = s.call("GET", "/api/audit?page=9223372036854775807&perPage=500", Some(&su), None).await;
    assert_eq!(far.status, 200, "{}", far.text);
    assert_eq!(far.body["items"], json!([]));
}

#[tokio::test]
async fn an_expired_key_is_refused_and_keys_survive_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let mut s = Server::start_in(dir.path(), Default::default());
    let su = s.setup_superuser().await;
    s.call("POST", "/api/collections", Some(&su), Some(posts_collection("posts"))).await;
    let soon =
        (chrono::Utc::now() + chrono::Duration::seconds(2)).format("%Y-%m-%d %H:%M:%S%.3fZ").to_string();
    let short = s
        .call(
            "POST",
            "/api/keys",
            Some(&su),
            Some(json!({"name": "short", "scopes": {"*": ["list"]}, "expires": soon})),
        )
        .await;
    assert_eq!(short.status, 201, "{}", short.text);
    let long = s
        .call("POST", "/api/keys", Some(&su), Some(json!({"name": "long", "scopes": {"*": ["list"]}})))
        .await;
    let short_auth = format!("Bearer {}", short.body["key"].as_str().expect("key"));
    let long_auth = format!("Bearer {}", long.body["key"].as_str().expect("key"));
    assert_eq!(s.call("GET", "/api/collections/posts/records", Some(&short_auth), None).await.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    s.call("GET", "/api/collections/posts/records", Some(&short_auth), None).await.assert_problem(401);
    s.terminate();
    let s = Server::start_in(dir.path(), Default::default());
    assert_eq!(s.call("GET", "/api/collections/posts/records", Some(&long_auth), None).await.status, 200);
}

#[tokio::test]
async fn sending_email_takes_a_superuser_or_a_key_with_the_mail_send_capability() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    super::users::users_collection(&s, &su, json!({})).await;
    super::users::signup(&s, "mailer@example.com").await;
    let user = super::users::sign_in(&s, "mailer@example.com", super::users::PASSWORD).await;
    let mail = json!({"to": "ann@example.com", "subject": "Hi", "text": "Hello"});
    // Signed-in non-superusers are refused (403), anonymous callers are asked to sign in (401).
    s.call("POST", "/api/mail/send", Some(&user), Some(mail.clone())).await.assert_problem(403);
    s.call("GET", "/api/mail/log", Some(&user), None).await.assert_problem(403);
    s.call("GET", "/api/settings", Some(&user), None).await.assert_problem(403);
    s.call("POST", "/api/mail/send", None, Some(mail.clone())).await.assert_problem(401);
    // A key without the capability is refused; with it, the email is queued (202 + job).
    let plain =
        s.call("POST", "/api/keys", Some(&su), Some(json!({"name": "p", "scopes": {"*": ["list"]}}))).await;
    let plain = format!("Bearer {}", plain.body["key"].as_str().expect("key"));
    s.call("POST", "/api/mail/send", Some(&plain), Some(mail.clone())).await.assert_problem(403);
    s.call("POST", "/api/keys", Some(&su), Some(json!({"name": "x", "capabilities": ["mail.nope"]})))
        .await
        .assert_problem(400)
        .assert_field_error("capabilities", "validation_invalid_capability");
    let mailer = s
        .call("POST", "/api/keys", Some(&su), Some(json!({"name": "m", "capabilities": ["mail.send"]})))
        .await;
    assert_eq!(mailer.status, 201, "{}", mailer.text);
    let mailer = format!("Bearer {}", mailer.body["key"].as_str().expect("key"));
    let sent = s.call("POST", "/api/mail/send", Some(&mailer), Some(mail)).await;
    assert_eq!(sent.status, 202, "{}", sent.text);
    assert_eq!(sent.body["kind"], "mail.send");
    // The capability reaches nothing else.
    s.call("GET", "/api/mail/log", Some(&mailer), None).await.assert_problem(403);
    s.call("GET", "/api/collections/users/records", Some(&mailer), None).await.assert_problem(403);
}

use serde_json::json;

use crate::common::{Server, SU_EMAIL, SU_PASSWORD};

#[tokio::test]
async fn first_start_requires_setup_and_the_token_works_once() {
    let s = Server::start();
    let status = s.call("GET", "/api/setup", None, None).await;
    assert_eq!(status.body["setupRequired"], true);
    let token = s.setup_token.clone().expect("setup token printed");
    let link = format!("{}/_/#/setup/{token}", s.base);
    assert!(
        s.stderr.lock().expect("log").iter().any(|l| l.contains(&link)),
        "the start-up message carries a ready admin UI link: {:?}",
        s.stderr.lock().expect("log")
    );
    s.call(
        "POST",
        "/api/setup",
        None,
        Some(json!({"token": "wrong", "email": SU_EMAIL, "password": SU_PASSWORD})),
    )
    .await
    .assert_problem(403);
    s.call("POST", "/api/setup", None, Some(json!({"token": token, "email": SU_EMAIL})))
        .await
        .assert_problem(400)
        .assert_field_error("password", "validation_required");
    s.call("POST", "/api/setup", None, Some(json!({"token": token, "email": SU_EMAIL, "password": "short"})))
        .await
        .assert_problem(400)
        .assert_field_error("password", "validation_min_text_constraint");
    let ok = s
        .call(
            "POST",
            "/api/setup",
            None,
            Some(json!({"token": token, "email": SU_EMAIL, "password": SU_PASSWORD})),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert!(ok.body["token"].is_string());
    assert_eq!(ok.body["record"]["email"], SU_EMAIL);
    s.call(
        "POST",
        "/api/setup",
        None,
        Some(json!({"token": token, "email": "x@example.com", "password": SU_PASSWORD})),
    )
    .await
    .assert_problem(403);
    assert_eq!(s.call("GET", "/api/setup", None, None).await.body["setupRequired"], false);
}

#[tokio::test]
async fn there_is_no_default_account() {
    let s = Server::start();
    for (identity, password) in
        [("admin@example.com", "admin"), ("admin", "password"), (SU_EMAIL, SU_PASSWORD)]
    {
        s.call(
            "POST",
            "/api/collections/_superusers/auth-with-password",
            None,
            Some(json!({"identity": identity, "password": password})),
        )
        .await
        .assert_problem(400);
    }
}

#[tokio::test]
async fn password_login_returns_token_and_record_and_wrong_password_fails() {
    let s = Server::start();
    s.setup_superuser().await;
    let token = s.login().await;
    assert_eq!(token.split('.').count(), 3, "a JWT the SDKs can read");
    let wrong = s
        .call(
            "POST",
            "/api/collections/_superusers/auth-with-password",
            None,
            Some(json!({"identity": SU_EMAIL, "password": "nope-nope"})),
        )
        .await;
    wrong.assert_problem(400);
    assert_eq!(wrong.body["message"], "Failed to authenticate.");
    let unknown = s
        .call(
            "POST",
            "/api/collections/_superusers/auth-with-password",
            None,
            Some(json!({"identity": "who@example.com", "password": "nope-nope"})),
        )
        .await;
    assert_eq!(unknown.body, wrong.body, "unknown identity and wrong password look the same");
    s.call(
        "POST",
        "/api/collections/_superusers/auth-with-password",
        None,
        Some(json!({"identity": SU_EMAIL})),
    )
    .await
    .assert_problem(400)
    .assert_field_error("password", "validation_required");
    s.call(
        "POST",
        "/api/collections/_superusers/auth-with-password",
        None,
        Some(json!({"identity": 5, "password": "x"})),
    )
    .await
    .assert_problem(400)
    .assert_field_error("identity", "validation_invalid_type");
    // Identity matching ignores case.
    let r = s
        .call(
            "POST",
            "/api/collections/_superusers/auth-with-password",
            None,
            Some(json!({"identity": SU_EMAIL.to_uppercase(), "password": SU_PASSWORD})),
        )
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn bearer_prefix_refresh_and_revocation_on_password_change() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    let bearer = format!("Bearer {t}");
    assert_eq!(s.call("GET", "/api/collections", Some(&bearer), None).await.status, 200);
    let refreshed = s.call("POST", "/api/collections/_superusers/auth-refresh", Some(&t), None).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);
    assert_eq!(refreshed.body["record"]["email"], SU_EMAIL);
    s.call("POST", "/api/collections/_superusers/auth-refresh", None, None).await.assert_problem(401);
    s.call("POST", "/api/collections/_superusers/auth-refresh", Some("x.y.z"), None)
        .await
        .assert_problem(401);

    // Changing the password rotates the token key: old tokens stop working.
    let me = s.call("GET", "/api/collections/_superusers/records", Some(&t), None).await.body["items"][0]
        ["id"]
        .as_str()
        .expect("id")
        .to_string();
    let r = s
        .call(
            "PATCH",
            &format!("/api/collections/_superusers/records/{me}"),
            Some(&t),
            Some(json!({"password": "brand-new-password", "passwordConfirm": "brand-new-password"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // The old token's signature no longer matches: 401, saying so.
    let old = s.call("GET", "/api/collections", Some(&t), None).await;
    old.assert_problem(401);
    assert!(old.body["message"].as_str().unwrap_or_default().contains("signature"), "{}", old.text);
    let fresh = s
        .call(
            "POST",
            "/api/collections/_superusers/auth-with-password",
            None,
            Some(json!({"identity": SU_EMAIL, "password": "brand-new-password"})),
        )
        .await;
    assert_eq!(fresh.status, 200);
}

#[tokio::test]
async fn tampered_tokens_are_refused_with_401() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    let mut parts: Vec<String> = t.split('.').map(String::from).collect();
    parts[2] = parts[2].chars().rev().collect();
    let forged = parts.join(".");
    s.call("GET", "/api/collections", Some(&forged), None).await.assert_problem(401);
    // A public endpoint still serves the caller as anonymous (PocketBase does the same).
    assert_eq!(s.call("GET", "/api/health", Some(&forged), None).await.status, 200);
}

#[tokio::test]
async fn login_to_a_base_collection_or_unknown_collection_fails() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    s.call("POST", "/api/collections", Some(&t), Some(json!({"name": "plain"}))).await;
    s.call(
        "POST",
        "/api/collections/plain/auth-with-password",
        None,
        Some(json!({"identity": "a", "password": "b"})),
    )
    .await
    .assert_problem(400);
    s.call(
        "POST",
        "/api/collections/nope/auth-with-password",
        None,
        Some(json!({"identity": "a", "password": "b"})),
    )
    .await
    .assert_problem(404);
}

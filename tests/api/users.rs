//! Auth collections: signup, sign-in, refresh, sign-out, revocation on password change,
//! protected fields (verified, email, password), the manage and auth rules, impersonation,
//! and that a failed sign-in takes as long for an unknown account as for a known one.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::Server;

pub const PASSWORD: &str = "user-password-1";

/// Creates a `users` auth collection with the given extra settings; returns its JSON.
pub async fn users_collection(s: &Server, su: &str, extra: Value) -> Value {
    let mut body = json!({
        "name": "users",
        "type": "auth",
        "listRule": "id = @request.auth.id",
        "viewRule": "id = @request.auth.id",
        "createRule": "",
        "updateRule": "id = @request.auth.id",
        "deleteRule": "id = @request.auth.id",
        "fields": [{"name": "name", "type": "text", "max": 100}]
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    let r = s.call("POST", "/api/collections", Some(su), Some(body)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

/// Signs a new user up (anonymous create) and returns its record.
pub async fn signup(s: &Server, email: &str) -> Value {
    let r = s
        .call(
            "POST",
            "/api/collections/users/records",
            None,
            Some(json!({"email": email, "password": PASSWORD, "passwordConfirm": PASSWORD, "name": email})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

/// Signs in and returns the token.
pub async fn sign_in(s: &Server, email: &str, password: &str) -> String {
    let r = s
        .call(
            "POST",
            "/api/collections/users/auth-with-password",
            None,
            Some(json!({"identity": email, "password": password})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["token"].as_str().expect("token").to_string()
}

#[tokio::test]
async fn an_auth_collection_gets_the_system_fields_and_settings() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    let c = users_collection(&s, &su, json!({})).await;
    assert_eq!(c["type"], "auth");
    let names: Vec<&str> =
        c["fields"].as_array().expect("fields").iter().filter_map(|f| f["name"].as_str()).collect();
    for system in
        ["id", "email", "emailVisibility", "verified", "password", "tokenKey", "created", "updated", "name"]
    {
        assert!(names.contains(&system), "missing {system} in {names:?}");
    }
    assert_eq!(c["authRule"], "");
    assert_eq!(c["manageRule"], Value::Null);
    assert_eq!(c["passwordAuth"]["enabled"], true);
    assert!(c["authToken"]["duration"].as_u64().is_some());
    let methods = s.call("GET", "/api/collections/users/auth-methods", None, None).await;
    assert_eq!(methods.status, 200, "{}", methods.text);
    assert_eq!(methods.body["password"]["enabled"], true);
    assert_eq!(methods.body["password"]["identityFields"], json!(["email"]));
    // A base collection has no sign-in methods.
    s.call("POST", "/api/collections", Some(&su), Some(json!({"name": "plain"}))).await;
    s.call("GET", "/api/collections/plain/auth-methods", None, None).await.assert_problem(400);
    // Bad settings are field errors, not 500s.
    s.call(
        "POST",
        "/api/collections",
        Some(&su),
        Some(json!({"name": "bad", "type": "auth", "authToken": {"duration": 0}})),
    )
    .await
    .assert_problem(400)
    .assert_field_error("authToken", "validation_out_of_range");
    s.call(
        "POST",
        "/api/collections",
        Some(&su),
        Some(json!({"name": "bad", "type": "auth", "manageRule": "nope = 1"})),
    )
    .await
    .assert_problem(400)
    .assert_field_error("manageRule", "validation_invalid_rule");
}

#[tokio::test]
async fn signup_sign_in_refresh_and_the_record_never_shows_secrets() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    users_collection(&s, &su, json!({})).await;
    let user = signup(&s, "ann@example.com").await;
    assert!(user.get("password").is_none() && user.get("tokenKey").is_none(), "{user}");
    assert_eq!(user["verified"], false);
    // Duplicate email (any case) refused.
    let dup = s
        .call(
            "POST",
            "/api/collections/users/records",
            None,
            Some(json!({"email": "ANN@example.com", "password": PASSWORD, "passwordConfirm": PASSWORD})),
        )
        .await;
    dup.assert_problem(400);
    let token = sign_in(&s, "ann@example.com", PASSWORD).await;
    let me = s
        .call(
            "GET",
            &format!("/api/collections/users/records/{}", user["id"].as_str().expect("id")),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert!(me.body.get("tokenKey").is_none() && me.body.get("password").is_none());
    let refreshed = s.call("POST", "/api/collections/users/auth-refresh", Some(&token), None).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);
    assert_eq!(refreshed.body["record"]["id"], user["id"]);
    // Wrong password and unknown account answer the same.
    let wrong = s
        .call(
            "POST",
            "/api/collections/users/auth-with-password",
            None,
            Some(json!({"identity": "ann@example.com", "password": "nope-nope-nope"})),
        )
        .await;
    let unknown = s
        .call(
            "POST",
            "/api/collections/users/auth-with-password",
            None,
            Some(json!({"identity": "zed@example.com", "password": "nope-nope-nope"})),
        )
        .await;
    wrong.assert_problem(400);
    unknown.assert_problem(400);
    assert_eq!(wrong.body["message"], unknown.body["message"]);
    // A token of the users collection does not refresh as a superuser.
    s.call("POST", "/api/collections/_superusers/auth-refresh", Some(&token), None).await.assert_problem(401);
}

#[tokio::test]
async fn tokens_die_on_password_change_and_sign_out() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    users_collection(&s, &su, json!({})).await;
    let user = signup(&s, "bob@example.com").await;
    let id = user["id"].as_str().expect("id").to_string();
    let path = format!("/api/collections/users/records/{id}");
    let first = sign_in(&s, "bob@example.com", PASSWORD).await;
    let second = sign_in(&s, "bob@example.com", PASSWORD).await;
    assert_eq!(s.call("GET", &path, Some(&first), None).await.status, 200);

    // Sign-out revokes only the presented token.
    let out = s.call("POST", "/api/collections/users/auth-logout", Some(&first), None).await;
    assert_eq!(out.status, 204, "{}", out.text);
    assert_eq!(s.call("GET", &path, Some(&first), None).await.status, 404, "revoked token is anonymous");
    s.call("POST", "/api/collections/users/auth-refresh", Some(&first), None).await.assert_problem(401);
    assert_eq!(s.call("GET", &path, Some(&second), None).await.status, 200, "other session unaffected");

    // A password change needs the old password from the owner...
    let new_password = "another-password-2";
    s.call(
        "PATCH",
        &path,
        Some(&second),
        Some(json!({"password": new_password, "passwordConfirm": new_password})),
    )
    .await
    .assert_problem(400)
    .assert_field_error("oldPassword", "validation_invalid_old_password");
    s.call(
        "PATCH",
        &path,
        Some(&second),
        Some(json!({"password": new_password, "passwordConfirm": new_password, "oldPassword": "wrong-one-123"})),
    )
    .await
    .assert_problem(400)
    .assert_field_error("oldPassword", "validation_invalid_old_password");
    let changed = s
        .call(
            "PATCH",
            &path,
            Some(&second),
            Some(json!({"password": new_password, "passwordConfirm": new_password, "oldPassword": PASSWORD})),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.text);
    // ...and then every earlier token is dead.
    assert_eq!(s.call("GET", &path, Some(&second), None).await.status, 404);
    s.call(
        "POST",
        "/api/collections/users/auth-with-password",
        None,
        Some(json!({"identity": "bob@example.com", "password": PASSWORD})),
    )
    .await
    .assert_problem(400);
    let third = sign_in(&s, "bob@example.com", new_password).await;
    let fourth = sign_in(&s, "bob@example.com", new_password).await;
    // Sign-out everywhere kills every session.
    let out =
        s.call("POST", "/api/collections/users/auth-logout", Some(&third), Some(json!({"all": true}))).await;
    assert_eq!(out.status, 204, "{}", out.text);
    assert_eq!(s.call("GET", &path, Some(&fourth), None).await.status, 404);
    s.call("POST", "/api/collections/users/auth-logout", None, None).await.assert_problem(401);

    // Every step is in the audit log.
    let audit = s.call("GET", "/api/audit?action=auth.logout", Some(&su), None).await;
    assert_eq!(audit.status, 200, "{}", audit.text);
    assert_eq!(audit.body["totalItems"], 2, "{}", audit.text);
    let logins = s.call("GET", "/api/audit?action=auth.login&outcome=failure", Some(&su), None).await;
    assert!(logins.body["totalItems"].as_u64().unwrap_or(0) >= 1, "{}", logins.text);
    assert_eq!(logins.body["items"][0]["target"], "bob@example.com");
    assert!(
        logins.body["items"][0]["ip"].as_str().unwrap_or_default().starts_with("127."),
        "{}",
        logins.text
    );
}

#[tokio::test]
async fn verified_and_email_are_protected_unless_the_manage_rule_admits_the_caller() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    users_collection(&s, &su, json!({"manageRule": "@request.auth.name = 'manager'"})).await;
    // Nobody verifies themselves at signup.
    s.call(
        "POST",
        "/api/collections/users/records",
        None,
        Some(json!({"email": "eve@example.com", "password": PASSWORD, "passwordConfirm": PASSWORD, "verified": true})),
    )
    .await
    .assert_problem(400)
    .assert_field_error("verified", "validation_values_mismatch");
    let eve = signup(&s, "eve@example.com").await;
    let eve_path = format!("/api/collections/users/records/{}", eve["id"].as_str().expect("id"));
    let eve_token = sign_in(&s, "eve@example.com", PASSWORD).await;
    s.call("PATCH", &eve_path, Some(&eve_token), Some(json!({"verified": true})))
        .await
        .assert_problem(400)
        .assert_field_error("verified", "validation_values_mismatch");
    s.call("PATCH", &eve_path, Some(&eve_token), Some(json!({"email": "eve2@example.com"})))
        .await
        .assert_problem(400)
        .assert_field_error("email", "validation_values_mismatch");
    // The same fields through a batch are refused too.
    let batch = s
        .call(
            "POST",
            "/api/batch",
            Some(&eve_token),
            Some(json!({"requests": [{"method": "PATCH", "url": eve_path, "body": {"verified": true}}]})),
        )
        .await;
    assert_eq!(batch.status, 400, "{}", batch.text);
    // Harmless fields are fine.
    let ok = s
        .call("PATCH", &eve_path, Some(&eve_token), Some(json!({"name": "Eve", "emailVisibility": true})))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);

    // A manager (by the manage rule) may verify others and change their password without the old one.
    let manager = signup(&s, "max@example.com").await;
    let manager_path = format!("/api/collections/users/records/{}", manager["id"].as_str().expect("id"));
    s.call("PATCH", &manager_path, Some(&su), Some(json!({"name": "manager"}))).await;
    // The update rule only lets owners update; give the manager access through the rule.
    s.call(
        "PATCH",
        "/api/collections/users",
        Some(&su),
        Some(json!({"updateRule": "id = @request.auth.id || @request.auth.name = 'manager'"})),
    )
    .await;
    let max_token = sign_in(&s, "max@example.com", PASSWORD).await;
    let verified = s.call("PATCH", &eve_path, Some(&max_token), Some(json!({"verified": true}))).await;
    assert_eq!(verified.status, 200, "{}", verified.text);
    assert_eq!(verified.body["verified"], true);
    let reset = s
        .call(
            "PATCH",
            &eve_path,
            Some(&max_token),
            Some(json!({"password": "set-by-manager-1", "passwordConfirm": "set-by-manager-1"})),
        )
        .await;
    assert_eq!(reset.status, 200, "{}", reset.text);
    sign_in(&s, "eve@example.com", "set-by-manager-1").await;
}

#[tokio::test]
async fn the_auth_rule_decides_who_may_sign_in() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    users_collection(&s, &su, json!({"authRule": "verified = true"})).await;
    let user = signup(&s, "vic@example.com").await;
    // The password is right, so the refusal says why (PocketBase's 403).
    let r = s
        .call(
            "POST",
            "/api/collections/users/auth-with-password",
            None,
            Some(json!({"identity": "vic@example.com", "password": PASSWORD})),
        )
        .await;
    r.assert_problem(403);
    assert!(r.body["message"].as_str().unwrap_or_default().contains("authRule"), "{}", r.text);
    // A wrong password still learns nothing.
    s.call(
        "POST",
        "/api/collections/users/auth-with-password",
        None,
        Some(json!({"identity": "vic@example.com", "password": "wrong-password-1"})),
    )
    .await
    .assert_problem(400);
    let path = format!("/api/collections/users/records/{}", user["id"].as_str().expect("id"));
    s.call("PATCH", &path, Some(&su), Some(json!({"verified": true}))).await;
    sign_in(&s, "vic@example.com", PASSWORD).await;
    // null: nobody signs in with a password.
    s.call("PATCH", "/api/collections/users", Some(&su), Some(json!({"authRule": null}))).await;
    s.call(
        "POST",
        "/api/collections/users/auth-with-password",
        None,
        Some(json!({"identity": "vic@example.com", "password": PASSWORD})),
    )
    .await
    .assert_problem(403);
}

#[tokio::test]
async fn superusers_impersonate_with_a_token_that_cannot_be_refreshed() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    users_collection(&s, &su, json!({})).await;
    let user = signup(&s, "imp@example.com").await;
    let id = user["id"].as_str().expect("id");
    let user_token = sign_in(&s, "imp@example.com", PASSWORD).await;
    s.call("POST", &format!("/api/collections/users/impersonate/{id}"), Some(&user_token), None)
        .await
        .assert_problem(403);
    s.call("POST", &format!("/api/collections/users/impersonate/{id}"), None, None).await.assert_problem(401);
    s.call("POST", "/api/collections/users/impersonate/nosuchrecord123", Some(&su), None)
        .await
        .assert_problem(404);
    let imp = s
        .call(
            "POST",
            &format!("/api/collections/users/impersonate/{id}"),
            Some(&su),
            Some(json!({"duration": 60})),
        )
        .await;
    assert_eq!(imp.status, 200, "{}", imp.text);
    let token = imp.body["token"].as_str().expect("token");
    let me = s.call("GET", &format!("/api/collections/users/records/{id}"), Some(token), None).await;
    assert_eq!(me.status, 200, "{}", me.text);
    s.call("POST", "/api/collections/users/auth-refresh", Some(token), None).await.assert_problem(403);
    let audit = s.call("GET", "/api/audit?action=auth.impersonate", Some(&su), None).await;
    assert_eq!(audit.body["totalItems"], 1, "{}", audit.text);
    assert_eq!(audit.body["items"][0]["actor"]["type"], "superuser");
}

#[tokio::test]
async fn a_failed_sign_in_takes_as_long_for_unknown_accounts() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    users_collection(&s, &su, json!({})).await;
    signup(&s, "known@example.com").await;
    async fn attempt(s: &Server, identity: &str) -> Duration {
        let start = Instant::now();
        let r = s
            .call(
                "POST",
                "/api/collections/users/auth-with-password",
                None,
                Some(json!({"identity": identity, "password": "wrong-password-9"})),
            )
            .await;
        assert_eq!(r.status, 400, "{}", r.text);
        start.elapsed()
    }
    // Interleaved, so machine noise hits both sides alike; the per-identity limit (10/min)
    // is not reached with distinct unknown identities and 6 known attempts.
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..6 {
        known.push(attempt(&s, "known@example.com").await);
        unknown.push(attempt(&s, &format!("nobody{i}@example.com")).await);
    }
    known.sort();
    unknown.sort();
    let (k, u) = (known[known.len() / 2], unknown[unknown.len() / 2]);
    // Both pay for one Argon2id verification (tens of ms); skipping it for unknown accounts
    // would make them several times faster.
    assert!(u * 2 > k && k * 2 > u, "median known {k:?} vs unknown {u:?}");
    assert!(u > Duration::from_millis(5), "unknown accounts must still hash: {u:?}");
}

#[tokio::test]
async fn a_user_sees_their_own_email_whatever_its_visibility_and_others_do_not() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    users_collection(&s, &su, json!({"listRule": "", "viewRule": ""})).await;
    let ann = signup(&s, "ann@example.com").await;
    signup(&s, "ben@example.com").await;
    assert_eq!(ann["emailVisibility"], false);
    let path = format!("/api/collections/users/records/{}", ann["id"].as_str().expect("id"));

    // The auth response carries the signed-in record's own email (the JS SDK shows it from
    // authStore.record.email), and so does a refresh.
    let login = s
        .call(
            "POST",
            "/api/collections/users/auth-with-password",
            None,
            Some(json!({"identity": "ann@example.com", "password": PASSWORD})),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.text);
    assert_eq!(login.body["record"]["email"], "ann@example.com", "{}", login.text);
    let token = login.body["token"].as_str().expect("token").to_string();
    let refreshed = s.call("POST", "/api/collections/users/auth-refresh", Some(&token), None).await;
    assert_eq!(refreshed.body["record"]["email"], "ann@example.com", "{}", refreshed.text);

    // The owner reading or updating their own record sees it too.
    let me = s.call("GET", &path, Some(&token), None).await;
    assert_eq!(me.body["email"], "ann@example.com", "{}", me.text);
    let renamed = s.call("PATCH", &path, Some(&token), Some(json!({"name": "Ann"}))).await;
    assert_eq!(renamed.status, 200, "{}", renamed.text);
    assert_eq!(renamed.body["email"], "ann@example.com", "{}", renamed.text);

    // Anyone else does not: another user, an anonymous caller, and in lists.
    let ben = sign_in(&s, "ben@example.com", PASSWORD).await;
    let seen_by_ben = s.call("GET", &path, Some(&ben), None).await;
    assert_eq!(seen_by_ben.status, 200, "{}", seen_by_ben.text);
    assert!(seen_by_ben.body.get("email").is_none(), "{}", seen_by_ben.text);
    let anonymous = s.call("GET", &path, None, None).await;
    assert!(anonymous.body.get("email").is_none(), "{}", anonymous.text);
    let listed = s.call("GET", "/api/collections/users/records?sort=name", Some(&ben), None).await;
    let emails: Vec<&Value> =
        listed.body["items"].as_array().expect("items").iter().map(|u| &u["email"]).collect();
    assert_eq!(emails, [&Value::Null, &json!("ben@example.com")], "{}", listed.text);
}

#[tokio::test]
async fn password_sign_in_by_the_collection_identity_fields_in_order() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    let members = json!({
        "name": "members",
        "type": "auth",
        "fields": [{"name": "username", "type": "text"}],
        "passwordAuth": {"enabled": true, "identityFields": ["username", "email"]},
    });
    // An identity field needs a unique index on it alone, and must exist.
    let r = s.call("POST", "/api/collections", Some(&t), Some(members.clone())).await;
    r.assert_problem(400);
    assert_eq!(r.body["data"]["passwordAuth"]["code"], "validation_identity_index", "{}", r.text);
    let mut missing = members.clone();
    missing["passwordAuth"]["identityFields"] = json!(["nickname"]);
    let r = s.call("POST", "/api/collections", Some(&t), Some(missing)).await;
    r.assert_problem(400);
    assert_eq!(r.body["data"]["passwordAuth"]["code"], "validation_invalid_identity", "{}", r.text);
    let mut good = members.clone();
    good["indexes"] = json!(["CREATE UNIQUE INDEX idx_members_username ON members (username)"]);
    let r = s.call("POST", "/api/collections", Some(&t), Some(good)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["passwordAuth"]["identityFields"], json!(["username", "email"]));
    let r = s
        .call(
            "POST",
            "/api/collections/members/records",
            Some(&t),
            Some(json!({"email": "ann@example.com", "username": "ann", "password": "password-123", "passwordConfirm": "password-123"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    for identity in ["ann", "ann@example.com", "ANN@example.com"] {
        let r = s
            .call(
                "POST",
                "/api/collections/members/auth-with-password",
                None,
                Some(json!({"identity": identity, "password": "password-123"})),
            )
            .await;
        assert_eq!(r.status, 200, "{identity}: {}", r.text);
        assert_eq!(r.body["record"]["username"], "ann");
    }
    for (identity, password) in [("ann", "wrong-password"), ("bob", "password-123"), ("Ann", "password-123")]
    {
        let r = s
            .call(
                "POST",
                "/api/collections/members/auth-with-password",
                None,
                Some(json!({"identity": identity, "password": password})),
            )
            .await;
        r.assert_problem(400);
    }
    let methods = s.call("GET", "/api/collections/members/auth-methods", None, None).await;
    assert_eq!(methods.body["password"]["identityFields"], json!(["username", "email"]));
}

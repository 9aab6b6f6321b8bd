//! Account flows through real email (aiosmtpd sink): verification, password reset, email
//! change and one-time codes. Each token or code works once, tokens of the old state die,
//! and requests for unknown accounts answer the same without sending anything.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::users::{sign_in, signup, users_collection, PASSWORD};
use crate::common::smtp::{free_port, SmtpSink};
use crate::common::{Server, StartOptions};

fn server(port: u16) -> Server {
    let env = [
        ("BACKBONE_MAIL_ENABLED", "true".to_string()),
        ("BACKBONE_MAIL_HOST", "127.0.0.1".to_string()),
        ("BACKBONE_MAIL_PORT", port.to_string()),
        ("BACKBONE_MAIL_SECURITY", "none".to_string()),
        ("BACKBONE_MAIL_APP_URL", "https://acme.test".to_string()),
        ("BACKBONE_JOBS_BACKOFF_BASE_MS", "100".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Server::start_with(StartOptions { env, args: vec![] })
}

/// Waits for the `n`-th message (1-based) and returns it.
async fn nth_message(sink: &SmtpSink, n: usize) -> Value {
    let started = Instant::now();
    loop {
        let messages = sink.messages();
        if messages.len() >= n {
            return messages[n - 1].clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "only {} of {n} messages arrived",
            messages.len()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The token at the end of the `marker/` link in a message's text part.
fn token_after(message: &Value, marker: &str) -> String {
    let text = message["text"].as_str().expect("text part");
    let start = text.find(marker).unwrap_or_else(|| panic!("no {marker} link in {text}")) + marker.len();
    text[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).collect()
}

fn user_path(user: &Value) -> String {
    format!("/api/collections/users/records/{}", user["id"].as_str().expect("id"))
}

#[tokio::test]
async fn verification_link_works_once_and_unknown_accounts_get_no_mail() {
    let out = tempfile::tempdir().expect("dir");
    let sink = SmtpSink::start(free_port(), out.path(), &[]);
    let s = server(sink.port);
    let su = s.setup_superuser().await;
    users_collection(&s, &su, json!({})).await;
    let user = signup(&s, "ver@example.com").await;
    let unknown = s
        .call(
            "POST",
            "/api/collections/users/request-verification",
            None,
            Some(json!({"email": "ghost@example.com"})),
        )
        .await;
    assert_eq!(unknown.status, 204, "{}", unknown.text);
    let r = s
        .call(
            "POST",
            "/api/collections/users/request-verification",
            None,
            Some(json!({"email": "VER@example.com"})),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let m = nth_message(&sink, 1).await;
    assert_eq!(m["rcptTos"], json!(["ver@example.com"]));
    let token = token_after(&m, "confirm-verification/");
    // A tampered token is refused and changes nothing.
    let mut forged = token.clone();
    forged.pop();
    forged.push('x');
    s.call("POST", "/api/collections/users/confirm-verification", None, Some(json!({"token": forged})))
        .await
        .assert_problem(400)
        .assert_field_error("token", "validation_invalid_token");
    let ok = s
        .call("POST", "/api/collections/users/confirm-verification", None, Some(json!({"token": token})))
        .await;
    assert_eq!(ok.status, 204, "{}", ok.text);
    let check = s.call("GET", &user_path(&user), Some(&su), None).await;
    assert_eq!(check.body["verified"], true);
    s.call("POST", "/api/collections/users/confirm-verification", None, Some(json!({"token": token})))
        .await
        .assert_problem(400);
    // Only the one message was sent (none for the unknown address).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.messages().len(), 1);
    // A session token is not a verification token.
    let session = sign_in(&s, "ver@example.com", PASSWORD).await;
    s.call("POST", "/api/collections/users/confirm-verification", None, Some(json!({"token": session})))
        .await
        .assert_problem(400);
}

#[tokio::test]
async fn a_password_reset_works_once_and_ends_every_session() {
    let out = tempfile::tempdir().expect("dir");
    let sink = SmtpSink::start(free_port(), out.path(), &[]);
    let s = server(sink.port);
    let su = s.setup_superuser().await;
    users_collection(&s, &su, json!({})).await;
    let user = signup(&s, "reset@example.com").await;
    let session = sign_in(&s, "reset@example.com", PASSWORD).await;
    let r = s
        .call(
            "POST",
            "/api/collections/users/request-password-reset",
            None,
            Some(json!({"email": "reset@example.com"})),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let token = token_after(&nth_message(&sink, 1).await, "confirm-password-reset/");
    s.call(
        "POST",
        "/api/collections/users/confirm-password-reset",
        None,
        Some(json!({"token": token, "password": "new-password-77", "passwordConfirm": "different-pass-1"})),
    )
    .await
    .assert_problem(400)
    .assert_field_error("passwordConfirm", "validation_values_mismatch");
    let ok = s
        .call(
            "POST",
            "/api/collections/users/confirm-password-reset",
            None,
            Some(
                json!({"token": token, "password": "new-password-77", "passwordConfirm": "new-password-77"}),
            ),
        )
        .await;
    assert_eq!(ok.status, 204, "{}", ok.text);
    assert_eq!(s.call("GET", &user_path(&user), Some(&session), None).await.status, 404, "old session dead");
    sign_in(&s, "reset@example.com", "new-password-77").await;
    let again = s
        .call(
            "POST",
            "/api/collections/users/confirm-password-reset",
            None,
            Some(json!({"token": token, "password": "third-password-9", "passwordConfirm": "third-password-9"})),
        )
        .await;
    again.assert_problem(400);
    sign_in(&s, "reset@example.com", "new-password-77").await;
    let audit = s.call("GET", "/api/audit?action=auth.passwordReset", Some(&su), None).await;
    assert_eq!(audit.body["totalItems"], 1, "{}", audit.text);
}

#[tokio::test]
async fn an_email_change_is_confirmed_from_the_new_address_with_the_password() {
    let out = tempfile::tempdir().expect("dir");
    let sink = SmtpSink::start(free_port(), out.path(), &[]);
    let s = server(sink.port);
    let su = s.setup_superuser().await;
    users_collection(&s, &su, json!({})).await;
    let user = signup(&s, "old@example.com").await;
    signup(&s, "taken@example.com").await;
    let session = sign_in(&s, "old@example.com", PASSWORD).await;
    s.call(
        "POST",
        "/api/collections/users/request-email-change",
        None,
        Some(json!({"newEmail": "new@example.com"})),
    )
    .await
    .assert_problem(401);
    s.call(
        "POST",
        "/api/collections/users/request-email-change",
        Some(&session),
        Some(json!({"newEmail": "taken@example.com"})),
    )
    .await
    .assert_problem(400)
    .assert_field_error("newEmail", "validation_email_exists");
    s.call(
        "POST",
        "/api/collections/users/request-email-change",
        Some(&session),
        Some(json!({"newEmail": "not-an-email"})),
    )
    .await
    .assert_problem(400);
    let r = s
        .call(
            "POST",
            "/api/collections/users/request-email-change",
            Some(&session),
            Some(json!({"newEmail": "new@example.com"})),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let m = nth_message(&sink, 1).await;
    assert_eq!(m["rcptTos"], json!(["new@example.com"]), "the link goes to the new address");
    assert!(m["text"].as_str().unwrap_or_default().contains("new@example.com"));
    let token = token_after(&m, "confirm-email-change/");
    s.call(
        "POST",
        "/api/collections/users/confirm-email-change",
        None,
        Some(json!({"token": token, "password": "wrong-password-1"})),
    )
    .await
    .assert_problem(400)
    .assert_field_error("password", "validation_invalid_password");
    let ok = s
        .call(
            "POST",
            "/api/collections/users/confirm-email-change",
            None,
            Some(json!({"token": token, "password": PASSWORD})),
        )
        .await;
    assert_eq!(ok.status, 204, "{}", ok.text);
    let check = s.call("GET", &user_path(&user), Some(&su), None).await;
    assert_eq!(check.body["email"], "new@example.com");
    assert_eq!(check.body["verified"], true);
    assert_eq!(s.call("GET", &user_path(&user), Some(&session), None).await.status, 404, "old session dead");
    s.call(
        "POST",
        "/api/collections/users/auth-with-password",
        None,
        Some(json!({"identity": "old@example.com", "password": PASSWORD})),
    )
    .await
    .assert_problem(400);
    sign_in(&s, "new@example.com", PASSWORD).await;
    s.call(
        "POST",
        "/api/collections/users/confirm-email-change",
        None,
        Some(json!({"token": token, "password": PASSWORD})),
    )
    .await
    .assert_problem(400);
}

#[tokio::test]
async fn a_one_time_code_signs_in_once_and_wrong_codes_run_out() {
    let out = tempfile::tempdir().expect("dir");
    let sink = SmtpSink::start(free_port(), out.path(), &[]);
    let s = server(sink.port);
    let su = s.setup_superuser().await;
    users_collection(&s, &su, json!({})).await;
    let user = signup(&s, "otp@example.com").await;
    s.call("POST", "/api/collections/users/request-otp", None, Some(json!({"email": "otp@example.com"})))
        .await
        .assert_problem(403);
    s.call(
        "PATCH",
        "/api/collections/users",
        Some(&su),
        Some(json!({"otp": {"enabled": true, "duration": 120, "length": 6}})),
    )
    .await;
    let methods = s.call("GET", "/api/collections/users/auth-methods", None, None).await;
    assert_eq!(methods.body["otp"]["enabled"], true);
    let ghost = s
        .call("POST", "/api/collections/users/request-otp", None, Some(json!({"email": "ghost@example.com"})))
        .await;
    assert_eq!(ghost.status, 200, "{}", ghost.text);
    let ghost_id = ghost.body["otpId"].as_str().expect("otpId for unknown accounts too").to_string();
    let r = s
        .call("POST", "/api/collections/users/request-otp", None, Some(json!({"email": "otp@example.com"})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let otp_id = r.body["otpId"].as_str().expect("otpId").to_string();
    let m = nth_message(&sink, 1).await;
    let text = m["text"].as_str().expect("text");
    let code: String = text
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap_or_else(|| panic!("no 6-digit code in {text}"))
        .to_string();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let attempt = |id: String, code: String| {
        let s = &s;
        async move {
            s.call(
                "POST",
                "/api/collections/users/auth-with-otp",
                None,
                Some(json!({"otpId": id, "password": code})),
            )
            .await
        }
    };
    attempt(otp_id.clone(), wrong.to_string()).await.assert_problem(400);
    attempt(ghost_id, code.clone()).await.assert_problem(400);
    let ok = attempt(otp_id.clone(), code.clone()).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.body["record"]["id"], user["id"]);
    assert_eq!(ok.body["record"]["verified"], true, "a code proves the address");
    attempt(otp_id, code).await.assert_problem(400);

    // Five wrong tries burn a code even if the right one comes next.
    let r = s
        .call("POST", "/api/collections/users/request-otp", None, Some(json!({"email": "otp@example.com"})))
        .await;
    let otp_id = r.body["otpId"].as_str().expect("otpId").to_string();
    let m = nth_message(&sink, 2).await;
    let text = m["text"].as_str().expect("text");
    let code: String =
        text.split(|c: char| !c.is_ascii_digit()).find(|w| w.len() == 6).expect("code").to_string();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        attempt(otp_id.clone(), wrong.to_string()).await.assert_problem(400);
    }
    attempt(otp_id, code).await.assert_problem(400);
}

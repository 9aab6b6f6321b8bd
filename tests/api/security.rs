//! Rate limits (429 + Retry-After, recovery, per identity, trusted proxies), security
//! headers on every answer, `no-store` on authenticated answers, and the CORS allowlist.

use std::time::Duration;

use serde_json::json;

use crate::common::{Server, StartOptions};

fn env(pairs: &[(&str, &str)]) -> StartOptions {
    StartOptions {
        env: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..StartOptions::default()
    }
}

#[tokio::test]
async fn the_global_limit_answers_429_with_retry_after_and_recovers() {
    let s = Server::start_with(env(&[("BACKBONE_RATE_LIMITS_GLOBAL", "5/2s")]));
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..12 {
        let r = s.call("GET", "/api/health", None, None).await;
        if r.status == 429 {
            r.assert_problem(429);
            retry_after = r
                .headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 5, "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    let wait = retry_after.expect("Retry-After on 429");
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(200)).await;
    assert_eq!(s.call("GET", "/api/health", None, None).await.status, 200, "recovered after Retry-After");
}

#[tokio::test]
async fn sign_in_is_limited_per_identity_and_per_ip() {
    let s = Server::start_with(env(&[
        ("BACKBONE_RATE_LIMITS_AUTH_PER_IDENTITY", "3/60s"),
        ("BACKBONE_RATE_LIMITS_AUTH_PER_IP", "8/60s"),
    ]));
    let su = s.setup_superuser().await; // one auth-path request
    let attempt = |identity: &'static str| {
        let s = &s;
        async move {
            s.call(
                "POST",
                "/api/collections/_superusers/auth-with-password",
                None,
                Some(json!({"identity": identity, "password": "wrong-password-1"})),
            )
            .await
        }
    };
    for _ in 0..3 {
        attempt("target@example.com").await.assert_problem(400);
    }
    let limited = attempt("target@example.com").await;
    limited.assert_problem(429);
    assert!(limited.headers.contains_key("retry-after"));
    // Another identity from the same address is still answered...
    attempt("other@example.com").await.assert_problem(400);
    attempt("third@example.com").await.assert_problem(400);
    // ...until the per-IP budget of auth requests (8) is spent.
    let mut last = 0;
    for _ in 0..4 {
        last = attempt("fourth@example.com").await.status;
    }
    assert_eq!(last, 429);
    // Other endpoints are not auth endpoints.
    assert_eq!(s.call("GET", "/api/collections", Some(&su), None).await.status, 200);
}

#[tokio::test]
async fn forwarded_for_counts_only_behind_a_trusted_proxy() {
    // Untrusted peer: X-Forwarded-For is ignored, so rotating it does not escape the limit.
    let s = Server::start_with(env(&[("BACKBONE_RATE_LIMITS_GLOBAL", "3/60s")]));
    let mut codes = Vec::new();
    for i in 0..5 {
        let r = s
            .client
            .get(s.url("/api/health"))
            .header("X-Forwarded-For", format!("10.9.9.{i}"))
            .send()
            .await
            .expect("send");
        codes.push(r.status().as_u16());
    }
    assert_eq!(codes, vec![200, 200, 200, 429, 429]);
    // Trusted loopback proxy: each forwarded client has its own bucket.
    let s = Server::start_with(env(&[
        ("BACKBONE_RATE_LIMITS_GLOBAL", "3/60s"),
        ("BACKBONE_RATE_LIMITS_TRUSTED_PROXIES", "127.0.0.0/8"),
    ]));
    let mut codes = Vec::new();
    for i in 0..5 {
        let r = s
            .client
            .get(s.url("/api/health"))
            .header("X-Forwarded-For", format!("10.9.9.{i}"))
            .send()
            .await
            .expect("send");
        codes.push(r.status().as_u16());
    }
    assert_eq!(codes, vec![200; 5]);
}

#[tokio::test]
async fn every_answer_carries_security_headers_and_authenticated_ones_are_not_stored() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    let answers = [
        s.call("GET", "/api/health", None, None).await,
        s.call("GET", "/api/nope", None, None).await,
        s.call("GET", "/api/collections", None, None).await,
        s.call("GET", "/api/collections", Some(&su), None).await,
        s.raw("POST", "/api/collections", Some(&su), Some("application/json"), b"{bad".to_vec()).await,
    ];
    for r in &answers {
        let h =
            |name: &str| r.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        assert_eq!(h("x-content-type-options"), "nosniff", "{}", r.text);
        assert_eq!(h("x-frame-options"), "DENY");
        assert_eq!(h("referrer-policy"), "no-referrer");
        assert!(h("content-security-policy").contains("frame-ancestors 'none'"));
        assert_eq!(h("cache-control"), "no-store", "status {}", r.status);
        assert!(r.headers.get("access-control-allow-origin").is_none(), "no CORS by default");
    }
    // The docs page may load its own scripts, nothing else.
    let docs = s.client.get(s.url("/api/docs")).send().await.expect("docs");
    let csp = docs
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(csp.contains("default-src 'self'"), "{csp}");
}

#[tokio::test]
async fn cors_admits_only_listed_origins_and_never_credentials() {
    let s = Server::start_with(env(&[("BACKBONE_CORS_ALLOWED_ORIGINS", "https://app.example.com")]));
    let preflight = |origin: &'static str| {
        let s = &s;
        async move {
            s.client
                .request(reqwest::Method::OPTIONS, s.url("/api/collections/posts/records"))
                .header("Origin", origin)
                .header("Access-Control-Request-Method", "POST")
                .header("Access-Control-Request-Headers", "authorization, content-type")
                .send()
                .await
                .expect("preflight")
        }
    };
    let ok = preflight("https://app.example.com").await;
    assert_eq!(ok.status().as_u16(), 204);
    let h = ok.headers();
    assert_eq!(
        h.get("access-control-allow-origin").and_then(|v| v.to_str().ok()),
        Some("https://app.example.com")
    );
    assert!(h
        .get("access-control-allow-methods")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .contains("PATCH"));
    assert!(h
        .get("access-control-allow-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .contains("authorization"));
    assert!(h.get("access-control-allow-credentials").is_none());
    let evil = preflight("https://evil.example.com").await;
    assert_eq!(evil.status().as_u16(), 403);
    assert!(evil.headers().get("access-control-allow-origin").is_none());
    // Actual requests: the allowed origin is echoed exactly, others get nothing.
    let get = |origin: &'static str| {
        let s = &s;
        async move { s.client.get(s.url("/api/health")).header("Origin", origin).send().await.expect("get") }
    };
    let r = get("https://app.example.com").await;
    assert_eq!(
        r.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()),
        Some("https://app.example.com")
    );
    assert!(r.headers().get("vary").and_then(|v| v.to_str().ok()).unwrap_or_default().contains("Origin"));
    let r = get("https://evil.example.com").await;
    assert!(r.headers().get("access-control-allow-origin").is_none());
    // A bad origin in the config is refused at startup with the key named.
    let dir = tempfile::tempdir().expect("dir");
    let out = crate::common::command()
        .args(["serve", "--http", "127.0.0.1:0", "--dir"])
        .arg(dir.path())
        .env("BACKBONE_CORS_ALLOWED_ORIGINS", "app.example.com/path")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cors.allowed_origins"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

//! Every malformed request answers 4xx problem+json, and the server keeps working.

use serde_json::json;

use crate::common::{posts_collection, Server};

async fn ready() -> (Server, String) {
    let s = Server::start();
    let t = s.setup_superuser().await;
    let r = s.call("POST", "/api/collections", Some(&t), Some(posts_collection("posts"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    (s, t)
}

#[tokio::test]
async fn unknown_routes_are_404() {
    let s = Server::start();
    for path in ["/", "/nope", "/api", "/api/unknown", "/api/collections/x/y/z/w"] {
        s.call("GET", path, None, None).await.assert_problem(404);
    }
}

#[tokio::test]
async fn wrong_methods_are_405() {
    let s = Server::start();
    s.call("PUT", "/api/collections/posts/records", None, None).await.assert_problem(405);
    s.call("POST", "/api/health", None, None).await.assert_problem(405);
    s.call("DELETE", "/api/collections", None, None).await.assert_problem(405);
}

#[tokio::test]
async fn unknown_collection_is_404() {
    let (s, t) = ready().await;
    s.call("GET", "/api/collections/nope/records", Some(&t), None).await.assert_problem(404);
    s.call("POST", "/api/collections/nope/records", Some(&t), Some(json!({}))).await.assert_problem(404);
    s.call("GET", "/api/collections/nope/records/abcdefghijklmno", Some(&t), None).await.assert_problem(404);
    s.call("GET", "/api/collections/nope", Some(&t), None).await.assert_problem(404);
    s.call("PATCH", "/api/collections/nope", Some(&t), Some(json!({}))).await.assert_problem(404);
    s.call("DELETE", "/api/collections/nope", Some(&t), None).await.assert_problem(404);
}

#[tokio::test]
async fn invalid_record_ids_are_404() {
    let (s, t) = ready().await;
    for id in ["short", "ABCDEFGHIJKLMNO", "abcdefghijklmnop", "%2e%2e", "abcdefghijklm%00"] {
        let path = format!("/api/collections/posts/records/{id}");
        s.call("GET", &path, Some(&t), None).await.assert_problem(404);
        s.call("PATCH", &path, Some(&t), Some(json!({"title": "x"}))).await.assert_problem(404);
        s.call("DELETE", &path, Some(&t), None).await.assert_problem(404);
    }
}

#[tokio::test]
async fn malformed_json_is_400() {
    let (s, t) = ready().await;
    for body in [&b"{"[..], b"{\"title\": }", b"[1,2", b"\xff\xfe", b"nul", b"{\"title\":\"x\"} trailing"] {
        s.raw("POST", "/api/collections/posts/records", Some(&t), Some("application/json"), body.to_vec())
            .await
            .assert_problem(400);
        s.raw("POST", "/api/collections", Some(&t), Some("application/json"), body.to_vec())
            .await
            .assert_problem(400);
    }
    // Valid JSON of the wrong shape.
    for body in ["[1,2]", "\"text\"", "42"] {
        s.raw("POST", "/api/collections/posts/records", Some(&t), Some("application/json"), body.into())
            .await
            .assert_problem(400);
    }
}

#[tokio::test]
async fn deeply_nested_json_is_400_not_a_crash() {
    let (s, t) = ready().await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let body = format!("{{\"title\":\"x\",\"meta\":{deep}}}");
    s.raw("POST", "/api/collections/posts/records", Some(&t), Some("application/json"), body.into_bytes())
        .await
        .assert_problem(400);
    assert_eq!(s.call("GET", "/api/health", None, None).await.status, 200);
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let (s, t) = ready().await;
    for ct in ["text/plain", "application/x-www-form-urlencoded", "application/xml"] {
        s.raw("POST", "/api/collections/posts/records", Some(&t), Some(ct), b"title=x".to_vec())
            .await
            .assert_problem(415);
    }
    s.raw("POST", "/api/collections/posts/records", Some(&t), None, b"{\"title\":\"x\"}".to_vec())
        .await
        .assert_problem(415);
    // JSON with parameters or a +json suffix is fine.
    let r = s
        .raw(
            "POST",
            "/api/collections/posts/records",
            Some(&t),
            Some("application/json; charset=utf-8"),
            b"{\"title\":\"x\"}".to_vec(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn oversized_bodies_are_413_with_and_without_content_length() {
    let s = Server::start_with(crate::common::StartOptions {
        env: vec![("BACKBONE_LIMITS_MAX_BODY_BYTES".into(), "4096".into())],
        ..Default::default()
    });
    let t = s.setup_superuser().await;
    s.call("POST", "/api/collections", Some(&t), Some(posts_collection("posts"))).await;
    let big = format!("{{\"title\":\"x\",\"body\":\"{}\"}}", "y".repeat(10_000));
    s.raw(
        "POST",
        "/api/collections/posts/records",
        Some(&t),
        Some("application/json"),
        big.clone().into_bytes(),
    )
    .await
    .assert_problem(413);
    // Chunked: no Content-Length at all; the limit is enforced on the stream.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.into_bytes().chunks(1000).map(|c| Ok(c.to_vec())).collect();
    let res = s
        .client
        .post(s.url("/api/collections/posts/records"))
        .header("Authorization", &t)
        .header("Content-Type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 413);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap_or_default()
        .starts_with("application/problem+json"));
    let list = s.call("GET", "/api/collections/posts/records", Some(&t), None).await;
    assert_eq!(list.body["totalItems"], 0);
}

#[tokio::test]
async fn bad_query_strings_are_400() {
    let (s, t) = ready().await;
    s.call("GET", "/api/collections/posts/records?page=%ZZ", Some(&t), None).await.assert_problem(400);
}

#[tokio::test]
async fn server_survives_a_barrage_of_bad_requests() {
    let (s, t) = ready().await;
    for i in 0..50 {
        let body = vec![b'{'; i * 7];
        let r =
            s.raw("POST", "/api/collections/posts/records", Some(&t), Some("application/json"), body).await;
        assert!(r.status >= 400 && r.status < 500, "status {}", r.status);
    }
    let r = s
        .call("POST", "/api/collections/posts/records", Some(&t), Some(json!({"title": "still fine"})))
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn slow_request_bodies_are_cut_off_with_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Server::start_with(crate::common::StartOptions {
        env: vec![("BACKBONE_LIMITS_BODY_TIMEOUT_SECS".into(), "1".into())],
        ..Default::default()
    });
    let t = s.setup_superuser().await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let head = format!(
        "POST /api/collections HTTP/1.1\r\nHost: x\r\nAuthorization: {t}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"na"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let started = std::time::Instant::now();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("application/problem+json"), "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(s.call("GET", "/api/health", None, None).await.status, 200);
}

/// A JWT with the given claims and a made-up signature (never valid).
fn unsigned_token(claims: serde_json::Value) -> String {
    use base64::Engine as _;
    let encode = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"))
    };
    format!("{}.{}.c2lnbmF0dXJl", encode(&json!({"alg": "HS256", "typ": "JWT"})), encode(&claims))
}

#[tokio::test]
async fn refused_credentials_answer_401_with_the_reason() {
    let (s, su) = ready().await;
    let message = |r: &crate::common::Reply| r.body["message"].as_str().unwrap_or_default().to_string();

    // No credentials on a superuser-only endpoint: PocketBase's 401.
    let r = s.call("POST", "/api/collections", None, Some(posts_collection("x"))).await;
    r.assert_problem(401);
    assert!(message(&r).contains("requires valid superuser authorization token"), "{}", r.text);

    // Garbage, expired, revoked: 401 with what went wrong, on every kind of refusal.
    let garbage = s.call("GET", "/api/collections/posts/records", Some("Bearer garbage"), None).await;
    garbage.assert_problem(401);
    assert!(message(&garbage).contains("malformed"), "{}", garbage.text);
    let expired = unsigned_token(
        json!({"id": "abc", "collectionId": "pbc_3142635823", "type": "auth", "exp": 1_000_000_000, "refreshable": true}),
    );
    for path in ["/api/collections", "/api/collections/posts/records", "/api/jobs", "/api/settings"] {
        let r = s.call("GET", path, Some(&expired), None).await;
        r.assert_problem(401);
        assert!(message(&r).contains("expired"), "{path}: {}", r.text);
    }
    let session = s
        .call(
            "POST",
            "/api/collections/_superusers/auth-with-password",
            None,
            Some(json!({"identity": crate::common::SU_EMAIL, "password": crate::common::SU_PASSWORD})),
        )
        .await;
    let second = session.body["token"].as_str().expect("token").to_string();
    let out = s.call("POST", "/api/collections/_superusers/auth-logout", Some(&second), None).await;
    assert_eq!(out.status, 204, "{}", out.text);
    let revoked = s.call("GET", "/api/collections", Some(&second), None).await;
    revoked.assert_problem(401);
    assert!(message(&revoked).contains("revoked"), "{}", revoked.text);

    // Accepted credentials that lack the right keep their 403.
    let users = s
        .call(
            "POST",
            "/api/collections",
            Some(&su),
            Some(json!({"name": "users", "type": "auth", "createRule": ""})),
        )
        .await;
    assert_eq!(users.status, 200, "{}", users.text);
    let signup = json!({"email": "u@example.com", "password": "user-password-1", "passwordConfirm": "user-password-1"});
    assert_eq!(s.call("POST", "/api/collections/users/records", None, Some(signup)).await.status, 200);
    let user = s
        .call(
            "POST",
            "/api/collections/users/auth-with-password",
            None,
            Some(json!({"identity": "u@example.com", "password": "user-password-1"})),
        )
        .await;
    let user = user.body["token"].as_str().expect("user token").to_string();
    s.call("GET", "/api/collections", Some(&user), None).await.assert_problem(403);
    // And a public endpoint serves a refused token as anonymous, as PocketBase does.
    assert_eq!(s.call("GET", "/api/health", Some(&expired), None).await.status, 200);
}

#[tokio::test]
async fn an_unknown_field_option_is_refused_with_its_name() {
    let (s, su) = ready().await;
    let r = s
        .call(
            "POST",
            "/api/collections",
            Some(&su),
            Some(json!({"name": "notes", "fields": [
                {"name": "title", "type": "text", "max": 10},
                {"name": "body", "type": "text", "requird": true}
            ]})),
        )
        .await;
    r.assert_problem(400).assert_field_error("fields.1.requird", "validation_unknown_field_option");
    let text = r.body["data"]["fields.1.requird"]["message"].as_str().unwrap_or_default();
    assert!(text.contains("\"requird\"") && text.contains("required"), "{}", r.text);
    // The same on update, and an option of another type is unknown too.
    let r = s
        .call(
            "PATCH",
            "/api/collections/posts",
            Some(&su),
            Some(json!({"fields": [{"name": "title", "type": "text", "onlyInt": true}]})),
        )
        .await;
    r.assert_problem(400).assert_field_error("fields.0.onlyInt", "validation_unknown_field_option");
    // Nothing was created.
    s.call("GET", "/api/collections/notes", Some(&su), None).await.assert_problem(404);
}

#[tokio::test]
async fn limit_messages_state_the_limit_that_holds() {
    let (s, su) = ready().await;
    let r = s
        .call("POST", "/api/collections/posts/records", Some(&su), Some(json!({"title": "x", "views": -1})))
        .await;
    r.assert_problem(400).assert_field_error("views", "validation_min_number_constraint");
    assert_eq!(r.body["data"]["views"]["message"], "Must be at least 0.", "{}", r.text);
    // The limit itself is accepted.
    let ok = s
        .call("POST", "/api/collections/posts/records", Some(&su), Some(json!({"title": "x", "views": 0})))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let long = "y".repeat(101);
    let r = s.call("POST", "/api/collections/posts/records", Some(&su), Some(json!({"title": long}))).await;
    r.assert_problem(400);
    assert_eq!(r.body["data"]["title"]["message"], "Must be at most 100 character(s).", "{}", r.text);
}

#[tokio::test]
async fn every_error_type_links_to_a_section_of_the_errors_reference() {
    let (s, su) = ready().await;
    let page = s.call("GET", "/api/docs/errors", None, None).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.content_type.starts_with("text/html"), "{}", page.content_type);
    // Every kind the server answers with.
    let kinds = [
        "bad-request",
        "validation",
        "batch",
        "invalid-credentials",
        "mail-disabled",
        "unauthenticated",
        "forbidden",
        "not-found",
        "method-not-allowed",
        "timeout",
        "conflict",
        "too-large",
        "unsupported-media-type",
        "rate-limited",
        "internal",
        "unavailable",
        "overloaded",
        "disk-full",
    ];
    for kind in kinds {
        assert!(page.text.contains(&format!("id=\"{kind}\"")), "no section for {kind}");
    }
    // Real answers' links resolve to a section that exists.
    let answers = [
        s.call("GET", "/api/nope", None, None).await,
        s.call("POST", "/api/collections/posts/records", Some(&su), Some(json!({}))).await,
        s.call("GET", "/api/collections", Some("garbage"), None).await,
        s.call("DELETE", "/api/health", None, None).await,
    ];
    for answer in answers {
        let link = answer.body["type"].as_str().expect("type").to_string();
        let (path, anchor) = link.split_once('#').expect("an anchor");
        let target = s.call("GET", path, None, None).await;
        assert_eq!(target.status, 200, "{link}");
        assert!(target.text.contains(&format!("id=\"{anchor}\"")), "{link} has no section");
    }
}

#[tokio::test]
async fn the_account_page_that_emails_link_to_exists() {
    let s = Server::start();
    let page = s.call("GET", "/_/", None, None).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.content_type.starts_with("text/html"), "{}", page.content_type);
    let end = page.text.find("app.js").expect("the page loads its script") + "app.js".len();
    let start = page.text[..end].rfind("/_/v/").expect("a versioned URL");
    let csp = page.headers.get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(csp.contains("script-src 'self'"), "the page's script must be allowed: {csp}");
    assert!(!csp.contains("unsafe-inline"), "the admin UI needs no inline code: {csp}");
    let script = s.call("GET", &page.text[start..end], None, None).await;
    assert_eq!(script.status, 200);
    let confirm = s.call("GET", &page.text[start..end].replace("app.js", "confirm.js"), None, None).await;
    assert_eq!(confirm.status, 200);
    for action in ["confirm-verification", "confirm-password-reset", "confirm-email-change"] {
        assert!(confirm.text.contains(action), "the page handles {action}");
    }
}

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

//! `POST /api/batch`: all-or-nothing record writes.

use serde_json::{json, Value};

use crate::common::Server;

async fn ready(rule: Value) -> (Server, String) {
    let s = Server::start();
    let t = s.setup_superuser().await;
    let mut body = json!({"name": "notes", "fields": [
        {"name": "title", "type": "text", "required": true},
        {"name": "n", "type": "number"}
    ]});
    for slot in ["listRule", "viewRule", "createRule", "updateRule", "deleteRule"] {
        body[slot] = rule.clone();
    }
    let r = s.call("POST", "/api/collections", Some(&t), Some(body)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    (s, t)
}

async fn count(s: &Server, t: &str) -> u64 {
    s.call("GET", "/api/collections/notes/records", Some(t), None).await.body["totalItems"]
        .as_u64()
        .expect("total")
}

#[tokio::test]
async fn batch_creates_updates_upserts_and_deletes_in_one_transaction() {
    let (s, t) = ready(Value::Null).await;
    let seed =
        s.call("POST", "/api/collections/notes/records", Some(&t), Some(json!({"title": "old"}))).await.body;
    let old_id = seed["id"].as_str().expect("id");
    let r = s
        .call(
            "POST",
            "/api/batch",
            Some(&t),
            Some(json!({"requests": [
                {"method": "POST", "url": "/api/collections/notes/records", "body": {"id": "aaaaaaaaaaaaaaa", "title": "one"}},
                {"method": "PATCH", "url": "/api/collections/notes/records/aaaaaaaaaaaaaaa", "body": {"n": 2}},
                {"method": "PUT", "url": "/api/collections/notes/records", "body": {"id": "aaaaaaaaaaaaaaa", "title": "one!"}},
                {"method": "PUT", "url": "/api/collections/notes/records?fields=id,title", "body": {"id": "bbbbbbbbbbbbbbb", "title": "two"}},
                {"method": "DELETE", "url": format!("/api/collections/notes/records/{old_id}")}
            ]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let replies = r.body.as_array().expect("array");
    let statuses: Vec<u64> = replies.iter().map(|x| x["status"].as_u64().expect("status")).collect();
    assert_eq!(statuses, vec![200, 200, 200, 200, 204]);
    assert_eq!(replies[1]["body"]["n"], 2, "later requests see earlier ones");
    assert_eq!(replies[2]["body"]["title"], "one!");
    assert_eq!(replies[2]["body"]["n"], 2, "upsert of an existing id updates it");
    assert_eq!(
        replies[3]["body"],
        json!({"id": "bbbbbbbbbbbbbbb", "title": "two"}),
        "fields applies per request"
    );
    assert!(replies[4]["body"].is_null());
    assert_eq!(count(&s, &t).await, 2);
    s.call("GET", &format!("/api/collections/notes/records/{old_id}"), Some(&t), None)
        .await
        .assert_problem(404);
}

#[tokio::test]
async fn a_failing_request_rolls_back_the_whole_batch() {
    let (s, t) = ready(Value::Null).await;
    let r = s
        .call(
            "POST",
            "/api/batch",
            Some(&t),
            Some(json!({"requests": [
                {"method": "POST", "url": "/api/collections/notes/records", "body": {"title": "kept?"}},
                {"method": "POST", "url": "/api/collections/notes/records", "body": {"n": 1}}
            ]})),
        )
        .await;
    r.assert_problem(400);
    let failure = &r.body["data"]["requests"]["1"];
    assert_eq!(failure["code"], "batch_request_failed", "{}", r.text);
    assert_eq!(failure["response"]["data"]["title"]["code"], "validation_required", "{}", r.text);
    assert_eq!(count(&s, &t).await, 0, "the first create was rolled back");

    let missing = s
        .call(
            "POST",
            "/api/batch",
            Some(&t),
            Some(json!({"requests": [
                {"method": "POST", "url": "/api/collections/notes/records", "body": {"title": "x"}},
                {"method": "DELETE", "url": "/api/collections/notes/records/zzzzzzzzzzzzzzz"}
            ]})),
        )
        .await;
    missing.assert_problem(400);
    assert_eq!(missing.body["data"]["requests"]["1"]["response"]["status"], 404);
    assert_eq!(count(&s, &t).await, 0);
}

#[tokio::test]
async fn batch_respects_rules_and_limits() {
    let (s, t) = ready(Value::Null).await;
    let one = json!({"method": "POST", "url": "/api/collections/notes/records", "body": {"title": "x"}});
    let r = s.call("POST", "/api/batch", None, Some(json!({"requests": [one.clone()]}))).await;
    r.assert_problem(400);
    assert_eq!(r.body["data"]["requests"]["0"]["response"]["status"], 403);
    let too_many: Vec<Value> = (0..51).map(|_| one.clone()).collect();
    s.call("POST", "/api/batch", Some(&t), Some(json!({"requests": too_many})))
        .await
        .assert_problem(400)
        .assert_field_error("requests", "validation_too_many");
    assert_eq!(count(&s, &t).await, 0);
}

#[tokio::test]
async fn malformed_batches_are_400() {
    let (s, t) = ready(json!("")).await;
    for body in [
        json!({}),
        json!({"requests": []}),
        json!({"requests": "nope"}),
        json!({"requests": [{"url": "/api/collections/notes/records"}]}),
        json!({"requests": [{"method": "POST", "url": "/api/collections/notes/records", "body": [1]}]}),
        json!({"requests": [{"method": "GET", "url": "/api/collections/notes/records"}]}),
        json!({"requests": [{"method": "POST", "url": "/api/health"}]}),
        json!({"requests": [{"method": "POST", "url": "/api/collections/nope/records", "body": {}}]}),
    ] {
        let r = s.call("POST", "/api/batch", Some(&t), Some(body.clone())).await;
        assert!(r.status == 400 || r.status == 404, "{body}: {}", r.text);
        r.assert_problem(r.status);
    }
    // The envelope's own problems name where they are.
    for (body, field, code) in [
        (json!({}), "requests", "validation_required"),
        (json!({"requests": "nope"}), "requests", "validation_invalid_value"),
        (
            json!({"requests": [{"url": "/api/collections/notes/records"}]}),
            "requests.0",
            "validation_invalid_value",
        ),
        (
            json!({"requests": [{"method": "POST", "url": "/api/collections/notes/records", "body": [1]}]}),
            "requests.0.body",
            "validation_invalid_value",
        ),
    ] {
        s.call("POST", "/api/batch", Some(&t), Some(body))
            .await
            .assert_problem(400)
            .assert_field_error(field, code);
    }
    assert_eq!(count(&s, &t).await, 0);
}

/// The JS SDK's batch: multipart with `@jsonPayload` and files named `requests.N.field`.
#[tokio::test]
async fn a_multipart_batch_attaches_file_parts_to_their_requests_all_or_nothing() {
    use crate::common::multipart;
    let s = Server::start();
    let t = s.setup_superuser().await;
    let r = s
        .call(
            "POST",
            "/api/collections",
            Some(&t),
            Some(json!({"name": "docs", "fields": [
                {"name": "title", "type": "text", "required": true},
                {"name": "doc", "type": "file", "maxSelect": 1},
                {"name": "gallery", "type": "file", "maxSelect": 5, "mimeTypes": ["text/plain"], "maxSize": 100}
            ]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let payload = json!({"requests": [
        {"method": "POST", "url": "/api/collections/docs/records", "body": {"title": "one"}},
        {"method": "POST", "url": "/api/collections/docs/records", "body": {"title": "two"}}
    ]})
    .to_string();
    let (ct, body) = multipart(
        &[("@jsonPayload", &payload)],
        &[
            ("requests.0.doc", "a.txt", "text/plain", b"first file"),
            ("requests.1.gallery", "b.txt", "text/plain", b"second"),
            ("requests.1.gallery", "c.txt", "text/plain", b"third"),
        ],
    );
    let r = s.raw("POST", "/api/batch", Some(&t), Some(&ct), body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let one = &r.body[0]["body"];
    let two = &r.body[1]["body"];
    assert!(one["doc"].as_str().is_some_and(|n| n.ends_with(".txt")), "{}", r.text);
    assert_eq!(two["gallery"].as_array().map(Vec::len), Some(2), "{}", r.text);
    let url =
        format!("/api/files/docs/{}/{}", one["id"].as_str().expect("id"), one["doc"].as_str().expect("doc"));
    let file = s.client.get(s.url(&url)).header("Authorization", &t).send().await.expect("download");
    assert_eq!(file.status(), 200);
    assert_eq!(file.bytes().await.expect("bytes").as_ref(), b"first file");

    // gallery+ appends in an update; a refused file type fails the whole batch.
    let id = two["id"].as_str().expect("id");
    let payload = json!({"requests": [
        {"method": "PATCH", "url": format!("/api/collections/docs/records/{id}"), "body": {}},
        {"method": "POST", "url": "/api/collections/docs/records", "body": {"title": "three"}}
    ]})
    .to_string();
    let (ct, body) = multipart(
        &[("@jsonPayload", &payload)],
        &[
            ("requests.0.gallery+", "d.txt", "text/plain", b"fourth"),
            ("requests.1.gallery", "e.png", "image/png", b"\x89PNG\r\n\x1a\n0000"),
        ],
    );
    let r = s.raw("POST", "/api/batch", Some(&t), Some(&ct), body).await;
    r.assert_problem(400);
    assert!(r.body["data"]["requests.1.gallery"].is_object(), "{}", r.text);
    let list = s.call("GET", "/api/collections/docs/records", Some(&t), None).await;
    assert_eq!(list.body["totalItems"], 2, "nothing of the failed batch: {}", list.text);
    let payload = json!({"requests": [
        {"method": "PATCH", "url": format!("/api/collections/docs/records/{id}"), "body": {}}
    ]})
    .to_string();
    let (ct, body) = multipart(
        &[("@jsonPayload", &payload)],
        &[("requests.0.gallery+", "d.txt", "text/plain", b"fourth")],
    );
    let r = s.raw("POST", "/api/batch", Some(&t), Some(&ct), body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body[0]["body"]["gallery"].as_array().map(Vec::len), Some(3), "{}", r.text);

    // Parts that name no request or no file field, and a missing payload, are field errors.
    for (part, payload) in [
        (
            "requests.5.doc",
            json!({"requests": [{"method": "POST", "url": "/api/collections/docs/records", "body": {"title": "x"}}]}),
        ),
        (
            "requests.0.title",
            json!({"requests": [{"method": "POST", "url": "/api/collections/docs/records", "body": {"title": "x"}}]}),
        ),
        (
            "doc",
            json!({"requests": [{"method": "POST", "url": "/api/collections/docs/records", "body": {"title": "x"}}]}),
        ),
    ] {
        let payload = payload.to_string();
        let (ct, body) = multipart(&[("@jsonPayload", &payload)], &[(part, "a.txt", "text/plain", b"x")]);
        let r = s.raw("POST", "/api/batch", Some(&t), Some(&ct), body).await;
        r.assert_problem(400);
        assert!(r.body["data"][part].is_object(), "{part}: {}", r.text);
    }
    let (ct, body) = multipart(&[], &[("requests.0.doc", "a.txt", "text/plain", b"x")]);
    s.raw("POST", "/api/batch", Some(&t), Some(&ct), body).await.assert_problem(400);
    let list = s.call("GET", "/api/collections/docs/records", Some(&t), None).await;
    assert_eq!(list.body["totalItems"], 2, "{}", list.text);
}

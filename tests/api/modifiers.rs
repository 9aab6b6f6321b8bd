//! Update modifiers of non-file fields: `n+`/`n-`, `+tags`/`tags+`/`tags-`, in single
//! writes and in batches; unknown modifier targets are field errors.

use serde_json::{json, Value};

use crate::common::Server;

async fn ready() -> (Server, String) {
    let s = Server::start();
    let t = s.setup_superuser().await;
    let r = s
        .call(
            "POST",
            "/api/collections",
            Some(&t),
            Some(json!({"name": "tags", "fields": [{"name": "label", "type": "text"}]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let tags_id = r.body["id"].as_str().expect("id").to_string();
    let r = s
        .call(
            "POST",
            "/api/collections",
            Some(&t),
            Some(json!({"name": "posts", "fields": [
                {"name": "title", "type": "text"},
                {"name": "n", "type": "number", "max": 100},
                {"name": "tags", "type": "select", "values": ["a", "b", "c"], "maxSelect": 3},
                {"name": "one", "type": "select", "values": ["a", "b"], "maxSelect": 1},
                {"name": "rel", "type": "relation", "collectionId": tags_id, "maxSelect": 5}
            ]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    (s, t)
}

async fn create(s: &Server, t: &str, body: Value) -> Value {
    let r = s.call("POST", "/api/collections/posts/records", Some(t), Some(body)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

async fn patch(s: &Server, t: &str, id: &str, body: Value) -> crate::common::Reply {
    s.call("PATCH", &format!("/api/collections/posts/records/{id}"), Some(t), Some(body)).await
}

#[tokio::test]
async fn numbers_add_and_subtract_from_the_stored_value() {
    let (s, t) = ready().await;
    let rec = create(&s, &t, json!({"n+": 3})).await;
    assert_eq!(rec["n"], 3, "a modifier on create applies to the default");
    let id = rec["id"].as_str().expect("id");
    let r = patch(&s, &t, id, json!({"n+": 5})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["n"], 8);
    let r = patch(&s, &t, id, json!({"n-": "2.5"})).await;
    assert_eq!(r.body["n"], 5.5, "numeric strings count (multipart sends strings)");
    let r = patch(&s, &t, id, json!({"n+": 1000})).await;
    assert_eq!(r.status, 400, "the result is validated: {}", r.text);
    assert!(r.body["data"]["n"]["code"].is_string(), "{}", r.text);
    let r = patch(&s, &t, id, json!({"n+": "many"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["data"]["n"]["code"], "validation_invalid_number");
}

#[tokio::test]
async fn concurrent_increments_are_not_lost() {
    let (s, t) = ready().await;
    let rec = create(&s, &t, json!({})).await;
    let id = rec["id"].as_str().expect("id").to_string();
    let s = std::sync::Arc::new(s);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (s, t, id) = (s.clone(), t.clone(), id.clone());
        tasks.push(tokio::spawn(async move { patch(&s, &t, &id, json!({"n+": 1})).await.status }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("task"), 200);
    }
    let r = s.call("GET", &format!("/api/collections/posts/records/{id}"), Some(&t), None).await;
    assert_eq!(r.body["n"], 20);
}

#[tokio::test]
async fn selects_and_relations_prepend_append_and_remove() {
    let (s, t) = ready().await;
    let mut tag_ids = Vec::new();
    for label in ["x", "y", "z"] {
        let r =
            s.call("POST", "/api/collections/tags/records", Some(&t), Some(json!({"label": label}))).await;
        tag_ids.push(r.body["id"].as_str().expect("id").to_string());
    }
    let rec = create(&s, &t, json!({"tags": ["b"], "rel": [tag_ids[0]]})).await;
    let id = rec["id"].as_str().expect("id");
    let r = patch(&s, &t, id, json!({"+tags": "a", "tags+": ["c", "b"]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["tags"], json!(["a", "b", "c"]), "prepend, append, no duplicates");
    let r = patch(&s, &t, id, json!({"tags-": ["a", "c"]})).await;
    assert_eq!(r.body["tags"], json!(["b"]));
    let r = patch(&s, &t, id, json!({"rel+": [tag_ids[1], tag_ids[2]], "rel-": tag_ids[0]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["rel"], json!([tag_ids[1], tag_ids[2]]));
    let r = patch(&s, &t, id, json!({"one+": "b"})).await;
    assert_eq!(r.body["one"], "b", "a single select keeps the last value");
    let r = patch(&s, &t, id, json!({"tags+": "nope"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["data"]["tags"]["code"], "validation_invalid_value");
}

#[tokio::test]
async fn unknown_modifier_targets_are_field_errors() {
    let (s, t) = ready().await;
    let rec = create(&s, &t, json!({})).await;
    let id = rec["id"].as_str().expect("id");
    for key in ["title+", "missing+", "+n", "id-"] {
        let mut body = serde_json::Map::new();
        body.insert(key.into(), json!("1"));
        let r = patch(&s, &t, id, Value::Object(body)).await;
        assert_eq!(r.status, 400, "{key}: {}", r.text);
        assert_eq!(r.body["data"][key]["code"], "validation_unknown_modifier", "{key}: {}", r.text);
    }
    let r = s.call("POST", "/api/collections/posts/records", Some(&t), Some(json!({"title+": "x"}))).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn modifiers_apply_in_batches_to_what_earlier_requests_wrote() {
    let (s, t) = ready().await;
    let rec = create(&s, &t, json!({"n": 1})).await;
    let id = rec["id"].as_str().expect("id");
    let url = format!("/api/collections/posts/records/{id}");
    let r = s
        .call(
            "POST",
            "/api/batch",
            Some(&t),
            Some(json!({"requests": [
                {"method": "PATCH", "url": url, "body": {"n+": 2, "tags+": "a"}},
                {"method": "PATCH", "url": url, "body": {"n+": 3, "tags+": ["b"]}}
            ]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body[1]["body"]["n"], 6);
    assert_eq!(r.body[1]["body"]["tags"], json!(["a", "b"]));
    let r = s
        .call(
            "POST",
            "/api/batch",
            Some(&t),
            Some(json!({"requests": [{"method": "PATCH", "url": url, "body": {"title-": "x"}}]})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
}

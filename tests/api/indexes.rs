//! Secondary indexes: uniqueness, safe builds on populated collections, planner, explain.

use serde_json::{json, Value};

use crate::common::Server;

async fn people(indexes: Value) -> (Server, String) {
    let s = Server::start();
    let t = s.setup_superuser().await;
    let r = s
        .call(
            "POST",
            "/api/collections",
            Some(&t),
            Some(json!({"name": "people", "indexes": indexes, "fields": [
                {"name": "email", "type": "email"},
                {"name": "city", "type": "text"},
                {"name": "age", "type": "number"}
            ]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    (s, t)
}

async fn add(s: &Server, t: &str, email: &str, city: &str, age: i64) -> crate::common::Reply {
    s.call(
        "POST",
        "/api/collections/people/records",
        Some(t),
        Some(json!({"email": email, "city": city, "age": age})),
    )
    .await
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn unique_index_refuses_duplicates_on_create_update_and_batch() {
    let (s, t) = people(json!(["CREATE UNIQUE INDEX idx_email ON people (email)"])).await;
    let a = add(&s, &t, "a@example.com", "Oslo", 30).await;
    assert_eq!(a.status, 200, "{}", a.text);
    add(&s, &t, "a@example.com", "Rome", 40)
        .await
        .assert_problem(400)
        .assert_field_error("email", "validation_not_unique");
    let b = add(&s, &t, "b@example.com", "Rome", 40).await;
    let b_id = b.body["id"].as_str().expect("id").to_string();
    s.call(
        "PATCH",
        &format!("/api/collections/people/records/{b_id}"),
        Some(&t),
        Some(json!({"email": "a@example.com"})),
    )
    .await
    .assert_problem(400)
    .assert_field_error("email", "validation_not_unique");
    // Changing a record keeps its own value free; deleting frees it for others.
    let same = s
        .call("PATCH", &format!("/api/collections/people/records/{b_id}"), Some(&t), Some(json!({"age": 41})))
        .await;
    assert_eq!(same.status, 200, "{}", same.text);
    let a_id = a.body["id"].as_str().expect("id");
    assert_eq!(
        s.call("DELETE", &format!("/api/collections/people/records/{a_id}"), Some(&t), None).await.status,
        204
    );
    assert_eq!(add(&s, &t, "a@example.com", "Oslo", 31).await.status, 200);
    let batch = s
        .call(
            "POST",
            "/api/batch",
            Some(&t),
            Some(json!({"requests": [
                {"method": "POST", "url": "/api/collections/people/records", "body": {"email": "c@example.com"}},
                {"method": "POST", "url": "/api/collections/people/records", "body": {"email": "c@example.com"}}
            ]})),
        )
        .await;
    batch.assert_problem(400);
    let count =
        s.call("GET", "/api/collections/people/records", Some(&t), None).await.body["totalItems"].clone();
    assert_eq!(count, 2, "the batch left nothing behind");
}

#[tokio::test]
async fn adding_an_index_to_a_populated_collection_builds_it_or_refuses() {
    let (s, t) = people(json!([])).await;
    add(&s, &t, "a@example.com", "Oslo", 30).await;
    add(&s, &t, "b@example.com", "Oslo", 40).await;
    s.call(
        "PATCH",
        "/api/collections/people",
        Some(&t),
        Some(json!({"indexes": ["CREATE UNIQUE INDEX u_city ON people (city)"]})),
    )
    .await
    .assert_problem(409);
    let ok = s
        .call(
            "PATCH",
            "/api/collections/people",
            Some(&t),
            Some(json!({"indexes": ["CREATE UNIQUE INDEX u_email ON people (email)"]})),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    add(&s, &t, "b@example.com", "Rome", 1)
        .await
        .assert_problem(400)
        .assert_field_error("email", "validation_not_unique");
    // Dropping the index lifts the constraint.
    assert_eq!(
        s.call("PATCH", "/api/collections/people", Some(&t), Some(json!({"indexes": []}))).await.status,
        200
    );
    assert_eq!(add(&s, &t, "b@example.com", "Rome", 1).await.status, 200);
}

#[tokio::test]
async fn filters_use_indexes_and_explain_shows_the_plan() {
    let (s, t) = people(json!(["CREATE INDEX idx_city_age ON people (city, age)"])).await;
    for i in 0..30 {
        let city = ["Oslo", "Rome", "Lima"][i % 3];
        assert_eq!(add(&s, &t, &format!("p{i}@example.com"), city, (i % 5) as i64).await.status, 200);
    }
    let list = |filter: &str| {
        format!("/api/collections/people/records?perPage=100&explain=1&filter={}", enc(filter))
    };
    let r = s.call("GET", &list("city = 'Rome' && age = 3"), Some(&t), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["explain"]["strategy"], "index", "{}", r.text);
    assert_eq!(r.body["explain"]["columns"], json!(["city", "age"]));
    assert_eq!(r.body["explain"]["candidates"], 2);
    assert_eq!(r.body["totalItems"], 2);
    let r = s.call("GET", &list("city = 'Lima' && email ~ 'p1'"), Some(&t), None).await;
    assert_eq!(r.body["explain"]["columns"], json!(["city"]), "{}", r.text);
    // Same answers as a scan (an OR cannot use the index).
    let scan = s.call("GET", &list("(city = 'Lima' || city = 'Lima') && email ~ 'p1'"), Some(&t), None).await;
    assert_ne!(scan.body["explain"]["strategy"], "index", "{}", scan.text);
    assert_eq!(scan.body["items"], r.body["items"]);
    // Explain is for superusers.
    s.call("PATCH", "/api/collections/people", Some(&t), Some(json!({"listRule": ""}))).await;
    s.call("GET", &list("city = 'Rome'"), None, None).await.assert_problem(403);
}

#[tokio::test]
async fn invalid_index_definitions_are_400() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    for (index, needle) in [
        ("CREATE INDEX i ON other (a)", "not on"),
        ("CREATE INDEX i ON x (nope)", "Unknown field"),
        ("CREATE INDEX i ON x (a) WHERE a != ''", "partial"),
        ("CREATE INDEX i ON x ()", "1 to 8"),
    ] {
        let r = s
            .call(
                "POST",
                "/api/collections",
                Some(&t),
                Some(json!({"name": "x", "fields": [{"name": "a", "type": "text"}], "indexes": [index]})),
            )
            .await;
        r.assert_problem(400).assert_field_error("indexes.0", "validation_invalid_index");
        assert!(
            r.body["data"]["indexes.0"]["message"].as_str().unwrap_or_default().contains(needle),
            "{index}: {}",
            r.text
        );
    }
    let r = s
        .call(
            "POST",
            "/api/collections",
            Some(&t),
            Some(json!({"name": "x", "fields": [{"name": "a", "type": "text"}], "indexes": ["CREATE INDEX i ON x (a)", "CREATE INDEX I ON x (a)"]})),
        )
        .await;
    r.assert_problem(400).assert_field_error("indexes.1", "validation_duplicated_index");
}

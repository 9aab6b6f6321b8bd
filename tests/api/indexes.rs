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
    assert_eq!(r.body["explain"]["examined"], 2);
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

fn ids(r: &crate::common::Reply) -> Vec<String> {
    r.body["items"]
        .as_array()
        .map(|a| a.iter().map(|i| i["id"].as_str().unwrap_or_default().to_string()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn ranges_prefixes_and_sorts_use_the_index_and_agree_with_a_scan() {
    let (s, t) = people(json!([
        "CREATE INDEX idx_city_age ON people (city, age)",
        "CREATE INDEX idx_age ON people (age)"
    ]))
    .await;
    let cities = ["Oslo", "Rome", "Lima", "rome", "Roma", ""];
    for i in 0..60 {
        let city = cities[i % cities.len()];
        let age = (i * 7 % 23) as i64 - 5;
        assert_eq!(add(&s, &t, &format!("p{i}@example.com"), city, age).await.status, 200);
    }
    let get = |q: String| {
        let s = &s;
        let t = &t;
        async move {
            s.call("GET", &format!("/api/collections/people/records?explain=1&{q}"), Some(t), None).await
        }
    };
    // Each case: filter, sort, expected index, sort served. Pages and totals must equal
    // those of the same query once the indexes are dropped (scan and in-memory sort).
    let cases = [
        ("city = 'Rome' && age > 3", "-age", Some("idx_city_age"), true),
        ("city = 'Rome' && age >= 3 && age < 10", "age", Some("idx_city_age"), true),
        ("age <= 0", "-age", Some("idx_age"), true),
        ("age > 2 && city ~ 'o'", "age,id", Some("idx_age"), true),
        ("city ~ 'ro%'", "", Some("idx_city_age"), false),
        ("city ~ 'ROM%' && age < 10", "city,age", Some("idx_city_age"), true),
        ("city > 'Lima' && city <= 'Roma'", "-city,-age", Some("idx_city_age"), true),
        ("city = 'Oslo'", "age,-id", Some("idx_city_age"), false),
        ("", "-age", Some("idx_age"), true),
        ("", "age,city", None, false),
        ("age > 100", "age", Some("idx_age"), true),
        ("(age > 1 || city = 'Rome') && age < 5", "-age", Some("idx_age"), true),
    ];
    let mut answers = Vec::new();
    for (filter, sort, index, served) in cases {
        for (page, per_page) in [(2, 4), (1, 100)] {
            let q = format!("perPage={per_page}&page={page}&sort={}&filter={}", enc(sort), enc(filter));
            let r = get(q.clone()).await;
            assert_eq!(r.status, 200, "{filter}: {}", r.text);
            let plan = &r.body["explain"];
            match index {
                Some(name) => {
                    assert_eq!(plan["strategy"], "index", "{filter} / {sort}: {plan}");
                    assert_eq!(plan["index"], name, "{filter} / {sort}: {plan}");
                    assert_eq!(plan["sortByIndex"], served, "{filter} / {sort}: {plan}");
                }
                None => assert_ne!(plan["strategy"], "index", "{filter} / {sort}: {plan}"),
            }
            answers.push((q, ids(&r), r.body["totalItems"].clone()));
        }
    }
    // An exact plan serving the sort stops at the end of the page and counts from the index.
    let r = get(format!("perPage=3&sort=-age&filter={}", enc("city = 'Rome' && age > -100"))).await;
    assert_eq!(r.body["explain"]["examined"], 3, "{}", r.text);
    assert_eq!(r.body["explain"]["totalFromIndex"], true, "{}", r.text);
    assert_eq!(r.body["explain"]["range"]["column"], "age", "{}", r.text);
    assert_eq!(r.body["totalItems"], 10, "{}", r.text);
    // Cursor paging over an index-served sort walks every match once, in order.
    let mut cursor = String::new();
    let mut walked = Vec::new();
    loop {
        let r = get(format!("perPage=7&sort=-age&filter={}&cursor={}", enc("age >= 0"), enc(&cursor))).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["explain"]["sortByIndex"], true);
        walked.extend(r.body["items"].as_array().cloned().unwrap_or_default());
        match r.body["nextCursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    let all = get(format!("perPage=1000&sort=-age&filter={}", enc("age >= 0 || id = 'nope'"))).await;
    assert_eq!(Some(&walked), all.body["items"].as_array());
    assert!(walked.len() > 20, "{}", walked.len());

    let r = s.call("PATCH", "/api/collections/people", Some(&t), Some(json!({"indexes": []}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    for (q, want, total) in answers {
        let r = get(q.clone()).await;
        assert_ne!(r.body["explain"]["strategy"], "index", "{}", r.text);
        assert_eq!(ids(&r), want, "{q}");
        assert_eq!(r.body["totalItems"], total, "{q}");
    }
}

//! The filter language over HTTP, and access rules as filters.

use serde_json::{json, Value};

use crate::common::Server;

async fn seeded(rules: Value) -> (Server, String) {
    let s = Server::start();
    let t = s.setup_superuser().await;
    let mut body = json!({
        "name": "items",
        "fields": [
            {"name": "title", "type": "text"},
            {"name": "views", "type": "number"},
            {"name": "status", "type": "select", "values": ["draft", "live"], "maxSelect": 1},
            {"name": "tags", "type": "select", "values": ["a", "b", "c"], "maxSelect": 3},
            {"name": "secret", "type": "text", "hidden": true}
        ]
    });
    for (k, v) in rules.as_object().expect("rules") {
        body[k] = v.clone();
    }
    let r = s.call("POST", "/api/collections", Some(&t), Some(body)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    for (title, views, status, tags) in [
        ("alpha", 5, "draft", json!(["a"])),
        ("beta", 50, "live", json!(["a", "b"])),
        ("gamma", 500, "live", json!([])),
        ("Delta", 0, "draft", json!(["c"])),
    ] {
        let r = s
            .call(
                "POST",
                "/api/collections/items/records",
                Some(&t),
                Some(
                    json!({"title": title, "views": views, "status": status, "tags": tags, "secret": title}),
                ),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    (s, t)
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn titles(s: &Server, token: Option<&str>, filter: &str) -> Vec<String> {
    let r = s
        .call(
            "GET",
            &format!("/api/collections/items/records?sort=title&filter={}", enc(filter)),
            token,
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{filter}: {}", r.text);
    let items = r.body["items"].as_array().expect("items");
    assert_eq!(r.body["totalItems"].as_u64(), Some(items.len() as u64), "totals count matches only");
    items.iter().map(|i| i["title"].as_str().unwrap_or_default().to_string()).collect()
}

#[tokio::test]
async fn list_filter_supports_the_operators() {
    let (s, t) = seeded(json!({})).await;
    let t = Some(t.as_str());
    assert_eq!(titles(&s, t, "views > 10").await, vec!["beta", "gamma"]);
    assert_eq!(titles(&s, t, "views >= 50 && status = 'live'").await, vec!["beta", "gamma"]);
    assert_eq!(titles(&s, t, "views < 10 || title = \"gamma\"").await, vec!["Delta", "alpha", "gamma"]);
    assert_eq!(titles(&s, t, "title ~ 'ta'").await, vec!["Delta", "beta"]);
    assert_eq!(titles(&s, t, "title !~ 'a%'").await, vec!["Delta", "beta", "gamma"]);
    assert_eq!(titles(&s, t, "tags:each ?= 'a'").await, vec!["alpha", "beta"]);
    assert!(titles(&s, t, "tags ?= 'a'").await.is_empty(), "a multiple select compares as JSON text");
    assert_eq!(titles(&s, t, "tags:length = 0").await, vec!["gamma"]);
    assert_eq!(titles(&s, t, "(views = 0 || views = 5) && status != 'live'").await, vec!["Delta", "alpha"]);
    assert_eq!(titles(&s, t, "created <= @now").await.len(), 4);
    assert_eq!(titles(&s, t, "title:lower = 'delta'").await, vec!["Delta"]);
}

#[tokio::test]
async fn filter_pages_and_skip_total() {
    let (s, t) = seeded(json!({})).await;
    let r = s
        .call(
            "GET",
            &format!("/api/collections/items/records?perPage=1&page=2&filter={}", enc("views > 1")),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.body["totalItems"], 3);
    assert_eq!(r.body["totalPages"], 3);
    assert_eq!(r.body["items"][0]["title"], "beta", "key order, second match");
    let r = s
        .call(
            "GET",
            &format!("/api/collections/items/records?perPage=1&skipTotal=1&filter={}", enc("views > 1")),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.body["totalItems"], -1);
    assert_eq!(r.body["items"][0]["title"], "alpha");
}

#[tokio::test]
async fn malformed_filters_are_400_with_the_position() {
    let (s, t) = seeded(json!({})).await;
    for (filter, needle) in [
        ("views >", "position 7"),
        ("views = 1 &&", "position 12"),
        ("(views = 1", "position 0"),
        ("views = 'open", "position 8"),
        ("nosuch = 1", "unknown field"),
        ("views ^ 1", "position 6"),
    ] {
        let r = s
            .call("GET", &format!("/api/collections/items/records?filter={}", enc(filter)), Some(&t), None)
            .await;
        r.assert_problem(400);
        assert!(r.body["detail"].as_str().unwrap_or_default().contains(needle), "{filter}: {}", r.text);
    }
}

#[tokio::test]
async fn hidden_fields_cannot_be_filtered_by_non_superusers() {
    let (s, t) = seeded(json!({"listRule": ""})).await;
    let path = format!("/api/collections/items/records?filter={}", enc("secret = 'alpha'"));
    s.call("GET", &path, None, None).await.assert_problem(400);
    let r = s.call("GET", &path, Some(&t), None).await;
    assert_eq!(r.body["totalItems"], 1, "superusers may: {}", r.text);
    // The same holds for sort.
    let path = "/api/collections/items/records?sort=-secret";
    s.call("GET", path, None, None).await.assert_problem(400);
    assert_eq!(s.call("GET", path, Some(&t), None).await.status, 200);
}

#[tokio::test]
async fn rules_filter_list_view_update_and_delete() {
    let (s, t) = seeded(json!({
        "listRule": "status = 'live'",
        "viewRule": "status = 'live'",
        "updateRule": "views > 100",
        "deleteRule": "views = 0",
        "createRule": "@request.body.title ~ 'ok' && views < 10"
    }))
    .await;
    assert_eq!(titles(&s, None, "views > 0").await, vec!["beta", "gamma"], "rule and filter combine");
    let all = s.call("GET", "/api/collections/items/records?perPage=100", Some(&t), None).await.body["items"]
        .clone();
    let id_of = |title: &str| -> String {
        all.as_array()
            .expect("items")
            .iter()
            .find(|i| i["title"] == title)
            .and_then(|i| i["id"].as_str())
            .expect("id")
            .to_string()
    };
    let one = |title: &str| format!("/api/collections/items/records/{}", id_of(title));
    assert_eq!(s.call("GET", &one("beta"), None, None).await.status, 200);
    s.call("GET", &one("alpha"), None, None).await.assert_problem(404);
    let r = s.call("PATCH", &one("gamma"), None, Some(json!({"title": "gamma2"}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    s.call("PATCH", &one("beta"), None, Some(json!({"title": "beta2"}))).await.assert_problem(404);
    s.call("DELETE", &one("beta"), None, None).await.assert_problem(404);
    assert_eq!(s.call("DELETE", &one("Delta"), None, None).await.status, 204);
    let ok = s
        .call("POST", "/api/collections/items/records", None, Some(json!({"title": "ok one", "views": 1})))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    s.call("POST", "/api/collections/items/records", None, Some(json!({"title": "nope", "views": 1})))
        .await
        .assert_problem(400);
    s.call("POST", "/api/collections/items/records", None, Some(json!({"title": "ok but big", "views": 99})))
        .await
        .assert_problem(400);
}

#[tokio::test]
async fn rules_that_do_not_compile_are_refused_at_save() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    let r = s
        .call(
            "POST",
            "/api/collections",
            Some(&t),
            Some(json!({"name": "x", "fields": [{"name": "a", "type": "text"}], "listRule": "nosuch = 1", "viewRule": "a ="})),
        )
        .await;
    r.assert_problem(400)
        .assert_field_error("listRule", "validation_invalid_rule")
        .assert_field_error("viewRule", "validation_invalid_rule");
    let ok = s
        .call(
            "POST",
            "/api/collections",
            Some(&t),
            Some(json!({"name": "x", "fields": [{"name": "a", "type": "text"}], "listRule": "a != ''"})),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    // Removing the field a rule uses is refused too.
    s.call("PATCH", "/api/collections/x", Some(&t), Some(json!({"fields": []})))
        .await
        .assert_problem(400)
        .assert_field_error("listRule", "validation_invalid_rule");
}

#[tokio::test]
async fn cursor_paging_walks_a_list_without_duplicates_while_records_arrive() {
    let (s, t) = seeded(json!({})).await;
    let mut cursor = String::new();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let r = s
            .call(
                "GET",
                &format!("/api/collections/items/records?perPage=1&sort=-views&cursor={}", enc(&cursor)),
                Some(&t),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        seen.extend(
            r.body["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|i| i["title"].as_str().unwrap_or_default().to_string()),
        );
        if pages == 0 {
            // Arrives mid-walk, ahead of the cursor: it must not shift later pages.
            s.call(
                "POST",
                "/api/collections/items/records",
                Some(&t),
                Some(json!({"title": "late", "views": 1000})),
            )
            .await;
        }
        pages += 1;
        match r.body["nextCursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => break,
        }
        assert!(pages < 20);
    }
    assert_eq!(seen, vec!["gamma", "beta", "alpha", "Delta"]);
    for bad in ["garbage", "W10", "WyJ4Il0"] {
        s.call("GET", &format!("/api/collections/items/records?cursor={bad}"), Some(&t), None)
            .await
            .assert_problem(400);
    }
    s.call("GET", "/api/collections/items/records?cursor=&sort=@random", Some(&t), None)
        .await
        .assert_problem(400);
    let plain = s.call("GET", "/api/collections/items/records", Some(&t), None).await;
    assert!(plain.body.get("nextCursor").is_none(), "offset paging has no cursor");
}

use serde_json::json;

use crate::common::{posts_collection, Server};

#[tokio::test]
async fn superuser_creates_views_lists_updates_and_deletes_a_collection() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    let created = s.call("POST", "/api/collections", Some(&t), Some(posts_collection("posts"))).await;
    assert_eq!(created.status, 200, "{}", created.text);
    let c = &created.body;
    assert_eq!(c["name"], "posts");
    assert_eq!(c["type"], "base");
    let names: Vec<&str> =
        c["fields"].as_array().expect("fields").iter().filter_map(|f| f["name"].as_str()).collect();
    assert_eq!(names.first(), Some(&"id"), "id comes first");
    assert!(names.ends_with(&["created", "updated"]), "{names:?}");
    assert!(c["listRule"].is_null());

    let id = c["id"].as_str().expect("id");
    for key in [id, "posts", "POSTS"] {
        let view = s.call("GET", &format!("/api/collections/{key}"), Some(&t), None).await;
        assert_eq!(view.status, 200, "{key}: {}", view.text);
        assert_eq!(view.body["id"], id);
    }
    let list = s.call("GET", "/api/collections", Some(&t), None).await;
    assert_eq!(list.status, 200);
    let listed: Vec<&str> =
        list.body["items"].as_array().expect("items").iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(listed, vec!["_superusers", "posts"]);
    assert_eq!(list.body["totalItems"], 2);

    let updated = s
        .call("PATCH", "/api/collections/posts", Some(&t), Some(json!({"name": "articles", "listRule": ""})))
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_eq!(updated.body["name"], "articles");
    assert_eq!(updated.body["listRule"], "");
    assert_eq!(updated.body["fields"], c["fields"], "fields untouched when not sent");
    s.call("GET", "/api/collections/posts", Some(&t), None).await.assert_problem(404);

    let deleted = s.call("DELETE", "/api/collections/articles", Some(&t), None).await;
    assert_eq!(deleted.status, 204);
    s.call("GET", "/api/collections/articles", Some(&t), None).await.assert_problem(404);
}

#[tokio::test]
async fn collections_api_is_superuser_only() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    s.call("POST", "/api/collections", Some(&t), Some(posts_collection("posts"))).await;
    // Without credentials: PocketBase's 401.
    s.call("GET", "/api/collections", None, None).await.assert_problem(401);
    s.call("GET", "/api/collections/posts", None, None).await.assert_problem(401);
    s.call("POST", "/api/collections", None, Some(posts_collection("x"))).await.assert_problem(401);
    s.call("PATCH", "/api/collections/posts", None, Some(json!({"name": "y"}))).await.assert_problem(401);
    s.call("DELETE", "/api/collections/posts", None, None).await.assert_problem(401);
    // Credentials that are not accepted: 401 with the reason.
    let r = s.call("GET", "/api/collections", Some("not-a-token"), None).await;
    r.assert_problem(401);
    assert!(r.body["message"].as_str().unwrap_or_default().contains("malformed"), "{}", r.text);
}

#[tokio::test]
async fn invalid_collection_definitions_are_rejected_with_field_errors() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    let cases = [
        (json!({"name": ""}), "name", "validation_required"),
        (json!({"name": "9lives"}), "name", "validation_invalid_name"),
        (json!({"name": "has space"}), "name", "validation_invalid_name"),
        (json!({"name": "_hidden"}), "name", "validation_reserved_name"),
        (json!({"name": "x", "type": "view"}), "type", "validation_invalid_type"),
        (
            json!({"name": "x", "indexes": ["CREATE INDEX i ON x (a)"]}),
            "indexes.0",
            "validation_invalid_index",
        ),
        (json!({"name": "x", "indexes": ["DROP TABLE x"]}), "indexes.0", "validation_invalid_index"),
        (
            json!({"name": "x", "fields": [{"name": "a", "type": "geoPoint"}]}),
            "fields.0",
            "validation_invalid_field",
        ),
        (
            json!({"name": "x", "fields": [{"name": "a", "type": "relation"}]}),
            "fields.0.type",
            "validation_invalid_options",
        ),
        (
            json!({"name": "x", "fields": [{"name": "a", "type": "text"}, {"name": "A", "type": "bool"}]}),
            "fields.1.name",
            "validation_duplicated_name",
        ),
        (
            json!({"name": "x", "fields": [{"name": "expand", "type": "text"}]}),
            "fields.0.name",
            "validation_reserved_name",
        ),
        (
            json!({"name": "x", "fields": [{"name": "a b", "type": "text"}]}),
            "fields.0.name",
            "validation_invalid_name",
        ),
        (
            json!({"name": "x", "fields": [{"name": "s", "type": "select", "values": []}]}),
            "fields.0.type",
            "validation_invalid_options",
        ),
        (
            json!({"name": "x", "fields": [{"name": "p", "type": "text", "pattern": "(["}]}),
            "fields.0.type",
            "validation_invalid_options",
        ),
        (
            json!({"name": "x", "fields": [{"name": "p", "type": "password"}]}),
            "fields.0.type",
            "validation_invalid_type",
        ),
        (json!({"name": "x", "listRule": 5}), "body", "validation_invalid_type"),
        (json!({"name": "x", "fields": "nope"}), "body", "validation_invalid_type"),
    ];
    for (body, field, code) in cases {
        let r = s.call("POST", "/api/collections", Some(&t), Some(body.clone())).await;
        r.assert_problem(400).assert_field_error(field, code);
    }
    s.call("POST", "/api/collections", Some(&t), Some(json!([1, 2]))).await.assert_problem(400);
    // Nothing was created by the failures.
    let list = s.call("GET", "/api/collections", Some(&t), None).await;
    assert_eq!(list.body["totalItems"], 1);
}

#[tokio::test]
async fn duplicate_names_are_refused_case_insensitively() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    assert_eq!(
        s.call("POST", "/api/collections", Some(&t), Some(json!({"name": "Posts"}))).await.status,
        200
    );
    s.call("POST", "/api/collections", Some(&t), Some(json!({"name": "posts"})))
        .await
        .assert_problem(400)
        .assert_field_error("name", "validation_collection_name_exists");
    s.call("POST", "/api/collections", Some(&t), Some(json!({"name": "other"}))).await;
    s.call("PATCH", "/api/collections/other", Some(&t), Some(json!({"name": "POSTS"})))
        .await
        .assert_problem(400)
        .assert_field_error("name", "validation_collection_name_exists");
}

#[tokio::test]
async fn system_collection_cannot_be_deleted_or_renamed() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    s.call("DELETE", "/api/collections/_superusers", Some(&t), None).await.assert_problem(400);
    s.call("PATCH", "/api/collections/_superusers", Some(&t), Some(json!({"name": "admins"})))
        .await
        .assert_problem(400)
        .assert_field_error("name", "validation_system_collection");
}

async fn seeded(s: &Server, t: &str) {
    let r = s
        .call(
            "POST",
            "/api/collections",
            Some(t),
            Some(json!({"name": "items", "fields": [
                {"name": "title", "type": "text"},
                {"name": "kind", "type": "select", "values": ["a", "b"], "maxSelect": 1},
                {"name": "size", "type": "number"}
            ]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    for (title, kind, size) in [("one", "a", 1), ("two", "b", 20), ("three", "a", 300)] {
        let r = s
            .call(
                "POST",
                "/api/collections/items/records",
                Some(t),
                Some(json!({"title": title, "kind": kind, "size": size})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
}

fn field_list(s: &serde_json::Value) -> Vec<serde_json::Value> {
    s["fields"].as_array().expect("fields").clone()
}

#[tokio::test]
async fn schema_change_renames_and_drops_fields_in_existing_records() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    seeded(&s, &t).await;
    let c = s.call("GET", "/api/collections/items", Some(&t), None).await.body;
    let mut fields = field_list(&c);
    // Rename title -> name (same field id), drop size.
    for f in fields.iter_mut() {
        if f["name"] == "title" {
            f["name"] = json!("name");
        }
    }
    fields.retain(|f| f["name"] != "size");
    let r = s.call("PATCH", "/api/collections/items", Some(&t), Some(json!({"fields": fields}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let list = s.call("GET", "/api/collections/items/records?sort=name", Some(&t), None).await;
    assert_eq!(list.status, 200, "{}", list.text);
    let names: Vec<&str> =
        list.body["items"].as_array().expect("items").iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, vec!["one", "three", "two"]);
    assert!(list.body["items"][0].get("size").is_none());
    assert!(list.body["items"][0].get("title").is_none());
}

#[tokio::test]
async fn schema_change_migrates_single_select_to_multiple() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    seeded(&s, &t).await;
    let c = s.call("GET", "/api/collections/items", Some(&t), None).await.body;
    let mut fields = field_list(&c);
    for f in fields.iter_mut() {
        if f["name"] == "kind" {
            f["maxSelect"] = json!(2);
        }
    }
    let r = s.call("PATCH", "/api/collections/items", Some(&t), Some(json!({"fields": fields}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let list = s.call("GET", "/api/collections/items/records?sort=title", Some(&t), None).await;
    assert_eq!(list.body["items"][0]["kind"], json!(["a"]), "{}", list.text);
}

#[tokio::test]
async fn schema_change_that_existing_records_violate_is_refused_and_changes_nothing() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    seeded(&s, &t).await;
    let before = s.call("GET", "/api/collections/items", Some(&t), None).await.body;
    let tighten = |name: &str, key: &str, value: serde_json::Value| {
        let mut fields = field_list(&before);
        for f in fields.iter_mut() {
            if f["name"] == name {
                f[key] = value.clone();
            }
        }
        json!({"fields": fields})
    };
    let refused = [
        tighten("size", "max", json!(100)),
        tighten("title", "max", json!(3)),
        tighten("kind", "values", json!(["a"])),
        tighten("title", "type", json!("number")),
    ];
    for body in refused {
        let r = s.call("PATCH", "/api/collections/items", Some(&t), Some(body.clone())).await;
        r.assert_problem(409);
    }
    // Adding a required field to a non-empty collection is refused too.
    let mut fields = field_list(&before);
    fields.push(json!({"name": "extra", "type": "text", "required": true}));
    s.call("PATCH", "/api/collections/items", Some(&t), Some(json!({"fields": fields})))
        .await
        .assert_problem(409);
    let after = s.call("GET", "/api/collections/items", Some(&t), None).await.body;
    assert_eq!(before["fields"], after["fields"]);
    let list = s.call("GET", "/api/collections/items/records?sort=size", Some(&t), None).await;
    assert_eq!(list.body["items"][2]["size"], 300);
    assert_eq!(list.body["items"][2]["title"], "three");
}

#[tokio::test]
async fn type_change_is_allowed_on_an_empty_collection() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    let c = s
        .call(
            "POST",
            "/api/collections",
            Some(&t),
            Some(json!({"name": "e", "fields": [{"name": "a", "type": "text"}]})),
        )
        .await
        .body;
    let mut fields = field_list(&c);
    for f in fields.iter_mut() {
        if f["name"] == "a" {
            f["type"] = json!("number");
        }
    }
    let r = s.call("PATCH", "/api/collections/e", Some(&t), Some(json!({"fields": fields}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn deleting_a_collection_deletes_its_records() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    seeded(&s, &t).await;
    assert_eq!(s.call("DELETE", "/api/collections/items", Some(&t), None).await.status, 204);
    seeded(&s, &t).await;
    let list = s.call("GET", "/api/collections/items/records", Some(&t), None).await;
    assert_eq!(list.body["totalItems"], 3, "a re-created collection starts empty: {}", list.text);
}

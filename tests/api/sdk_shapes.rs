//! The endpoints and shapes the PocketBase JS SDK's services call: collection list filters
//! and sorts, scaffolds, truncate, crons as an array and `POST /api/crons/{id}`, and the
//! clear 501 of what Backbone does not serve yet.

use serde_json::{json, Value};

use crate::common::{posts_collection, Server};

fn names(body: &Value) -> Vec<String> {
    body["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["name"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn collections_list_filters_sorts_and_skips_the_total() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    for (name, kind) in [("alpha", "base"), ("beta", "auth"), ("gamma", "base")] {
        let mut body = json!({"name": name, "type": kind, "fields": []});
        if name == "gamma" {
            body["listRule"] = json!("id != ''");
        }
        let r = s.call("POST", "/api/collections", Some(&t), Some(body)).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let r = s.call("GET", "/api/collections?filter=system%3Dfalse&sort=-name", Some(&t), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(names(&r.body), ["gamma", "beta", "alpha"]);
    assert_eq!(r.body["totalItems"], 3);
    let r = s.call("GET", "/api/collections?filter=type%3D'auth'%26%26system%3Dfalse", Some(&t), None).await;
    assert_eq!(names(&r.body), ["beta"], "{}", r.text);
    let r = s.call("GET", "/api/collections?filter=listRule~'id'", Some(&t), None).await;
    assert_eq!(names(&r.body), ["gamma"], "{}", r.text);
    let r = s
        .call(
            "GET",
            "/api/collections?filter=name~'a'&sort=name&perPage=1&page=2&skipTotal=1",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(names(&r.body), ["beta"], "{}", r.text);
    assert_eq!(r.body["totalItems"], -1);
    assert_eq!(r.body["totalPages"], -1);
    for bad in ["filter=nope%3D1", "filter=name%3D", "sort=fields", "sort=-nope"] {
        s.call("GET", &format!("/api/collections?{bad}"), Some(&t), None).await.assert_problem(400);
    }
}

#[tokio::test]
async fn scaffolds_describe_a_new_collection_per_type() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    s.call("GET", "/api/collections/meta/scaffolds", None, None).await.assert_problem(401);
    let r = s.call("GET", "/api/collections/meta/scaffolds", Some(&t), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["auth"]["type"], "auth");
    assert_eq!(r.body["base"]["type"], "base");
    assert_eq!(r.body["view"]["type"], "view");
    assert_eq!(r.body["auth"]["name"], "");
    let auth_fields: Vec<&str> = r.body["auth"]["fields"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f["name"].as_str()).collect())
        .unwrap_or_default();
    for f in ["id", "password", "tokenKey", "email", "emailVisibility", "verified"] {
        assert!(auth_fields.contains(&f), "{f}: {}", r.text);
    }
    assert!(r.body["base"]["fields"].as_array().is_some_and(|a| a.iter().any(|f| f["name"] == "id")));
}

#[tokio::test]
async fn truncate_deletes_every_record_with_cascades() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    let r = s.call("POST", "/api/collections", Some(&t), Some(posts_collection("posts"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let posts_id = r.body["id"].as_str().expect("id").to_string();
    let r = s
        .call(
            "POST",
            "/api/collections",
            Some(&t),
            Some(json!({"name": "comments", "fields": [
                {"name": "post", "type": "relation", "collectionId": posts_id, "maxSelect": 1, "cascadeDelete": true}
            ]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    for i in 0..5 {
        let p = s
            .call("POST", "/api/collections/posts/records", Some(&t), Some(json!({"title": format!("p{i}")})))
            .await;
        assert_eq!(p.status, 200, "{}", p.text);
        let c = s
            .call("POST", "/api/collections/comments/records", Some(&t), Some(json!({"post": p.body["id"]})))
            .await;
        assert_eq!(c.status, 200, "{}", c.text);
    }
    s.call("DELETE", "/api/collections/posts/truncate", None, None).await.assert_problem(401);
    s.call("DELETE", "/api/collections/missing/truncate", Some(&t), None).await.assert_problem(404);
    s.call("DELETE", "/api/collections/_superusers/truncate", Some(&t), None).await.assert_problem(400);
    let r = s.call("DELETE", "/api/collections/posts/truncate", Some(&t), None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    for c in ["posts", "comments"] {
        let list = s.call("GET", &format!("/api/collections/{c}/records"), Some(&t), None).await;
        assert_eq!(list.body["totalItems"], 0, "{c}: {}", list.text);
    }
    // The collection itself stays.
    assert_eq!(s.call("GET", "/api/collections/posts", Some(&t), None).await.status, 200);
}

#[tokio::test]
async fn crons_list_as_an_array_and_run_by_post() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    let r = s.call("GET", "/api/crons", Some(&t), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let crons = r.body.as_array().expect("an array");
    let sweep = crons.iter().find(|c| c["kind"] == "files.sweep").expect("the daily sweep");
    let id = sweep["id"].as_str().expect("id");
    assert!(sweep["expression"].is_string());
    let r = s.call("POST", &format!("/api/crons/{id}"), Some(&t), None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let runs = s.call("GET", &format!("/api/crons/{id}/runs"), Some(&t), None).await;
    assert_eq!(runs.body["items"][0]["manual"], true, "{}", runs.text);
    s.call("POST", "/api/crons/missing", Some(&t), None).await.assert_problem(404);
    s.call("POST", &format!("/api/crons/{id}"), None, None).await.assert_problem(401);
}

#[tokio::test]
async fn what_is_not_served_yet_answers_a_clear_501() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    for (method, path) in [
        ("GET", "/api/backups"),
        ("POST", "/api/backups"),
        ("DELETE", "/api/backups/x.zip"),
        ("POST", "/api/backups/x.zip/restore"),
        ("POST", "/api/collections/users/auth-with-oauth2"),
        ("PUT", "/api/collections/import"),
        ("POST", "/api/settings/test/s3"),
    ] {
        let r = s.call(method, path, Some(&t), Some(json!({}))).await;
        r.assert_problem(501);
        assert!(
            r.body["title"].as_str().is_some_and(|t| t.contains("not available yet")),
            "{path}: {}",
            r.text
        );
        assert!(
            r.body["message"].as_str().is_some_and(|m| m.contains("not available yet")),
            "{path}: {}",
            r.text
        );
    }
}

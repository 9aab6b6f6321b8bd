//! Relation fields: referential integrity, cascades, expand and back-relations.

use serde_json::{json, Value};

use crate::common::Server;

struct Blog {
    s: Server,
    t: String,
}

impl Blog {
    async fn new(cascade: bool) -> Blog {
        let s = Server::start();
        let t = s.setup_superuser().await;
        let ok = |r: crate::common::Reply| assert_eq!(r.status, 200, "{}", r.text);
        ok(s.call(
            "POST",
            "/api/collections",
            Some(&t),
            Some(json!({
                "name": "authors", "viewRule": "", "listRule": "",
                "fields": [{"name": "name", "type": "text"}]
            })),
        )
        .await);
        ok(s.call("POST", "/api/collections", Some(&t), Some(json!({
            "name": "posts", "viewRule": "", "listRule": "",
            "fields": [
                {"name": "title", "type": "text"},
                {"name": "author", "type": "relation", "collectionId": "authors", "maxSelect": 1, "cascadeDelete": cascade},
                {"name": "editors", "type": "relation", "collectionId": "authors", "maxSelect": 5}
            ]
        }))).await);
        ok(s.call("POST", "/api/collections", Some(&t), Some(json!({
            "name": "comments", "viewRule": "", "listRule": "",
            "fields": [
                {"name": "text", "type": "text"},
                {"name": "post", "type": "relation", "collectionId": "posts", "maxSelect": 1, "cascadeDelete": true}
            ]
        }))).await);
        Blog { s, t }
    }

    async fn create(&self, collection: &str, body: Value) -> Value {
        let r = self
            .s
            .call("POST", &format!("/api/collections/{collection}/records"), Some(&self.t), Some(body))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body
    }

    async fn count(&self, collection: &str) -> u64 {
        self.s.call("GET", &format!("/api/collections/{collection}/records"), Some(&self.t), None).await.body
            ["totalItems"]
            .as_u64()
            .expect("total")
    }
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

#[tokio::test]
async fn relation_ids_must_exist_and_have_the_right_shape() {
    let b = Blog::new(false).await;
    let ada = b.create("authors", json!({"name": "Ada"})).await;
    let post = b.create("posts", json!({"title": "p", "author": id(&ada), "editors": [id(&ada)]})).await;
    assert_eq!(post["author"], id(&ada));
    assert_eq!(post["editors"], json!([id(&ada)]));
    let r =
        b.s.call(
            "POST",
            "/api/collections/posts/records",
            Some(&b.t),
            Some(json!({"title": "x", "author": "zzzzzzzzzzzzzzz"})),
        )
        .await;
    r.assert_problem(400).assert_field_error("author", "validation_missing_rel_records");
    let r =
        b.s.call(
            "POST",
            "/api/collections/posts/records",
            Some(&b.t),
            Some(json!({"title": "x", "author": "not an id"})),
        )
        .await;
    r.assert_problem(400).assert_field_error("author", "validation_invalid_value");
    let r =
        b.s.call(
            "POST",
            "/api/collections/posts/records",
            Some(&b.t),
            Some(json!({"title": "x", "author": [id(&ada), "zzzzzzzzzzzzzzz"]})),
        )
        .await;
    r.assert_problem(400).assert_field_error("author", "validation_too_many_values");
    assert_eq!(b.count("posts").await, 1);
}

#[tokio::test]
async fn relation_to_a_missing_collection_is_refused() {
    let b = Blog::new(false).await;
    let r =
        b.s.call(
            "POST",
            "/api/collections",
            Some(&b.t),
            Some(json!({"name": "x", "fields": [{"name": "r", "type": "relation", "collectionId": "nope"}]})),
        )
        .await;
    r.assert_problem(400).assert_field_error("fields.0.collectionId", "validation_missing_collection");
    // A collection that others point at cannot be deleted.
    b.s.call("DELETE", "/api/collections/authors", Some(&b.t), None).await.assert_problem(400);
}

#[tokio::test]
async fn deleting_a_referenced_record_is_refused_without_cascade() {
    let b = Blog::new(false).await;
    let ada = b.create("authors", json!({"name": "Ada"})).await;
    b.create("posts", json!({"title": "p", "author": id(&ada)})).await;
    let r =
        b.s.call("DELETE", &format!("/api/collections/authors/records/{}", id(&ada)), Some(&b.t), None).await;
    r.assert_problem(400);
    assert!(r.body["detail"].as_str().unwrap_or_default().contains("posts.author"), "{}", r.text);
    assert_eq!(b.count("authors").await, 1);
}

#[tokio::test]
async fn cascade_delete_removes_referencing_records_recursively() {
    let b = Blog::new(true).await;
    let ada = b.create("authors", json!({"name": "Ada"})).await;
    let post = b.create("posts", json!({"title": "p", "author": id(&ada)})).await;
    b.create("comments", json!({"text": "c1", "post": id(&post)})).await;
    b.create("comments", json!({"text": "c2", "post": id(&post)})).await;
    let r =
        b.s.call("DELETE", &format!("/api/collections/authors/records/{}", id(&ada)), Some(&b.t), None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!((b.count("authors").await, b.count("posts").await, b.count("comments").await), (0, 0, 0));
}

#[tokio::test]
async fn updating_a_relation_moves_its_reference() {
    let b = Blog::new(false).await;
    let ada = b.create("authors", json!({"name": "Ada"})).await;
    let bob = b.create("authors", json!({"name": "Bob"})).await;
    let post = b.create("posts", json!({"title": "p", "author": id(&ada)})).await;
    let r =
        b.s.call(
            "PATCH",
            &format!("/api/collections/posts/records/{}", id(&post)),
            Some(&b.t),
            Some(json!({"author": id(&bob)})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Ada is no longer referenced; Bob is.
    assert_eq!(
        b.s.call("DELETE", &format!("/api/collections/authors/records/{}", id(&ada)), Some(&b.t), None)
            .await
            .status,
        204
    );
    b.s.call("DELETE", &format!("/api/collections/authors/records/{}", id(&bob)), Some(&b.t), None)
        .await
        .assert_problem(400);
}

#[tokio::test]
async fn expand_embeds_relations_nested_and_back_relations() {
    let b = Blog::new(false).await;
    let ada = b.create("authors", json!({"name": "Ada"})).await;
    let bob = b.create("authors", json!({"name": "Bob"})).await;
    let post =
        b.create("posts", json!({"title": "p", "author": id(&ada), "editors": [id(&bob), id(&ada)]})).await;
    let c1 = b.create("comments", json!({"text": "c1", "post": id(&post)})).await;
    b.create("comments", json!({"text": "c2", "post": id(&post)})).await;

    let r =
        b.s.call(
            "GET",
            &format!("/api/collections/posts/records/{}?expand=author,editors", id(&post)),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["expand"]["author"]["name"], "Ada");
    let editors: Vec<&str> = r.body["expand"]["editors"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(editors, vec!["Bob", "Ada"], "in the stored order");

    let r = b
        .s
        .call("GET", &format!("/api/collections/comments/records/{}?expand=post.author", id(&c1)), None, None)
        .await;
    assert_eq!(r.body["expand"]["post"]["expand"]["author"]["name"], "Ada", "{}", r.text);

    let r =
        b.s.call(
            "GET",
            &format!("/api/collections/posts/records?expand={}", "comments_via_post.post.author"),
            None,
            None,
        )
        .await;
    let comments =
        r.body["items"][0]["expand"]["comments_via_post"].as_array().expect("back-relation").clone();
    let texts: Vec<&str> = comments.iter().filter_map(|c| c["text"].as_str()).collect();
    assert_eq!(texts, vec!["c1", "c2"]);
    assert_eq!(comments[0]["expand"]["post"]["expand"]["author"]["name"], "Ada");

    // The create response can be expanded too.
    let r =
        b.s.call(
            "POST",
            "/api/collections/comments/records?expand=post",
            Some(&b.t),
            Some(json!({"text": "c3", "post": id(&post)})),
        )
        .await;
    assert_eq!(r.body["expand"]["post"]["title"], "p", "{}", r.text);
}

#[tokio::test]
async fn expand_hides_records_the_caller_cannot_view_and_rejects_bad_paths() {
    let b = Blog::new(false).await;
    b.s.call("PATCH", "/api/collections/authors", Some(&b.t), Some(json!({"viewRule": "name = 'Ada'"})))
        .await;
    let ada = b.create("authors", json!({"name": "Ada"})).await;
    let eve = b.create("authors", json!({"name": "Eve"})).await;
    let post =
        b.create("posts", json!({"title": "p", "author": id(&eve), "editors": [id(&ada), id(&eve)]})).await;
    let r =
        b.s.call(
            "GET",
            &format!("/api/collections/posts/records/{}?expand=author,editors", id(&post)),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body["expand"].get("author").is_none(), "Eve is not viewable: {}", r.text);
    assert_eq!(r.body["expand"]["editors"].as_array().expect("editors").len(), 1);
    for bad in ["title", "nope", "author.nope", "a.b.c.d.e.f.g", "x_via_y"] {
        b.s.call("GET", &format!("/api/collections/posts/records?expand={bad}"), None, None)
            .await
            .assert_problem(400);
    }
    // A bad expand on create fails before anything is saved.
    b.s.call("POST", "/api/collections/posts/records?expand=nope", Some(&b.t), Some(json!({"title": "q"})))
        .await
        .assert_problem(400);
    assert_eq!(b.count("posts").await, 1);
}

#[tokio::test]
async fn removing_a_relation_field_drops_its_references() {
    let b = Blog::new(false).await;
    let ada = b.create("authors", json!({"name": "Ada"})).await;
    b.create("posts", json!({"title": "p", "author": id(&ada)})).await;
    let c = b.s.call("GET", "/api/collections/posts", Some(&b.t), None).await.body;
    let fields: Vec<Value> =
        c["fields"].as_array().expect("fields").iter().filter(|f| f["name"] != "author").cloned().collect();
    let r = b.s.call("PATCH", "/api/collections/posts", Some(&b.t), Some(json!({"fields": fields}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        b.s.call("DELETE", &format!("/api/collections/authors/records/{}", id(&ada)), Some(&b.t), None)
            .await
            .status,
        204
    );
}

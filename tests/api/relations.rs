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

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn titles(b: &Blog, collection: &str, field: &str, filter: &str, token: Option<&str>) -> Vec<String> {
    let r =
        b.s.call(
            "GET",
            &format!("/api/collections/{collection}/records?sort={field}&filter={}", enc(filter)),
            token,
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{filter}: {}", r.text);
    r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i[field].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn filters_follow_relations_back_relations_and_joins() {
    let b = Blog::new(false).await;
    let ada = b.create("authors", json!({"name": "Ada"})).await;
    let bob = b.create("authors", json!({"name": "Bob"})).await;
    let p1 = b.create("posts", json!({"title": "p1", "author": id(&ada), "editors": [id(&bob)]})).await;
    let p2 =
        b.create("posts", json!({"title": "p2", "author": id(&bob), "editors": [id(&ada), id(&bob)]})).await;
    b.create("comments", json!({"text": "nice", "post": id(&p1)})).await;
    b.create("comments", json!({"text": "meh", "post": id(&p2)})).await;
    b.create("comments", json!({"text": "great", "post": id(&p2)})).await;
    let t = Some(b.t.as_str());
    assert_eq!(titles(&b, "posts", "title", "author.name = 'Ada'", t).await, vec!["p1"]);
    assert_eq!(titles(&b, "posts", "title", "editors.name ?= 'Ada'", t).await, vec!["p2"]);
    assert_eq!(
        titles(&b, "posts", "title", "editors.name = 'Bob'", t).await,
        vec!["p1"],
        "all editors must match"
    );
    assert_eq!(titles(&b, "comments", "text", "post.author.name = 'Bob'", t).await, vec!["great", "meh"]);
    assert_eq!(titles(&b, "posts", "title", "comments_via_post.text ?~ 'grea'", t).await, vec!["p2"]);
    assert_eq!(titles(&b, "posts", "title", "comments_via_post:length > 1", t).await, vec!["p2"]);
    assert_eq!(titles(&b, "authors", "name", "posts_via_author.title ?= 'p2'", t).await, vec!["Bob"]);
    // A join: posts whose author's name appears as some comment's text (none), and the
    // same join correlated on one row.
    assert_eq!(
        titles(
            &b,
            "posts",
            "title",
            "@collection.comments.text = 'nice' && @collection.comments.post = id",
            t
        )
        .await,
        vec!["p1"]
    );
    assert!(titles(
        &b,
        "posts",
        "title",
        "@collection.comments.text = 'nice' && @collection.comments.post = id && title = 'p2'",
        t
    )
    .await
    .is_empty());
    for bad in ["author.nope = 1", "nope_via_post.x = 1", "@collection.nope.x = 1", "title.x = 1"] {
        b.s.call("GET", &format!("/api/collections/posts/records?filter={}", enc(bad)), t, None)
            .await
            .assert_problem(400);
    }
}

#[tokio::test]
async fn rules_can_follow_relations() {
    let b = Blog::new(false).await;
    // Anyone may list comments, but only those on posts by Ada.
    b.s.call(
        "PATCH",
        "/api/collections/comments",
        Some(&b.t),
        Some(json!({"listRule": "post.author.name = 'Ada'"})),
    )
    .await;
    let ada = b.create("authors", json!({"name": "Ada"})).await;
    let bob = b.create("authors", json!({"name": "Bob"})).await;
    let p1 = b.create("posts", json!({"title": "p1", "author": id(&ada)})).await;
    let p2 = b.create("posts", json!({"title": "p2", "author": id(&bob)})).await;
    b.create("comments", json!({"text": "on ada", "post": id(&p1)})).await;
    b.create("comments", json!({"text": "on bob", "post": id(&p2)})).await;
    assert_eq!(titles(&b, "comments", "text", "text != ''", None).await, vec!["on ada"]);
    // A create rule that follows the relation in the new record.
    b.s.call(
        "PATCH",
        "/api/collections/comments",
        Some(&b.t),
        Some(json!({"createRule": "post.title = 'p1'"})),
    )
    .await;
    let ok = b
        .s
        .call("POST", "/api/collections/comments/records", None, Some(json!({"text": "x", "post": id(&p1)})))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    b.s.call("POST", "/api/collections/comments/records", None, Some(json!({"text": "y", "post": id(&p2)})))
        .await
        .assert_problem(400);
}

/// A chat: `messages` may be created only by a member of the message's room, as itself. The
/// two `@collection.room_members` terms name the same joined row (being a member of some
/// other room is not enough), whether the join is narrowed through the relation reverse
/// index (`?=`/`=` terms on relation fields) or scanned (no such term).
#[tokio::test]
async fn a_membership_rule_joins_one_row_and_follows_membership_changes() {
    use crate::users::{sign_in, signup, users_collection, PASSWORD};
    let s = Server::start();
    let su = s.setup_superuser().await;
    let users = users_collection(&s, &su, json!({})).await;
    let create = |body: Value| {
        let s = &s;
        let su = su.clone();
        async move {
            let r = s.call("POST", "/api/collections", Some(&su), Some(body)).await;
            assert_eq!(r.status, 200, "{}", r.text);
            r.body
        }
    };
    let rooms = create(json!({"name": "rooms", "fields": [{"name": "name", "type": "text"}]})).await;
    let rel = |name: &str, target: &Value| json!({"name": name, "type": "relation", "collectionId": target["id"], "maxSelect": 1, "required": true});
    create(json!({"name": "room_members", "fields": [rel("room", &rooms), rel("user", &users), {"name": "muted", "type": "bool"}]}))
        .await;
    let member = "@collection.room_members.room ?= room && @collection.room_members.user ?= @request.auth.id";
    create(json!({
        "name": "messages",
        "createRule": format!("@request.auth.id != '' && author = @request.auth.id && {member}"),
        "fields": [rel("room", &rooms), rel("author", &users), {"name": "text", "type": "text"}]
    }))
    .await;
    let record = |collection: &'static str, body: Value| {
        let s = &s;
        let su = su.clone();
        async move {
            let r = s
                .call("POST", &format!("/api/collections/{collection}/records"), Some(&su), Some(body))
                .await;
            assert_eq!(r.status, 200, "{}", r.text);
            id(&r.body)
        }
    };
    let ann = id(&signup(&s, "ann@example.com").await);
    let ben = id(&signup(&s, "ben@example.com").await);
    let (r1, r2) =
        (record("rooms", json!({"name": "one"})).await, record("rooms", json!({"name": "two"})).await);
    let ann_in_r1 = record("room_members", json!({"room": r1, "user": ann})).await;
    record("room_members", json!({"room": r2, "user": ben})).await;
    let ann_token = sign_in(&s, "ann@example.com", PASSWORD).await;
    let post = |room: &str, author: &str, token: Option<String>| {
        let s = &s;
        let body = json!({"room": room, "author": author, "text": "hi"});
        async move {
            s.call("POST", "/api/collections/messages/records", token.as_deref(), Some(body)).await.status
        }
    };
    assert_eq!(post(&r1, &ann, Some(ann_token.clone())).await, 200, "a member posts into her room");
    assert_eq!(post(&r2, &ann, Some(ann_token.clone())).await, 400, "not a member of r2 (ben is)");
    assert_eq!(post(&r1, &ben, Some(ann_token.clone())).await, 400, "as someone else");
    assert_eq!(post(&r1, &ann, None).await, 400, "anonymous");

    // Membership changes take effect at once (the reverse index follows creates and deletes).
    record("room_members", json!({"room": r2, "user": ann})).await;
    assert_eq!(post(&r2, &ann, Some(ann_token.clone())).await, 200, "joined r2");
    let del = s
        .call("DELETE", &format!("/api/collections/room_members/records/{ann_in_r1}"), Some(&su), None)
        .await;
    assert_eq!(del.status, 204, "{}", del.text);
    assert_eq!(post(&r1, &ann, Some(ann_token.clone())).await, 400, "left r1");

    // An extra term on a non-relation field applies to the same row: ann is in r2 (unmuted)
    // and ben's row in r1 is muted, but no row is both hers and muted.
    let muted = format!("{member} && @collection.room_members.muted = true");
    let r = s.call("PATCH", "/api/collections/messages", Some(&su), Some(json!({"createRule": muted}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    record("room_members", json!({"room": r1, "user": ben, "muted": true})).await;
    assert_eq!(post(&r2, &ann, Some(ann_token.clone())).await, 400, "no row is hers and muted");
    // No term on a relation field itself (a path through it is not one): the join is scanned.
    let scanned = "@collection.room_members.room.name = 'one' && @collection.room_members.muted = true";
    let r =
        s.call("PATCH", "/api/collections/messages", Some(&su), Some(json!({"createRule": scanned}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(post(&r2, &ann, Some(ann_token.clone())).await, 200, "r1 has a muted member (ben)");
    let scanned = "@collection.room_members.room.name = 'two' && @collection.room_members.muted = true";
    let r =
        s.call("PATCH", "/api/collections/messages", Some(&su), Some(json!({"createRule": scanned}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(post(&r2, &ann, Some(ann_token)).await, 400, "r2 has no muted member");
}

#[tokio::test]
async fn sort_follows_single_relations_and_fields_reach_into_expand() {
    let b = Blog::new(false).await;
    let zed = b.create("authors", json!({"name": "Zed"})).await;
    let amy = b.create("authors", json!({"name": "Amy"})).await;
    let kim = b.create("authors", json!({"name": "Kim"})).await;
    let p1 = b.create("posts", json!({"title": "one", "author": id(&zed), "editors": [id(&amy)]})).await;
    let p2 = b.create("posts", json!({"title": "two", "author": id(&amy)})).await;
    let p3 = b.create("posts", json!({"title": "three", "author": id(&kim)})).await;
    let p4 = b.create("posts", json!({"title": "four"})).await;
    b.create("comments", json!({"text": "<p>a <b>long</b> comment here</p>", "post": id(&p2)})).await;
    b.create("comments", json!({"text": "c2", "post": id(&p2)})).await;
    let c3 = b.create("comments", json!({"text": "c3", "post": id(&p1)})).await;
    let list = |q: String| {
        let b = &b;
        async move { b.s.call("GET", &format!("/api/collections/posts/records?{q}"), None, None).await }
    };
    let titles = |r: &crate::common::Reply| -> Vec<String> {
        r.body["items"]
            .as_array()
            .map(|a| a.iter().map(|i| i["title"].as_str().unwrap_or_default().to_string()).collect())
            .unwrap_or_default()
    };
    // An empty relation sorts as null: first ascending, last descending.
    let r = list("sort=author.name".into()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(titles(&r), ["four", "two", "three", "one"]);
    let r = list("sort=-author.name,title".into()).await;
    assert_eq!(titles(&r), ["one", "three", "two", "four"]);
    // Two hops, and cursor paging over a relation sort.
    let r =
        b.s.call("GET", "/api/collections/comments/records?sort=-post.author.name,text", None, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let texts: Vec<&str> = r.body["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["text"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(texts[0], "c3");
    let mut cursor = String::new();
    let mut walked = Vec::new();
    loop {
        let r = list(format!("sort=author.name&perPage=3&cursor={}", enc(&cursor))).await;
        assert_eq!(r.status, 200, "{}", r.text);
        walked.extend(titles(&r));
        match r.body["nextCursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    assert_eq!(walked, ["four", "two", "three", "one"]);
    // Paths that can reach several records, or lead nowhere, are 400s.
    for bad in ["editors.name", "comments_via_post.text", "author.nope", "title.x"] {
        let r = list(format!("sort={bad}")).await;
        r.assert_problem(400);
    }

    // fields reaches into expand (objects and lists), with `*` and excerpts at any depth.
    let q = format!(
        "filter={}&expand=author,comments_via_post&fields={}",
        enc(&format!("id = '{}'", id(&p2))),
        enc("id,title,expand.author.name,expand.comments_via_post.text:excerpt(6,true)")
    );
    let r = list(q).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let item = &r.body["items"][0];
    let mut keys: Vec<String> = item.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    keys.sort();
    assert_eq!(keys, ["expand", "id", "title"]);
    assert_eq!(item["expand"]["author"], json!({"name": "Amy"}));
    assert_eq!(item["expand"]["comments_via_post"], json!([{"text": "a long..."}, {"text": "c2"}]));
    let r =
        b.s.call(
            "GET",
            &format!(
                "/api/collections/posts/records/{}?expand=author&fields={}",
                id(&p1),
                enc("title,expand.author.*")
            ),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["title"], "one");
    assert_eq!(r.body["expand"]["author"]["name"], "Zed");
    assert_eq!(r.body["expand"]["author"]["id"], id(&zed));
    assert!(r.body.get("id").is_none(), "{}", r.text);
    // `*` keeps the rest of a level; a whole key wins over a path into it.
    let r =
        b.s.call(
            "GET",
            &format!(
                "/api/collections/comments/records/{}?expand=post&fields={}",
                id(&c3),
                enc("*,expand.post,expand.post.title")
            ),
            None,
            None,
        )
        .await;
    assert_eq!(r.body["text"], "c3");
    assert_eq!(r.body["expand"]["post"]["id"], id(&p1), "{}", r.text);
    let _ = (&p3, &p4);
    for bad in ["expand..name", "*.id", "text:excerpt(0)", "expand.*:excerpt(3)"] {
        let r = list(format!("fields={}", enc(bad))).await;
        r.assert_problem(400);
    }
}

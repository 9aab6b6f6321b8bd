//! Realtime (`/api/realtime`): PocketBase's SSE protocol, rules at send time, hidden fields,
//! options, ordering, resume with Last-Event-ID, resets, slow clients, bad subscriptions.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::sse::Sse;
use crate::common::{Server, StartOptions};

async fn collection(s: &Server, t: &str, body: Value) {
    let r = s.call("POST", "/api/collections", Some(t), Some(body)).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

async fn create(s: &Server, t: Option<&str>, c: &str, body: Value) -> Value {
    let r = s.call("POST", &format!("/api/collections/{c}/records"), t, Some(body)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

const QUIET: Duration = Duration::from_millis(400);
const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_collection_subscriber_gets_create_update_and_delete_in_commit_order() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    collection(
        &s,
        &t,
        json!({"name": "notes", "listRule": "", "viewRule": "", "createRule": "", "fields": [
        {"name": "text", "type": "text"}, {"name": "secret", "type": "text", "hidden": true}]}),
    )
    .await;
    let mut sse = Sse::connect(&s, None).await;
    let r = sse.subscribe(&s, None, &["notes/*"]).await;
    assert_eq!(r.status, 204, "{}", r.text);

    let a = create(&s, None, "notes", json!({"text": "one", "secret": "s"})).await;
    let id = a["id"].as_str().expect("id");
    let r = s
        .call(
            "PATCH",
            &format!("/api/collections/notes/records/{id}"),
            Some(&t),
            Some(json!({"text": "two"})),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = s.call("DELETE", &format!("/api/collections/notes/records/{id}"), Some(&t), None).await;
    assert_eq!(r.status, 204);

    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(sse.next(WAIT).await.expect("event"));
    }
    let actions: Vec<&str> = got.iter().map(|e| e.data["action"].as_str().unwrap_or("")).collect();
    assert_eq!(actions, ["create", "update", "delete"]);
    assert!(got.iter().all(|e| e.event == "notes/*"), "the event name is the subscription: {got:?}");
    assert_eq!(got[0].data["record"]["text"], "one");
    assert_eq!(got[1].data["record"]["text"], "two");
    assert_eq!(got[2].data["record"]["id"], id);
    assert!(got.iter().all(|e| e.data["record"].get("secret").is_none()), "hidden fields are never sent");
    let ids: Vec<u64> = got.iter().map(|e| e.id.parse().expect("numeric event id")).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow with commit order: {ids:?}");
    assert!(sse.next(QUIET).await.is_none(), "nothing else");
}

#[tokio::test]
async fn rules_decide_at_send_time_who_receives_what() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    collection(&s, &t, json!({"name": "members", "type": "auth", "createRule": "", "fields": []})).await;
    collection(&s, &t, json!({"name": "diary", "listRule": "owner = @request.auth.id", "viewRule": "owner = @request.auth.id",
        "fields": [{"name": "text", "type": "text"},
                   {"name": "owner", "type": "relation", "collectionId": "members", "maxSelect": 1}]}))
    .await;
    let mut tokens = Vec::new();
    let mut ids = Vec::new();
    for who in ["ann", "bob"] {
        let email = format!("{who}@example.com");
        let user = create(
            &s,
            None,
            "members",
            json!({"email": email, "password": "password-123", "passwordConfirm": "password-123"}),
        )
        .await;
        ids.push(user["id"].as_str().expect("id").to_string());
        let r = s
            .call(
                "POST",
                "/api/collections/members/auth-with-password",
                None,
                Some(json!({"identity": email, "password": "password-123"})),
            )
            .await;
        tokens.push(r.body["token"].as_str().expect("token").to_string());
    }
    let mut ann = Sse::connect(&s, None).await;
    assert_eq!(ann.subscribe(&s, Some(&tokens[0]), &["diary"]).await.status, 204);
    let mut anon = Sse::connect(&s, None).await;
    assert_eq!(anon.subscribe(&s, None, &["diary/*"]).await.status, 204);

    create(&s, Some(&t), "diary", json!({"text": "bob's", "owner": ids[1]})).await;
    let mine = create(&s, Some(&t), "diary", json!({"text": "ann's", "owner": ids[0]})).await;
    let e = ann.next(WAIT).await.expect("ann's own record");
    assert_eq!(e.data["record"]["id"], mine["id"]);
    assert_eq!(e.event, "diary");
    assert!(ann.next(QUIET).await.is_none(), "bob's record is never sent to ann");
    assert!(anon.next(QUIET).await.is_none(), "the rule hides every record from anonymous callers");

    // The same client cannot be taken over with other credentials.
    let r = ann.subscribe(&s, Some(&tokens[1]), &["diary"]).await;
    r.assert_problem(403);
}

#[tokio::test]
async fn record_topics_options_batches_and_cascades() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    collection(&s, &t, json!({"name": "authors", "listRule": "", "viewRule": "", "fields": [{"name": "name", "type": "text"}]})).await;
    collection(&s, &t, json!({"name": "books", "listRule": "", "viewRule": "", "fields": [
        {"name": "title", "type": "text"}, {"name": "pages", "type": "number"},
        {"name": "author", "type": "relation", "collectionId": "authors", "maxSelect": 1, "cascadeDelete": true}]}))
    .await;
    let author = create(&s, Some(&t), "authors", json!({"name": "Le Guin"})).await;
    let author_id = author["id"].as_str().expect("id");
    let book = create(&s, Some(&t), "books", json!({"title": "Earthsea", "author": author_id})).await;
    let book_id = book["id"].as_str().expect("id");

    let options = r#"{"query":{"expand":"author","fields":"id,title,expand.author.name"}}"#;
    let encoded: String = url::form_urlencoded::byte_serialize(options.as_bytes()).collect();
    let with_options = format!("books/*?options={encoded}");
    let one = format!("books/{book_id}");
    let filtered = format!(
        "books?options={}",
        url::form_urlencoded::byte_serialize(br#"{"query":{"filter":"pages > 100"}}"#).collect::<String>()
    );
    let mut sse = Sse::connect(&s, None).await;
    assert_eq!(sse.subscribe(&s, None, &[&with_options, &one, &filtered]).await.status, 204);

    // A batch: two creates and an update of the watched book, all or nothing.
    let r = s.call("POST", "/api/batch", Some(&t), Some(json!({"requests": [
        {"method": "POST", "url": "/api/collections/books/records", "body": {"title": "Tehanu", "pages": 250, "author": author_id}},
        {"method": "POST", "url": "/api/collections/books/records", "body": {"title": "Short", "pages": 10}},
        {"method": "PATCH", "url": format!("/api/collections/books/records/{book_id}"), "body": {"pages": 200}}
    ]}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let events = sse.drain(QUIET * 2).await;
    let names: Vec<(&str, &str)> =
        events.iter().map(|e| (e.event.as_str(), e.data["action"].as_str().unwrap_or(""))).collect();
    assert_eq!(
        names,
        [
            (with_options.as_str(), "create"),
            (filtered.as_str(), "create"),
            (with_options.as_str(), "create"),
            (with_options.as_str(), "update"),
            (one.as_str(), "update"),
            (filtered.as_str(), "update"),
        ],
        "{events:#?}"
    );
    let shaped = &events[0].data["record"];
    assert_eq!(
        shaped,
        &json!({"id": shaped["id"], "title": "Tehanu", "expand": {"author": {"name": "Le Guin"}}})
    );
    assert_eq!(events[4].data["record"]["pages"], 200, "the record topic sees the whole record");

    // Deleting the author cascades to its books: one delete event per record.
    let r = s.call("DELETE", &format!("/api/collections/authors/records/{author_id}"), Some(&t), None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let events = sse.drain(QUIET * 2).await;
    let deleted: Vec<&str> = events
        .iter()
        .filter(|e| e.event == with_options && e.data["action"] == "delete")
        .map(|e| e.data["record"]["title"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(deleted.len(), 2, "{events:#?}");
    assert!(events.iter().any(|e| e.event == one && e.data["action"] == "delete"));
}

#[tokio::test]
async fn a_reconnecting_client_gets_what_it_missed_in_order_or_a_reset() {
    let s = Server::start_with(StartOptions {
        env: vec![("BACKBONE_REALTIME_RETENTION_EVENTS".into(), "5".into())],
        ..StartOptions::default()
    });
    let t = s.setup_superuser().await;
    collection(
        &s,
        &t,
        json!({"name": "feed", "listRule": "", "viewRule": "", "fields": [{"name": "n", "type": "number"}]}),
    )
    .await;
    let mut sse = Sse::connect(&s, None).await;
    assert_eq!(sse.subscribe(&s, None, &["feed"]).await.status, 204);
    create(&s, Some(&t), "feed", json!({"n": 0})).await;
    let first = sse.next(WAIT).await.expect("first event");
    drop(sse);

    for n in 1..=3 {
        create(&s, Some(&t), "feed", json!({"n": n})).await;
    }
    let mut back = Sse::connect(&s, Some(&first.id)).await;
    assert_eq!(back.subscribe(&s, None, &["feed"]).await.status, 204);
    let missed = back.drain(QUIET * 2).await;
    let ns: Vec<i64> = missed.iter().map(|e| e.data["record"]["n"].as_i64().unwrap_or(-1)).collect();
    assert_eq!(ns, [1, 2, 3], "{missed:#?}");
    // Then it is live again.
    create(&s, Some(&t), "feed", json!({"n": 4})).await;
    let live = back.next(WAIT).await.expect("live event");
    assert_eq!(live.data["record"]["n"], 4);
    drop(back);

    // Far more changes than the feed keeps: the old position is gone, and the client is told.
    for n in 5..20 {
        create(&s, Some(&t), "feed", json!({"n": n})).await;
    }
    // The pruner runs every 10 s.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let mut late = Sse::connect(&s, Some(&live.id)).await;
    assert_eq!(late.subscribe(&s, None, &["feed"]).await.status, 204);
    let e = late.next(WAIT).await.expect("reset");
    assert_eq!(e.event, "PB_RESET", "{e:?}");
    assert!(e.data["reason"].as_str().is_some_and(|r| r.contains("no longer kept")), "{e:?}");
    assert!(late.next(QUIET).await.is_none(), "no stale events after the reset");
    create(&s, Some(&t), "feed", json!({"n": 99})).await;
    assert_eq!(late.next(WAIT).await.expect("live").data["record"]["n"], 99);
}

#[tokio::test]
async fn a_client_that_does_not_read_is_disconnected_with_the_reason() {
    let s = Server::start_with(StartOptions {
        env: vec![("BACKBONE_REALTIME_CLIENT_QUEUE".into(), "4".into())],
        ..StartOptions::default()
    });
    let t = s.setup_superuser().await;
    collection(&s, &t, json!({"name": "big", "listRule": "", "viewRule": "", "fields": [{"name": "text", "type": "text", "max": 100000}]})).await;
    let mut sse = Sse::connect(&s, None).await;
    assert_eq!(sse.subscribe(&s, None, &["big"]).await.status, 204);
    // ~16 MB of events while the client reads nothing: socket buffers fill, then its queue.
    let text = "x".repeat(80_000);
    for _ in 0..20 {
        let requests: Vec<Value> = (0..10)
            .map(|_| json!({"method": "POST", "url": "/api/collections/big/records", "body": {"text": text}}))
            .collect();
        let r = s.call("POST", "/api/batch", Some(&t), Some(json!({"requests": requests}))).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut last = None;
    while let Some(e) = sse.next(WAIT).await {
        last = Some(e);
    }
    let last = last.expect("events");
    assert_eq!(last.event, "PB_DISCONNECT", "the stream ends with the reason");
    assert!(last.data["reason"].as_str().is_some_and(|r| r.contains("did not keep up")), "{last:?}");
    let r = s.call("GET", "/metrics", Some(&t), None).await;
    assert!(r.text.contains("backbone_realtime_slow_disconnects_total 1"), "{}", r.text);
}

#[tokio::test]
async fn bad_subscriptions_are_refused_with_the_reason() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    collection(
        &s,
        &t,
        json!({"name": "posts", "listRule": "", "fields": [{"name": "title", "type": "text"}]}),
    )
    .await;
    let sse = Sse::connect(&s, None).await;
    let post = |body: Value| s.call("POST", "/api/realtime", None, Some(body));
    post(json!({"clientId": "nope", "subscriptions": []})).await.assert_problem(404);
    post(json!({"subscriptions": []})).await.assert_problem(400);
    post(json!({"clientId": sse.client_id, "subscriptions": "posts"})).await.assert_problem(400);
    post(json!({"clientId": sse.client_id, "subscriptions": ["posts"], "extra": 1}))
        .await
        .assert_problem(400);
    let r = sse.subscribe(&s, None, &["posts/a/b"]).await;
    r.assert_problem(400);
    assert!(r.text.contains("is not a topic"), "{}", r.text);
    let bad_filter = format!(
        "posts?options={}",
        url::form_urlencoded::byte_serialize(br#"{"query":{"filter":"nosuch = 1"}}"#).collect::<String>()
    );
    let r = sse.subscribe(&s, None, &[&bad_filter]).await;
    r.assert_problem(400);
    assert!(r.text.contains("filter"), "{}", r.text);
    sse.subscribe(&s, None, &["jobs"]).await.assert_problem(403);
    let too_many: Vec<String> = (0..1001).map(|i| format!("posts/{i}")).collect();
    let r = post(json!({"clientId": sse.client_id, "subscriptions": too_many})).await;
    r.assert_problem(400);
    let r = s.raw("POST", "/api/realtime", None, Some("text/plain"), b"x".to_vec()).await;
    r.assert_problem(415);
    assert_eq!(
        sse.subscribe(&s, Some(&t), &["jobs", "posts"]).await.status,
        204,
        "superusers may watch jobs"
    );
}

#[tokio::test]
async fn superusers_follow_jobs_live() {
    let s = Server::start_with(StartOptions {
        env: vec![("BACKBONE_JOBS_TEST_KINDS".into(), "true".into())],
        ..StartOptions::default()
    });
    let t = s.setup_superuser().await;
    let mut all = Sse::connect(&s, None).await;
    assert_eq!(all.subscribe(&s, Some(&t), &["jobs"]).await.status, 204);
    let r =
        s.call("POST", "/api/jobs", Some(&t), Some(json!({"kind": "sleep", "payload": {"ms": 300}}))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.body["id"].as_str().expect("id").to_string();
    let mut one = Sse::connect(&s, None).await;
    assert_eq!(one.subscribe(&s, Some(&t), &[&format!("jobs/{id}")]).await.status, 204);

    let mut seen = Vec::new();
    while let Some(e) = all.next(WAIT).await {
        assert_eq!(e.event, "jobs");
        if e.data["record"]["id"] != id.as_str() {
            continue; // a job of the server's own
        }
        let state = e.data["record"]["state"].as_str().unwrap_or("").to_string();
        seen.push((e.data["action"].as_str().unwrap_or("").to_string(), state.clone()));
        if state == "completed" {
            break;
        }
    }
    assert_eq!(seen.first(), Some(&("create".to_string(), "available".to_string())), "{seen:?}");
    assert!(seen.contains(&("update".to_string(), "running".to_string())), "{seen:?}");
    assert!(seen.iter().any(|(a, _)| a == "progress"), "progress reports arrive: {seen:?}");
    assert_eq!(seen.last().map(|(_, s)| s.as_str()), Some("completed"), "{seen:?}");
    // The job topic sees the same job's changes after it subscribed.
    let mine = one.drain(QUIET).await;
    assert!(mine.iter().any(|e| e.data["record"]["state"] == "completed"), "{mine:?}");
    assert!(mine.iter().all(|e| e.event == format!("jobs/{id}")), "{mine:?}");
}

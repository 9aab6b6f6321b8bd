//! Full-text search: freshness after writes, typo/prefix/phrase/field matching, highlights,
//! facets, the filter language, the list rule (results, counts and facets), cross-collection
//! search, reindex jobs, bad queries, metrics.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::users::{sign_in, signup, users_collection, PASSWORD};
use crate::common::Server;

/// A searchable `articles` collection (English stemming, title boosted).
pub fn articles(list_rule: Value) -> Value {
    json!({
        "name": "articles",
        "listRule": list_rule,
        "viewRule": "",
        "createRule": "",
        "fields": [
            {"name": "title", "type": "text"},
            {"name": "body", "type": "editor"},
            {"name": "status", "type": "select", "values": ["draft", "live"], "maxSelect": 1},
            {"name": "tags", "type": "select", "values": ["rust", "db", "web"], "maxSelect": 3},
            {"name": "views", "type": "number"},
            {"name": "secret", "type": "text", "hidden": true}
        ],
        "search": {
            "enabled": true,
            "language": "english",
            "fields": [{"name": "title", "boost": 3.0}, {"name": "body"}, {"name": "tags"}]
        }
    })
}

async fn create(s: &Server, token: &str, collection: &str, body: Value) -> String {
    let r = s.call("POST", &format!("/api/collections/{collection}/records"), Some(token), Some(body)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["id"].as_str().expect("id").to_string()
}

async fn search(s: &Server, token: Option<&str>, collection: &str, query: &str) -> Value {
    let r = s.call("GET", &format!("/api/collections/{collection}/search?{query}"), token, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|i| i["id"].as_str())
        .map(String::from)
        .collect()
}

fn q(text: &str) -> String {
    format!("q={}", url_escape(text))
}

fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Waits until the search index has caught up with every write (lag 0), up to `limit`.
pub async fn caught_up(s: &Server, su: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let r = s.call("GET", "/api/search/status", Some(su), None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        if r.body["lag"] == 0 && r.body["rebuilding"] == false {
            return started.elapsed();
        }
        assert!(started.elapsed() < crate::common::patient(limit), "search did not catch up: {}", r.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls a search until `check` holds, up to 2 s (the freshness promise); returns the page.
async fn eventually(
    s: &Server,
    token: &str,
    collection: &str,
    query: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let page = search(s, Some(token), collection, query).await;
        if check(&page) {
            return page;
        }
        assert!(started.elapsed() < Duration::from_secs(2), "not visible in search within 2 s: {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn created_updated_and_deleted_records_show_in_search_within_two_seconds() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    assert_eq!(s.call("POST", "/api/collections", Some(&su), Some(articles(json!("")))).await.status, 200);
    let id =
        create(&s, &su, "articles", json!({"title": "Zanzibar travel notes", "body": "<p>spice</p>"})).await;
    eventually(&s, &su, "articles", &q("zanzibar "), |p| ids(p) == [id.clone()]).await;

    let r = s
        .call(
            "PATCH",
            &format!("/api/collections/articles/records/{id}"),
            Some(&su),
            Some(json!({"title": "Quokka photos"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    eventually(&s, &su, "articles", &q("quokka "), |p| ids(p) == [id.clone()]).await;
    eventually(&s, &su, "articles", &q("zanzibar "), |p| ids(p).is_empty()).await;

    let r = s.call("DELETE", &format!("/api/collections/articles/records/{id}"), Some(&su), None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    eventually(&s, &su, "articles", &q("quokka "), |p| ids(p).is_empty() && p["totalItems"] == 0).await;
}

async fn corpus(s: &Server, su: &str) -> (String, String, String) {
    assert_eq!(s.call("POST", "/api/collections", Some(su), Some(articles(json!("")))).await.status, 200);
    let a = create(
        s,
        su,
        "articles",
        json!({"title": "Programming Rust", "body": "<p>Ownership &amp; borrowing make memory safety cheap.</p>", "status": "live", "tags": ["rust"], "views": 10}),
    )
    .await;
    let b = create(
        s,
        su,
        "articles",
        json!({"title": "Databases for programmers", "body": "Indexes, transactions and the safety of memory-mapped files.", "status": "draft", "tags": ["db"], "views": 5}),
    )
    .await;
    let c = create(
        s,
        su,
        "articles",
        json!({"title": "Running servers", "body": "He runs a web server written in Rust.", "status": "live", "tags": ["web", "rust"], "views": 7}),
    )
    .await;
    caught_up(s, su, Duration::from_secs(10)).await;
    (a, b, c)
}

#[tokio::test]
async fn search_tolerates_typos_matches_prefixes_phrases_fields_and_stems() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    let (a, b, c) = corpus(&s, &su).await;

    // One typo in a 9+ letter word, two allowed; one in a 5-8 letter word.
    assert_eq!(ids(&search(&s, Some(&su), "articles", &q("ownrship ")).await), vec![a.clone()]);
    assert_eq!(ids(&search(&s, Some(&su), "articles", &q("databsaes ")).await), vec![b.clone()]);
    // Short words need the exact spelling.
    assert!(ids(&search(&s, Some(&su), "articles", &q("rusd ")).await).is_empty());
    // Search-as-you-type: the last word is a prefix while no space follows it.
    assert_eq!(ids(&search(&s, Some(&su), "articles", &q("borr")).await), vec![a.clone()]);
    assert!(ids(&search(&s, Some(&su), "articles", &q("borr ")).await).is_empty());
    // English stemming: "running" finds "runs" and "Running".
    assert_eq!(ids(&search(&s, Some(&su), "articles", &q("running ")).await), vec![c.clone()]);
    // Phrases need the words in order.
    assert_eq!(ids(&search(&s, Some(&su), "articles", &q("\"memory safety\"")).await), vec![a.clone()]);
    assert!(ids(&search(&s, Some(&su), "articles", &q("\"safety memory\"")).await).is_empty());
    // Field scoping: "rust" is in a's title and c's body and tags; title:rust is a alone.
    let mut all_rust = ids(&search(&s, Some(&su), "articles", &q("rust ")).await);
    all_rust.sort();
    let mut expected = vec![a.clone(), c.clone()];
    expected.sort();
    assert_eq!(all_rust, expected);
    assert_eq!(ids(&search(&s, Some(&su), "articles", &q("title:rust ")).await), vec![a.clone()]);
    // Exclusion.
    assert_eq!(ids(&search(&s, Some(&su), "articles", &q("rust -web ")).await), vec![a.clone()]);
    // The title boost ranks a title match above a body match.
    assert_eq!(ids(&search(&s, Some(&su), "articles", &q("rust ")).await)[0], a);
}

#[tokio::test]
async fn hits_carry_scores_and_highlighted_snippets() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    let (a, _, _) = corpus(&s, &su).await;
    let page = search(&s, Some(&su), "articles", &q("ownership rust")).await;
    assert_eq!(ids(&page), [a]);
    let hit = &page["items"][0]["@search"];
    assert!(hit["score"].as_f64().unwrap_or(0.0) > 0.0, "{hit}");
    assert_eq!(hit["highlights"]["title"], "Programming <mark>Rust</mark>");
    let body = hit["highlights"]["body"].as_str().expect("body snippet");
    assert!(body.contains("<mark>Ownership</mark> &amp; borrowing"), "{body}");
    assert!(!body.contains("<p>"), "markup is not part of the snippet: {body}");
    // The record itself is rendered as list renders it: hidden fields stay hidden.
    assert!(page["items"][0].get("secret").is_none());
}

#[tokio::test]
async fn facets_count_select_values_of_the_matches_and_filters_combine_with_the_query() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    let (a, b, c) = corpus(&s, &su).await;
    let page = search(&s, Some(&su), "articles", &format!("{}&facets=status,tags", q("safety"))).await;
    let mut found = ids(&page);
    found.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(found, expected);
    assert_eq!(page["facets"]["status"], json!({"draft": 1, "live": 1}));
    assert_eq!(page["facets"]["tags"], json!({"db": 1, "rust": 1}));

    let filtered =
        search(&s, Some(&su), "articles", &format!("{}&filter={}", q("rust"), url_escape("views > 8"))).await;
    assert_eq!(ids(&filtered), vec![a.clone()]);
    assert_eq!(filtered["totalItems"], 1);
    let sorted = search(&s, Some(&su), "articles", &format!("{}&sort=views", q("rust"))).await;
    assert_eq!(ids(&sorted), [c, a]);
    let paged = search(&s, Some(&su), "articles", &format!("{}&perPage=1&page=2", q("safety"))).await;
    assert_eq!(paged["totalItems"], 2);
    assert_eq!(paged["totalPages"], 2);
    assert_eq!(ids(&paged).len(), 1);
    // Absurdly deep pages are empty, not an error (with or without a filter).
    for extra in ["", "&filter=views%3E0"] {
        let deep =
            search(&s, Some(&su), "articles", &format!("{}&page=9999999999999{extra}", q("safety"))).await;
        assert_eq!(deep["totalItems"], 2, "{deep}");
        assert!(ids(&deep).is_empty());
    }
}

#[tokio::test]
async fn users_never_see_count_or_facet_records_the_list_rule_hides() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    users_collection(&s, &su, json!({})).await;
    let a = signup(&s, "a@example.com").await;
    signup(&s, "b@example.com").await;
    let (ta, tb) =
        (sign_in(&s, "a@example.com", PASSWORD).await, sign_in(&s, "b@example.com", PASSWORD).await);
    let a_id = a["id"].as_str().expect("id").to_string();
    let notes = json!({
        "name": "notes",
        "listRule": "owner = @request.auth.id || public = true",
        "viewRule": "owner = @request.auth.id || public = true",
        "fields": [
            {"name": "text", "type": "text"},
            {"name": "kind", "type": "select", "values": ["diary", "memo"], "maxSelect": 1},
            {"name": "public", "type": "bool"},
            {"name": "owner", "type": "relation", "collectionId": "users", "maxSelect": 1}
        ],
        "search": {"enabled": true, "fields": [{"name": "text"}]}
    });
    assert_eq!(s.call("POST", "/api/collections", Some(&su), Some(notes)).await.status, 200);
    let private =
        create(&s, &su, "notes", json!({"text": "pelican secret diary", "kind": "diary", "owner": a_id}))
            .await;
    let shared = create(
        &s,
        &su,
        "notes",
        json!({"text": "pelican public memo", "kind": "memo", "public": true, "owner": a_id}),
    )
    .await;
    caught_up(&s, &su, Duration::from_secs(10)).await;

    let query = format!("{}&facets=kind", q("pelican"));
    let as_a = search(&s, Some(&ta), "notes", &query).await;
    assert_eq!(as_a["totalItems"], 2);
    assert_eq!(as_a["facets"]["kind"], json!({"diary": 1, "memo": 1}));
    let as_b = search(&s, Some(&tb), "notes", &query).await;
    assert_eq!(ids(&as_b), vec![shared.clone()]);
    assert_eq!(as_b["totalItems"], 1, "B must not count A's private note");
    assert_eq!(as_b["facets"]["kind"], json!({"memo": 1}), "B must not facet A's private note");
    // Not even by searching its unique words.
    let secret = search(&s, Some(&tb), "notes", &format!("{}&facets=kind", q("secret diary"))).await;
    assert_eq!(secret["totalItems"], 0);
    assert!(ids(&secret).is_empty());
    assert_eq!(secret["facets"]["kind"], json!({}));
    // Anonymous callers see only the public note; cross-collection search obeys the rule too.
    assert_eq!(ids(&search(&s, None, "notes", &q("pelican")).await), vec![shared.clone()]);
    let all = s.call("GET", &format!("/api/search?{}", q("pelican")), Some(&tb), None).await;
    assert_eq!(all.status, 200, "{}", all.text);
    assert_eq!(ids(&all.body), [shared]);
    assert_eq!(all.body["totalItems"], 1);
    let as_a_all =
        s.call("GET", &format!("/api/search?{}&collections=notes", q("pelican")), Some(&ta), None).await;
    let mut found = ids(&as_a_all.body);
    found.sort();
    assert!(found.contains(&private));
}

#[tokio::test]
async fn cross_collection_search_merges_collections_and_skips_those_the_caller_cannot_list() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    corpus(&s, &su).await;
    let mut locked = articles(Value::Null);
    locked["name"] = json!("vault");
    assert_eq!(s.call("POST", "/api/collections", Some(&su), Some(locked)).await.status, 200);
    let hidden = create(&s, &su, "vault", json!({"title": "Rust vault entry"})).await;
    caught_up(&s, &su, Duration::from_secs(10)).await;
    let anon = s.call("GET", &format!("/api/search?{}", q("rust")), None, None).await;
    assert_eq!(anon.status, 200, "{}", anon.text);
    assert_eq!(anon.body["totalItems"], 2, "{}", anon.text);
    assert!(!ids(&anon.body).contains(&hidden));
    let everything = s
        .call("GET", &format!("/api/search?{}&collections=articles,vault", q("rust")), Some(&su), None)
        .await;
    assert_eq!(everything.body["totalItems"], 3, "{}", everything.text);
    let names: Vec<&str> = everything.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["collectionName"].as_str())
        .collect();
    assert!(names.contains(&"vault") && names.contains(&"articles"));
    // Direct search of a superusers-only collection is refused for others.
    s.call("GET", &format!("/api/collections/vault/search?{}", q("rust")), None, None)
        .await
        .assert_problem(403);
}

#[tokio::test]
async fn bad_search_input_is_a_400_problem() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    corpus(&s, &su).await;
    for query in [
        String::new(),
        q("   "),
        q("\"unclosed phrase"),
        q("nosuchfield:rust"),
        q("secret:rust"),
        q("-rust"),
        format!("{}&filter={}", q("rust"), url_escape("views >")),
        format!("{}&facets=title", q("rust")),
        format!("{}&sort=nosuch", q("rust")),
    ] {
        s.call("GET", &format!("/api/collections/articles/search?{query}"), Some(&su), None)
            .await
            .assert_problem(400);
    }
    s.call("GET", &format!("/api/collections/nosuch/search?{}", q("x")), Some(&su), None)
        .await
        .assert_problem(404);
    // A collection without search enabled.
    let mut plain = articles(json!(""));
    plain["name"] = json!("plain");
    plain["search"] = json!({"enabled": false});
    assert_eq!(s.call("POST", "/api/collections", Some(&su), Some(plain)).await.status, 200);
    s.call("GET", &format!("/api/collections/plain/search?{}", q("x")), Some(&su), None)
        .await
        .assert_problem(400);
    // Settings naming fields that cannot be indexed are refused when saved.
    let mut bad = articles(json!(""));
    bad["name"] = json!("bad");
    bad["search"]["fields"] = json!([{"name": "views"}]);
    s.call("POST", "/api/collections", Some(&su), Some(bad.clone()))
        .await
        .assert_problem(400)
        .assert_field_error("search.fields.0", "validation_not_searchable");
    bad["search"]["fields"] = json!([{"name": "secret"}]);
    s.call("POST", "/api/collections", Some(&su), Some(bad))
        .await
        .assert_problem(400)
        .assert_field_error("search.fields.0", "validation_not_searchable");
}

#[tokio::test]
async fn changing_searched_fields_reindexes_the_collection_in_a_job() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    let (a, _, _) = corpus(&s, &su).await;
    // "programming" is in a's title only.
    let page = search(&s, Some(&su), "articles", &q("programming")).await;
    assert_eq!(page["totalItems"], 1, "{page}");
    let r = s
        .call(
            "PATCH",
            "/api/collections/articles",
            Some(&su),
            Some(json!({"search": {"enabled": true, "fields": [{"name": "body"}]}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["search"]["fields"][0]["name"], "body");
    // A search.reindex job runs and completes with progress.
    let started = Instant::now();
    loop {
        let jobs = s.call("GET", "/api/jobs?kind=search.reindex", Some(&su), None).await;
        let done = jobs.body["items"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .find(|j| j["state"] == "completed" && j["payload"]["collection"].is_string())
            .cloned();
        if let Some(job) = done {
            assert_eq!(job["progress"]["indexed"], 3, "{job}");
            assert_eq!(job["progress"]["total"], 3, "{job}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no completed reindex job: {}", jobs.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Titles are no longer searched.
    assert_eq!(search(&s, Some(&su), "articles", &q("programming")).await["totalItems"], 0);
    assert_eq!(ids(&search(&s, Some(&su), "articles", &q("ownership")).await), [a]);
    // Disabling search drops the documents at once; the endpoint refuses.
    let r = s
        .call(
            "PATCH",
            "/api/collections/articles",
            Some(&su),
            Some(json!({"search": {"enabled": false, "fields": []}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    s.call("GET", &format!("/api/collections/articles/search?{}", q("rust")), Some(&su), None)
        .await
        .assert_problem(400);
    caught_up(&s, &su, Duration::from_secs(10)).await;
    let status = s.call("GET", "/api/search/status", Some(&su), None).await;
    assert_eq!(status.body["documents"], 0, "{}", status.text);
}

#[tokio::test]
async fn index_lag_and_search_metrics_are_exposed() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    corpus(&s, &su).await;
    search(&s, Some(&su), "articles", &q("rust")).await;
    let status = s.call("GET", "/api/search/status", Some(&su), None).await;
    assert_eq!(status.body["lag"], 0, "{}", status.text);
    assert_eq!(status.body["documents"], 3, "{}", status.text);
    assert!(status.body["outboxSeq"].as_u64().unwrap_or(0) >= 3, "{}", status.text);
    s.call("GET", "/api/search/status", None, None).await.assert_problem(401);
    let metrics = s.client.get(s.url("/metrics")).header("Authorization", &su).send().await.expect("metrics");
    let text = metrics.text().await.expect("text");
    for name in [
        "backbone_search_index_lag 0",
        "backbone_search_documents 3",
        "backbone_search_commit_duration_seconds_count",
        "backbone_search_query_duration_seconds_count",
    ] {
        assert!(text.contains(name), "missing {name} in /metrics");
    }
    let ready = s.call("GET", "/api/ready", Some(&su), None).await;
    assert_eq!(ready.body["checks"]["search"]["ok"], true, "{}", ready.text);
}

#[tokio::test]
async fn cli_search_reindex_queues_a_job_through_the_running_server() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    corpus(&s, &su).await;
    let run = |args: &[&str]| {
        crate::common::command().args(args).arg("--dir").arg(&s.dir).output().expect("run backbone")
    };
    let out = run(&["search", "reindex", "articles"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(printed.starts_with("reindex job "), "{printed}");
    let id = printed.split_whitespace().nth(2).expect("job id").to_string();
    let started = Instant::now();
    loop {
        let job = s.call("GET", &format!("/api/jobs/{id}"), Some(&su), None).await;
        if job.body["state"] == "completed" {
            assert_eq!(job.body["progress"]["indexed"], 3, "{}", job.text);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{}", job.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(search(&s, Some(&su), "articles", &q("rust")).await["totalItems"], 2);
    // Unknown collections and collections without search are refused.
    let out = run(&["search", "reindex", "nosuch"]);
    assert!(!out.status.success());
    // The HTTP endpoint does the same (superusers only).
    let r = s.call("POST", "/api/search/reindex", Some(&su), Some(json!({}))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    s.call("POST", "/api/search/reindex", None, Some(json!({}))).await.assert_problem(401);
}

//! Regression tests for the findings of the security audit (SECURITY.md): each failed on
//! the code before its fix. API keys never reach system collections; hidden emails stay
//! hidden through filters, sorts, cursors, relations, expand and search; the search index
//! holds only text every viewer may see; account requests answer in the same time whether
//! or not the account exists, and each address gets a bounded number of emails; auth-refresh
//! re-checks the auth rule; `~` has a bounded cost and every list a time budget; the
//! `_superusers` rules are locked; an unverified account's password dies when its owner
//! proves the address; credentialed downloads are not cached; account emails' secrets are
//! redacted in `/api/jobs`; record ids equal across auth collections confer nothing.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use super::users::{sign_in, signup, users_collection, PASSWORD};
use crate::common::smtp::{free_port, SmtpSink};
use crate::common::{multipart, Server, StartOptions};

fn env(pairs: &[(&str, &str)]) -> StartOptions {
    StartOptions {
        env: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..StartOptions::default()
    }
}

async fn key(s: &Server, su: &str, scopes: Value) -> crate::common::Reply {
    s.call("POST", "/api/keys", Some(su), Some(json!({"name": "k", "scopes": scopes}))).await
}

#[tokio::test]
async fn api_keys_never_reach_the_superusers_collection() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    // A key may not even name it.
    for scopes in [json!({"_superusers": ["create"]}), json!({"pbc_3142635823": ["list"]})] {
        let r = key(&s, &su, scopes).await;
        r.assert_problem(400).assert_field_error("scopes", "validation_system_collection");
    }
    // "*" means every user collection: not _superusers, for any operation.
    let all = key(&s, &su, json!({"*": ["list", "view", "create", "update", "delete"]})).await;
    assert_eq!(all.status, 201, "{}", all.text);
    let secret = all.body["key"].as_str().expect("key secret").to_string();
    let created = s
        .call(
            "POST",
            "/api/collections/_superusers/records",
            Some(&secret),
            Some(json!({"email": "evil@example.com", "password": "evil-password-1", "passwordConfirm": "evil-password-1"})),
        )
        .await;
    assert_eq!(created.status, 403, "a key created a superuser: {}", created.text);
    let login = s
        .call(
            "POST",
            "/api/collections/_superusers/auth-with-password",
            None,
            Some(json!({"identity": "evil@example.com", "password": "evil-password-1"})),
        )
        .await;
    assert_eq!(login.status, 400, "{}", login.text);
    let listed = s.call("GET", "/api/collections/_superusers/records", Some(&secret), None).await;
    assert_eq!(listed.status, 403, "{}", listed.text);
    let me = s.call("GET", "/api/collections/_superusers/records", Some(&su), None).await;
    let su_id = me.body["items"][0]["id"].as_str().expect("superuser id").to_string();
    for (method, body) in [
        ("PATCH", Some(json!({"password": "x-password-99", "passwordConfirm": "x-password-99"}))),
        ("DELETE", None),
    ] {
        let r = s
            .call(method, &format!("/api/collections/_superusers/records/{su_id}"), Some(&secret), body)
            .await;
        assert!(matches!(r.status, 403 | 404), "{method} on a superuser with a key: {} {}", r.status, r.text);
    }
    assert_eq!(
        s.call("GET", "/api/settings", Some(&su), None).await.status,
        200,
        "the superuser still exists"
    );
    // Batches go through the same rule.
    let batch = s
        .call(
            "POST",
            "/api/batch",
            Some(&secret),
            Some(json!({"requests": [{"method": "POST", "url": "/api/collections/_superusers/records",
                "body": {"email": "b@example.com", "password": "evil-password-1", "passwordConfirm": "evil-password-1"}}]})),
        )
        .await;
    assert_ne!(batch.status, 200, "{}", batch.text);
}

/// `users` with public list and view rules, a hidden-email user and a public-email user,
/// and `posts` whose `author` points at them. Returns (superuser token, hidden user id).
async fn people(s: &Server) -> (String, String) {
    let su = s.setup_superuser().await;
    users_collection(
        s,
        &su,
        json!({"listRule": "", "viewRule": "", "indexes": ["CREATE INDEX idx_email ON users (email)"]}),
    )
    .await;
    let hidden = signup(s, "alice@example.com").await;
    let shown = signup(s, "bob@example.com").await;
    let r = s
        .call(
            "PATCH",
            &format!("/api/collections/users/records/{}", shown["id"].as_str().expect("id")),
            Some(&su),
            Some(json!({"emailVisibility": true})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = s
        .call(
            "POST",
            "/api/collections",
            Some(&su),
            Some(json!({"name": "posts", "listRule": "", "viewRule": "", "fields": [
                {"name": "title", "type": "text"},
                {"name": "author", "type": "relation", "collectionId": "users", "maxSelect": 1}
            ]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    for (title, author) in [("by alice", &hidden), ("by bob", &shown)] {
        let r = s
            .call(
                "POST",
                "/api/collections/posts/records",
                Some(&su),
                Some(json!({"title": title, "author": author["id"]})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    (su, hidden["id"].as_str().expect("id").to_string())
}

fn titles(r: &crate::common::Reply, field: &str) -> Vec<String> {
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i[field].as_str().unwrap_or_default().to_string())
        .collect()
}

fn cursor_text(r: &crate::common::Reply) -> String {
    let token = r.body["nextCursor"].as_str().unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).expect("base64 cursor");
    String::from_utf8_lossy(&bytes).to_string()
}

#[tokio::test]
async fn hidden_emails_do_not_leak_through_filter_sort_cursor_relations_or_expand() {
    let s = Server::start_with(env(&[("BACKBONE_RATE_LIMITS_ENABLED", "false")]));
    let (su, _) = people(&s).await;
    let alice = sign_in(&s, "alice@example.com", PASSWORD).await;
    let list = |q: &'static str, token: Option<String>| {
        let s = &s;
        async move { s.call("GET", &format!("/api/collections/users/records?{q}"), token.as_deref(), None).await }
    };
    // Filters: a hidden email matches nothing, a shown one matches, for every comparison.
    for q in [
        "filter=email~'a%25'",
        "filter=email~'alice'",
        "filter=email='alice@example.com'",
        "filter=email>'alice'%26%26email<'alicf'",
        "filter=email:lower='alice@example.com'",
    ] {
        assert_eq!(titles(&list(q, None).await, "name"), Vec::<String>::new(), "anonymous {q}");
    }
    assert_eq!(titles(&list("filter=email='bob@example.com'", None).await, "name"), vec!["bob@example.com"]);
    // The indexed equality counts nothing hidden either.
    let counted = list("filter=email='alice@example.com'&perPage=1", None).await;
    assert_eq!(counted.body["totalItems"], 0, "{}", counted.text);
    // The owner and superusers see it.
    assert_eq!(
        titles(&list("filter=email='alice@example.com'", Some(alice.clone())).await, "name"),
        vec!["alice@example.com"]
    );
    assert_eq!(
        titles(&list("filter=email~'a%25'", Some(su.clone())).await, "name"),
        vec!["alice@example.com"]
    );
    // Sort + cursor: the cursor carries no hidden address, and the order does not follow it.
    for token in [None, Some(alice.clone())] {
        let page = list("sort=email&cursor=&perPage=1", token.clone()).await;
        assert_eq!(page.status, 200, "{}", page.text);
        if token.is_none() {
            assert!(!cursor_text(&page).contains("alice@"), "cursor: {}", cursor_text(&page));
        }
    }
    let page =
        s.call("GET", "/api/collections/posts/records?sort=author.email&cursor=&perPage=1", None, None).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(!cursor_text(&page).contains("alice@"), "cursor: {}", cursor_text(&page));
    // Hidden addresses sort as empty: the public one sorts last either way.
    let sorted = |dir: &'static str| {
        let s = &s;
        async move {
            s.call("GET", &format!("/api/collections/posts/records?sort={dir}author.email"), None, None).await
        }
    };
    assert_eq!(titles(&sorted("").await, "title"), vec!["by alice", "by bob"]);
    assert_eq!(titles(&sorted("-").await, "title"), vec!["by bob", "by alice"]);
    // Through relations and back-relations.
    for q in ["filter=author.email~'alice'", "filter=author.email='alice@example.com'"] {
        let r = s.call("GET", &format!("/api/collections/posts/records?{q}"), None, None).await;
        assert_eq!(titles(&r, "title"), Vec::<String>::new(), "anonymous {q}");
    }
    let r = s
        .call(
            "GET",
            "/api/collections/users/records?filter=posts_via_author.author.email~'alice'",
            None,
            None,
        )
        .await;
    assert_eq!(titles(&r, "name"), Vec::<String>::new());
    let r = s
        .call("GET", "/api/collections/posts/records?filter=author.email='bob@example.com'", None, None)
        .await;
    assert_eq!(titles(&r, "title"), vec!["by bob"]);
    // Expand shows the public address only.
    let r = s.call("GET", "/api/collections/posts/records?expand=author&sort=title", None, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // (Names repeat the addresses; the `email` key is what must be absent.)
    assert!(!r.text.contains(r#""email":"alice@example.com""#), "{}", r.text);
    assert!(r.text.contains(r#""email":"bob@example.com""#), "{}", r.text);
    // @collection joins too.
    let r = s
        .call("GET", "/api/collections/posts/records?filter=@collection.users.email~'alice'", None, None)
        .await;
    assert_eq!(titles(&r, "title"), Vec::<String>::new());
}

#[tokio::test]
async fn the_search_index_holds_no_hidden_email_and_no_text_of_unviewable_relations() {
    let s = Server::start_with(env(&[("BACKBONE_RATE_LIMITS_ENABLED", "false")]));
    let su = s.setup_superuser().await;
    users_collection(
        &s,
        &su,
        json!({"listRule": "", "viewRule": "", "search": {"enabled": true, "fields": [{"name": "email"}, {"name": "name"}]}}),
    )
    .await;
    let hidden = signup(&s, "carol@example.com").await;
    let shown = signup(&s, "dave@example.com").await;
    s.call(
        "PATCH",
        &format!("/api/collections/users/records/{}", shown["id"].as_str().expect("id")),
        Some(&su),
        Some(json!({"emailVisibility": true, "name": "Dave"})),
    )
    .await;
    s.call(
        "PATCH",
        &format!("/api/collections/users/records/{}", hidden["id"].as_str().expect("id")),
        Some(&su),
        Some(json!({"name": "Carol"})),
    )
    .await;
    // A superuser-only collection of secrets, and public notes that point at them.
    for body in [
        json!({"name": "secrets", "fields": [{"name": "label", "type": "text", "presentable": true}]}),
        json!({"name": "notes", "listRule": "", "viewRule": "", "fields": [
            {"name": "title", "type": "text"},
            {"name": "secret", "type": "relation", "collectionId": "secrets", "maxSelect": 1}
        ], "search": {"enabled": true, "fields": [{"name": "title"}, {"name": "secret"}]}}),
    ] {
        let r = s.call("POST", "/api/collections", Some(&su), Some(body)).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let secret = s
        .call("POST", "/api/collections/secrets/records", Some(&su), Some(json!({"label": "zanzibarcode"})))
        .await;
    let r = s
        .call(
            "POST",
            "/api/collections/notes/records",
            Some(&su),
            Some(json!({"title": "an ordinary note", "secret": secret.body["id"]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let search = |path: &'static str, token: Option<String>| {
        let s = &s;
        async move {
            // The index catches up asynchronously: poll until the expected state or a deadline.
            s.call("GET", path, token.as_deref(), None).await
        }
    };
    // Wait until the index has the notes (a visible term finds it).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = search("/api/collections/notes/search?q=ordinary", None).await;
        if r.body["items"].as_array().is_some_and(|i| !i.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "the note never became searchable: {}", r.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = search("/api/collections/users/search?q=dave", None).await;
        if r.body["items"].as_array().is_some_and(|i| i.len() == 1) {
            break;
        }
        assert!(Instant::now() < deadline, "users never became searchable: {}", r.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (path, token) in [
        ("/api/collections/notes/search?q=zanzibarcode", None),
        ("/api/collections/users/search?q=carol%40example.com", None),
        ("/api/collections/users/search?q=email:carol", None),
        ("/api/search?q=zanzibarcode", None),
    ] {
        let r = search(path, token).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert_eq!(r.body["items"].as_array().map(Vec::len), Some(0), "{path}: {}", r.text);
    }
    // A public address is searchable.
    let r = search("/api/collections/users/search?q=email:dave", None).await;
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(1), "{}", r.text);
    // Sorting search results by email is for superusers.
    search("/api/collections/users/search?q=dave&sort=email", None).await.assert_problem(400);
    // Once the target's view rule is public, its text is indexed (the notes are reindexed).
    let r = s.call("PATCH", "/api/collections/secrets", Some(&su), Some(json!({"viewRule": ""}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = search("/api/collections/notes/search?q=zanzibarcode", None).await;
        if r.body["items"].as_array().is_some_and(|i| i.len() == 1) {
            break;
        }
        assert!(Instant::now() < deadline, "the notes were not reindexed: {}", r.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test]
async fn account_requests_take_the_same_time_for_known_and_unknown_addresses() {
    let s = Server::start_with(env(&[("BACKBONE_RATE_LIMITS_ENABLED", "false")]));
    let su = s.setup_superuser().await;
    users_collection(&s, &su, json!({"otp": {"enabled": true, "duration": 180, "length": 8}})).await;
    for i in 0..40 {
        signup(&s, &format!("known{i}@example.com")).await;
    }
    for action in ["request-password-reset", "request-verification", "request-otp"] {
        let path = format!("/api/collections/users/{action}");
        let (mut known, mut unknown) = (Vec::new(), Vec::new());
        // Interleaved, one address each time (no per-address limit is in play).
        for i in 0..40 {
            for (email, out) in [
                (format!("known{i}@example.com"), &mut known),
                (format!("nobody{i}@example.com"), &mut unknown),
            ] {
                let started = Instant::now();
                let r = s.call("POST", &path, None, Some(json!({"email": email}))).await;
                out.push(started.elapsed());
                assert!(matches!(r.status, 200 | 204), "{action}: {} {}", r.status, r.text);
            }
        }
        let (k, u) = (median(known), median(unknown));
        // Before: ~0.3 ms for unknown addresses, 1.7-6.4 ms for real ones (an fsync'd
        // enqueue before the answer). Now neither waits for the store.
        assert!(k < u * 2 + Duration::from_micros(500), "{action}: known {k:?} vs unknown {u:?}");
    }
}

#[tokio::test]
async fn each_address_gets_a_bounded_number_of_account_emails_from_any_ip() {
    let s = Server::start_with(env(&[("BACKBONE_RATE_LIMITS_MAIL_PER_ACCOUNT", "2/3600s")]));
    let su = s.setup_superuser().await;
    users_collection(&s, &su, json!({"otp": {"enabled": true, "duration": 180, "length": 8}})).await;
    signup(&s, "target@example.com").await;
    for email in ["target@example.com", "Nobody@Example.com"] {
        for action in ["request-password-reset", "request-otp"] {
            let r = s
                .call(
                    "POST",
                    &format!("/api/collections/users/{action}"),
                    None,
                    Some(json!({"email": email})),
                )
                .await;
            assert!(matches!(r.status, 200 | 204), "{action} {email}: {}", r.text);
        }
        let r = s
            .call(
                "POST",
                "/api/collections/users/request-verification",
                None,
                Some(json!({"email": email.to_lowercase()})),
            )
            .await;
        r.assert_problem(429);
        assert!(r.headers.contains_key("retry-after"));
    }
}

#[tokio::test]
async fn auth_refresh_rechecks_the_auth_rule() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    users_collection(&s, &su, json!({"fields": [{"name": "banned", "type": "bool"}]})).await;
    let user = signup(&s, "eve@example.com").await;
    let token = sign_in(&s, "eve@example.com", PASSWORD).await;
    let refresh = |t: String| {
        let s = &s;
        async move { s.call("POST", "/api/collections/users/auth-refresh", Some(&t), None).await }
    };
    assert_eq!(refresh(token.clone()).await.status, 200);
    let r = s
        .call("PATCH", "/api/collections/users", Some(&su), Some(json!({"authRule": "banned = false"})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(refresh(token.clone()).await.status, 200, "not banned yet");
    let r = s
        .call(
            "PATCH",
            &format!("/api/collections/users/records/{}", user["id"].as_str().expect("id")),
            Some(&su),
            Some(json!({"banned": true})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    refresh(token).await.assert_problem(403);
}

#[tokio::test]
async fn like_costs_are_bounded_and_lists_have_a_time_budget() {
    let s = Server::start_with(env(&[("BACKBONE_RATE_LIMITS_ENABLED", "false")]));
    let su = s.setup_superuser().await;
    let r = s
        .call(
            "POST",
            "/api/collections",
            Some(&su),
            Some(json!({"name": "blobs", "listRule": "", "fields": [{"name": "data", "type": "text", "max": 2000000}]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let big = "a".repeat(900 * 1024);
    let r = s.call("POST", "/api/collections/blobs/records", Some(&su), Some(json!({"data": big}))).await;
    assert_eq!(r.status, 200, "{}", r.text.chars().take(300).collect::<String>());
    // The audit's query (8 KB; the filter limit is 8192 bytes): 7.5 s of CPU per request
    // before (backtracking matcher).
    let pattern = format!("%25{}b%25", "a".repeat(8000));
    let started = Instant::now();
    let r =
        s.call("GET", &format!("/api/collections/blobs/records?filter=data~'{pattern}'"), None, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["totalItems"], 0);
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    // The time budget: a 1 ms budget is spent by a filter over many large records.
    let s = Server::start_with(env(&[
        ("BACKBONE_RATE_LIMITS_ENABLED", "false"),
        ("BACKBONE_LIMITS_QUERY_BUDGET_MS", "1"),
    ]));
    let su = s.setup_superuser().await;
    s.call(
        "POST",
        "/api/collections",
        Some(&su),
        Some(json!({"name": "blobs", "listRule": "", "fields": [{"name": "data", "type": "text", "max": 2000000}]})),
    )
    .await;
    let chunk = "ab".repeat(50 * 1024);
    for _ in 0..64 {
        let r =
            s.call("POST", "/api/collections/blobs/records", Some(&su), Some(json!({"data": chunk}))).await;
        assert_eq!(r.status, 200);
    }
    let r = s
        .call(
            "GET",
            &format!("/api/collections/blobs/records?filter=data~'%25{}b_c%25'", "ab".repeat(100)),
            None,
            None,
        )
        .await;
    r.assert_problem(400);
    assert!(r.body["message"].as_str().unwrap_or_default().contains("budget"), "{}", r.text);
    // Unfiltered lists do not spend it.
    assert_eq!(s.call("GET", "/api/collections/blobs/records?perPage=1", None, None).await.status, 200);
}

#[tokio::test]
async fn the_superusers_rules_are_locked() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    for (rule, value) in [
        ("listRule", json!("")),
        ("createRule", json!("")),
        ("viewRule", json!("id != ''")),
        ("authRule", json!("id = ''")),
    ] {
        let r = s.call("PATCH", "/api/collections/_superusers", Some(&su), Some(json!({rule: value}))).await;
        r.assert_problem(400).assert_field_error(rule, "validation_system_rule");
    }
    // Anonymous callers still cannot list or create superusers.
    assert_eq!(s.call("GET", "/api/collections/_superusers/records", None, None).await.status, 403);
    // Other settings of the collection stay editable.
    let r = s
        .call(
            "PATCH",
            "/api/collections/_superusers",
            Some(&su),
            Some(json!({"authToken": {"duration": 3600}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// The OTP code in the `n`-th message.
async fn otp_code(sink: &SmtpSink, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let messages = sink.messages();
        if messages.len() >= n {
            let text = messages[n - 1]["text"].as_str().unwrap_or_default().to_string();
            return text
                .split(|c: char| !c.is_ascii_digit())
                .find(|w| w.len() == 8)
                .unwrap_or_else(|| panic!("no code in {text}"))
                .to_string();
        }
        assert!(Instant::now() < deadline, "no message {n}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn mail_server(port: u16, extra: &[(&str, &str)]) -> Server {
    let mut pairs = vec![
        ("BACKBONE_MAIL_ENABLED".to_string(), "true".to_string()),
        ("BACKBONE_MAIL_HOST".to_string(), "127.0.0.1".to_string()),
        ("BACKBONE_MAIL_PORT".to_string(), port.to_string()),
        ("BACKBONE_MAIL_SECURITY".to_string(), "none".to_string()),
    ];
    pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Server::start_with(StartOptions { env: pairs, args: vec![] })
}

#[tokio::test]
async fn proving_the_address_by_code_ends_a_pre_registered_password() {
    let out = tempfile::tempdir().expect("dir");
    let sink = SmtpSink::start(free_port(), out.path(), &[]);
    let s = mail_server(sink.port, &[]);
    let su = s.setup_superuser().await;
    users_collection(&s, &su, json!({"otp": {"enabled": true, "duration": 180, "length": 8}})).await;
    // The attacker registers the victim's address first, with a password of their own.
    signup(&s, "victim@example.com").await;
    let attacker_session = sign_in(&s, "victim@example.com", PASSWORD).await;
    // The victim signs in by code: the address is now proven to be theirs.
    let r = s
        .call(
            "POST",
            "/api/collections/users/request-otp",
            None,
            Some(json!({"email": "victim@example.com"})),
        )
        .await;
    let otp_id = r.body["otpId"].as_str().expect("otpId").to_string();
    let code = otp_code(&sink, 1).await;
    let ok = s
        .call(
            "POST",
            "/api/collections/users/auth-with-otp",
            None,
            Some(json!({"otpId": otp_id, "password": code})),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.body["record"]["verified"], true);
    // The attacker's password and session are gone.
    let r = s
        .call(
            "POST",
            "/api/collections/users/auth-with-password",
            None,
            Some(json!({"identity": "victim@example.com", "password": PASSWORD})),
        )
        .await;
    r.assert_problem(400);
    let r = s.call("POST", "/api/collections/users/auth-refresh", Some(&attacker_session), None).await;
    assert_eq!(r.status, 401, "{}", r.text);
    // The victim's own session works.
    let victim = ok.body["token"].as_str().expect("token").to_string();
    assert_eq!(s.call("POST", "/api/collections/users/auth-refresh", Some(&victim), None).await.status, 200);
}

#[tokio::test]
async fn account_email_secrets_are_redacted_in_the_jobs_api() {
    // No SMTP server listens: the mail job stays queued or retrying, visible in /api/jobs.
    let s = mail_server(free_port(), &[]);
    let su = s.setup_superuser().await;
    users_collection(&s, &su, json!({})).await;
    signup(&s, "frank@example.com").await;
    let r = s
        .call(
            "POST",
            "/api/collections/users/request-password-reset",
            None,
            Some(json!({"email": "frank@example.com"})),
        )
        .await;
    assert_eq!(r.status, 204);
    let deadline = Instant::now() + Duration::from_secs(20);
    let job = loop {
        let r = s.call("GET", "/api/jobs?kind=mail.send", Some(&su), None).await;
        if let Some(job) = r.body["items"].as_array().and_then(|i| i.first()).cloned() {
            break job;
        }
        assert!(Instant::now() < deadline, "no mail job: {}", r.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let text = job["payload"]["text"].as_str().unwrap_or_default();
    assert!(text.contains("redacted"), "{job}");
    assert!(!job.to_string().contains("confirm-password-reset"), "{job}");
    assert_eq!(job["payload"]["to"], "frank@example.com", "the rest shows");
}

#[tokio::test]
async fn a_record_id_equal_to_a_superusers_confers_nothing() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    users_collection(&s, &su, json!({})).await;
    let me = s.call("GET", "/api/collections/_superusers/records", Some(&su), None).await;
    let su_id = me.body["items"][0]["id"].as_str().expect("id").to_string();
    let r = s
        .call(
            "POST",
            "/api/collections/users/records",
            None,
            Some(json!({"id": su_id, "email": "twin@example.com", "password": PASSWORD, "passwordConfirm": PASSWORD})),
        )
        .await;
    assert_eq!(r.status, 200, "the id is free in this collection: {}", r.text);
    let twin = sign_in(&s, "twin@example.com", PASSWORD).await;
    for path in ["/api/settings", "/api/keys", "/api/jobs", "/api/collections/_superusers/records"] {
        let r = s.call("GET", path, Some(&twin), None).await;
        assert_eq!(r.status, 403, "{path}: {}", r.text);
    }
    let r = s.call("GET", &format!("/api/collections/_superusers/records/{su_id}"), Some(&twin), None).await;
    assert!(matches!(r.status, 403 | 404), "{}", r.text);
}

#[tokio::test]
async fn credentialed_downloads_are_not_cached() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    let r = s
        .call(
            "POST",
            "/api/collections",
            Some(&su),
            Some(json!({"name": "docs", "listRule": "", "viewRule": "", "fields": [
                {"name": "file", "type": "file", "maxSelect": 1, "maxSize": 100000, "protected": true}
            ]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (content_type, body) = multipart(&[], &[("file", "a.txt", "text/plain", b"secret contents")]);
    let up = s.raw("POST", "/api/collections/docs/records", Some(&su), Some(&content_type), body).await;
    assert_eq!(up.status, 200, "{}", up.text);
    let rec = up.body.clone();
    let file = rec["file"].as_str().expect("file name").to_string();
    let token = s.call("POST", "/api/files/token", Some(&su), None).await.body["token"]
        .as_str()
        .expect("token")
        .to_string();
    let url = format!("/api/files/docs/{}/{file}?token={token}", rec["id"].as_str().expect("id"));
    let r = s.client.get(s.url(&url)).send().await.expect("download");
    assert_eq!(r.status(), 200);
    let cache =
        r.headers().get("cache-control").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(cache.contains("no-store"), "Cache-Control: {cache}");
}

#[tokio::test]
async fn one_time_codes_are_at_least_six_digits() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    users_collection(&s, &su, json!({})).await;
    for (length, status) in [(4, 400), (5, 400), (6, 200), (12, 200), (13, 400)] {
        let r = s
            .call(
                "PATCH",
                "/api/collections/users",
                Some(&su),
                Some(json!({"otp": {"enabled": true, "duration": 180, "length": length}})),
            )
            .await;
        assert_eq!(r.status, status, "length {length}: {}", r.text);
    }
}

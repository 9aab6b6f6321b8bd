//! The access-rule matrix: five callers (anonymous, user A, user B, superuser, API key) ×
//! three rule styles (owner expression, public, superusers only) × every operation, with the
//! exact expected status of each; plus the ways a caller could try to learn about records or
//! fields it cannot see (counts, filters, expand, sort) and must not.

use serde_json::{json, Value};

use super::users::{sign_in, signup, users_collection};
use crate::common::Server;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Anon,
    A,
    B,
    Su,
    Key,
}

struct World {
    s: Server,
    tokens: Vec<(Who, Option<String>)>,
    a_id: String,
    b_id: String,
}

impl World {
    fn token(&self, who: Who) -> Option<&str> {
        self.tokens.iter().find(|(w, _)| *w == who).and_then(|(_, t)| t.as_deref())
    }
}

async fn world() -> World {
    let s = Server::start();
    let su = s.setup_superuser().await;
    users_collection(&s, &su, json!({})).await;
    let a = signup(&s, "a@example.com").await;
    let b = signup(&s, "b@example.com").await;
    let owned = |name: &str, list: Value, view: Value, create: Value, update: Value, delete: Value| {
        json!({
            "name": name,
            "listRule": list, "viewRule": view, "createRule": create, "updateRule": update, "deleteRule": delete,
            "fields": [
                {"name": "title", "type": "text"},
                {"name": "secret", "type": "text", "hidden": true},
                {"name": "owner", "type": "relation", "collectionId": "users", "maxSelect": 1}
            ]
        })
    };
    let mine = "owner = @request.auth.id";
    for body in [
        owned(
            "notes",
            json!(mine),
            json!(mine),
            json!(format!("@request.auth.id != '' && {mine}")),
            json!(mine),
            json!(mine),
        ),
        owned("public", json!(""), json!(""), json!(""), json!(""), json!("")),
        owned("locked", Value::Null, Value::Null, Value::Null, Value::Null, Value::Null),
    ] {
        let r = s.call("POST", "/api/collections", Some(&su), Some(body)).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let key = s
        .call(
            "POST",
            "/api/keys",
            Some(&su),
            Some(json!({"name": "matrix", "scopes": {"notes": ["list", "view", "create", "update", "delete"], "public": ["list", "view"]}})),
        )
        .await;
    assert_eq!(key.status, 201, "{}", key.text);
    let tokens = vec![
        (Who::Anon, None),
        (Who::A, Some(sign_in(&s, "a@example.com", super::users::PASSWORD).await)),
        (Who::B, Some(sign_in(&s, "b@example.com", super::users::PASSWORD).await)),
        (Who::Su, Some(su)),
        (Who::Key, Some(format!("Bearer {}", key.body["key"].as_str().expect("key")))),
    ];
    World {
        s,
        tokens,
        a_id: a["id"].as_str().expect("id").to_string(),
        b_id: b["id"].as_str().expect("id").to_string(),
    }
}

/// Creates a record as the superuser; returns its id.
async fn seed(w: &World, collection: &str, owner: &str, title: &str) -> String {
    let r =
        w.s.call(
            "POST",
            &format!("/api/collections/{collection}/records"),
            w.token(Who::Su),
            Some(json!({"title": title, "owner": owner, "secret": format!("{title}-secret")})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["id"].as_str().expect("id").to_string()
}

#[tokio::test]
async fn every_caller_gets_exactly_what_the_rules_allow() {
    let w = world().await;
    let callers = [Who::Anon, Who::A, Who::B, Who::Su, Who::Key];
    // Expected statuses per caller, in the order of `callers`, for an A-owned record.
    struct Case {
        collection: &'static str,
        list_count: [Option<u64>; 5], // None = refused (403)
        view: [u16; 5],
        create_own: [u16; 5], // create with owner = the caller (A's id for anon/su/key)
        update: [u16; 5],
        delete: [u16; 5],
    }
    let cases = [
        Case {
            collection: "notes",
            list_count: [Some(0), Some(1), Some(1), Some(2), Some(2)],
            view: [404, 200, 404, 200, 200],
            create_own: [400, 200, 200, 200, 200],
            update: [404, 200, 404, 200, 200],
            delete: [404, 204, 404, 204, 204],
        },
        Case {
            collection: "public",
            list_count: [Some(2), Some(2), Some(2), Some(2), Some(2)],
            view: [200; 5],
            create_own: [200, 200, 200, 200, 403],
            update: [200, 200, 200, 200, 403],
            delete: [204, 204, 204, 204, 403],
        },
        Case {
            collection: "locked",
            list_count: [None, None, None, Some(2), None],
            view: [403, 403, 403, 200, 403],
            create_own: [403, 403, 403, 200, 403],
            update: [403, 403, 403, 200, 403],
            delete: [403, 403, 403, 204, 403],
        },
    ];
    for case in &cases {
        for (i, who) in callers.iter().enumerate() {
            let c = case.collection;
            let token = w.token(*who);
            // Fresh records per caller, so deletes do not affect the next caller.
            let a_rec = seed(&w, c, &w.a_id, "a-note").await;
            let b_rec = seed(&w, c, &w.b_id, "b-note").await;
            let list =
                w.s.call("GET", &format!("/api/collections/{c}/records?filter=(title~'-note')"), token, None)
                    .await;
            match case.list_count[i] {
                Some(n) => {
                    assert_eq!(list.status, 200, "{c} list as {who:?}: {}", list.text);
                    assert_eq!(list.body["totalItems"], n, "{c} list count as {who:?}: {}", list.text);
                    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(n as usize));
                    if *who == Who::B && c == "notes" {
                        assert_eq!(list.body["items"][0]["id"], b_rec.as_str());
                    }
                }
                None => {
                    list.assert_problem(403);
                }
            }
            let view = w.s.call("GET", &format!("/api/collections/{c}/records/{a_rec}"), token, None).await;
            assert_eq!(view.status, case.view[i], "{c} view as {who:?}: {}", view.text);
            if view.status == 200 && *who != Who::Su {
                assert!(view.body.get("secret").is_none(), "hidden field shown to {who:?}");
            }
            let owner = match who {
                Who::B => w.b_id.clone(),
                _ => w.a_id.clone(),
            };
            let create =
                w.s.call(
                    "POST",
                    &format!("/api/collections/{c}/records"),
                    token,
                    Some(json!({"title": "new", "owner": owner})),
                )
                .await;
            assert_eq!(create.status, case.create_own[i], "{c} create as {who:?}: {}", create.text);
            let update =
                w.s.call(
                    "PATCH",
                    &format!("/api/collections/{c}/records/{a_rec}"),
                    token,
                    Some(json!({"title": "changed"})),
                )
                .await;
            assert_eq!(update.status, case.update[i], "{c} update as {who:?}: {}", update.text);
            let delete =
                w.s.call("DELETE", &format!("/api/collections/{c}/records/{a_rec}"), token, None).await;
            assert_eq!(delete.status, case.delete[i], "{c} delete as {who:?}: {}", delete.text);
            // Refused writes changed nothing.
            let check =
                w.s.call("GET", &format!("/api/collections/{c}/records/{a_rec}"), w.token(Who::Su), None)
                    .await;
            if case.delete[i] == 204 {
                assert_eq!(check.status, 404);
            } else {
                assert_eq!(check.status, 200);
                let expected = if case.update[i] == 200 { "changed" } else { "a-note" };
                assert_eq!(check.body["title"], expected, "{c} as {who:?}");
            }
            // Clean up for the next caller.
            for id in [a_rec, b_rec] {
                w.s.call("DELETE", &format!("/api/collections/{c}/records/{id}"), w.token(Who::Su), None)
                    .await;
            }
            let leftovers =
                w.s.call(
                    "GET",
                    &format!("/api/collections/{c}/records?filter=(title='new')"),
                    w.token(Who::Su),
                    None,
                )
                .await;
            for item in leftovers.body["items"].as_array().cloned().unwrap_or_default() {
                let id = item["id"].as_str().unwrap_or_default();
                w.s.call("DELETE", &format!("/api/collections/{c}/records/{id}"), w.token(Who::Su), None)
                    .await;
            }
        }
    }
    // Creating a note for someone else is refused (the rule sees the new data).
    let forged =
        w.s.call(
            "POST",
            "/api/collections/notes/records",
            w.token(Who::A),
            Some(json!({"title": "x", "owner": w.b_id})),
        )
        .await;
    forged.assert_problem(400);
}

#[tokio::test]
async fn counts_filters_sorts_and_expands_reveal_nothing_hidden() {
    let w = world().await;
    let a = w.token(Who::A);
    seed(&w, "notes", &w.a_id, "alpha").await;
    seed(&w, "notes", &w.b_id, "bravo").await;
    // A filter naming B's title finds nothing, and the total says nothing either.
    let probe = w.s.call("GET", "/api/collections/notes/records?filter=(title='bravo')", a, None).await;
    assert_eq!(probe.status, 200, "{}", probe.text);
    assert_eq!(probe.body["totalItems"], 0);
    let all = w.s.call("GET", "/api/collections/notes/records", a, None).await;
    assert_eq!(all.body["totalItems"], 1, "{}", all.text);
    // Hidden fields cannot be filtered or sorted on, even on one's own records.
    for query in ["filter=(secret~'alpha')", "filter=(secret!='')", "sort=secret", "sort=-secret"] {
        w.s.call("GET", &format!("/api/collections/notes/records?{query}"), a, None)
            .await
            .assert_problem(400);
    }
    // Nor password/token key of users.
    for query in ["filter=(tokenKey!='')", "filter=(password!='')", "sort=tokenKey"] {
        w.s.call("GET", &format!("/api/collections/users/records?{query}"), a, None)
            .await
            .assert_problem(400);
    }
    // Users see only themselves (users' list rule), whatever they filter by.
    let users = w.s.call("GET", "/api/collections/users/records?filter=(email~'example.com')", a, None).await;
    assert_eq!(users.body["totalItems"], 1, "{}", users.text);
    // Expanding a relation to a record the caller may not view leaves it out.
    let b_note_by_a =
        w.s.call(
            "POST",
            "/api/collections/public/records",
            w.token(Who::Su),
            Some(json!({"title": "p", "owner": w.b_id})),
        )
        .await;
    let id = b_note_by_a.body["id"].as_str().expect("id");
    let expanded =
        w.s.call("GET", &format!("/api/collections/public/records/{id}?expand=owner"), a, None).await;
    assert_eq!(expanded.status, 200, "{}", expanded.text);
    assert!(expanded.body.get("expand").and_then(|e| e.get("owner")).is_none(), "{}", expanded.text);
    let own =
        w.s.call(
            "POST",
            "/api/collections/public/records",
            w.token(Who::Su),
            Some(json!({"title": "q", "owner": w.a_id})),
        )
        .await;
    let id = own.body["id"].as_str().expect("id");
    let expanded =
        w.s.call("GET", &format!("/api/collections/public/records/{id}?expand=owner"), a, None).await;
    assert_eq!(expanded.body["expand"]["owner"]["id"], w.a_id.as_str(), "{}", expanded.text);
    assert!(expanded.body["expand"]["owner"].get("tokenKey").is_none());
}

#[tokio::test]
async fn relations_back_relations_joins_and_sorts_do_not_leak_hidden_records() {
    let w = world().await;
    let a = w.token(Who::A);
    // Public posts pointing at notes: A can list every post, but only see her own notes.
    let c =
        w.s.call(
            "POST",
            "/api/collections",
            w.token(Who::Su),
            Some(json!({
                "name": "pins", "listRule": "", "viewRule": "",
                "fields": [{"name": "label", "type": "text"},
                           {"name": "note", "type": "relation", "collectionId": "notes", "maxSelect": 1}]
            })),
        )
        .await;
    assert_eq!(c.status, 200, "{}", c.text);
    let a_note = seed(&w, "notes", &w.a_id, "alpha").await;
    let b_note = seed(&w, "notes", &w.b_id, "zulu").await;
    for (label, note) in [("to-a", &a_note), ("to-b", &b_note)] {
        let r =
            w.s.call(
                "POST",
                "/api/collections/pins/records",
                w.token(Who::Su),
                Some(json!({"label": label, "note": note})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let list = |who: Who, query: &'static str| {
        let w = &w;
        async move {
            let r =
                w.s.call("GET", &format!("/api/collections/pins/records?{query}"), w.token(who), None).await;
            assert_eq!(r.status, 200, "{query}: {}", r.text);
            r.body["items"]
                .as_array()
                .map(|a| {
                    a.iter().map(|i| i["label"].as_str().unwrap_or_default().to_string()).collect::<Vec<_>>()
                })
                .unwrap_or_default()
        }
    };
    // Probing B's note title through the relation finds nothing for A (the superuser finds it).
    assert_eq!(list(Who::A, "filter=(note.title='zulu')").await, Vec::<String>::new());
    assert_eq!(list(Who::Su, "filter=(note.title='zulu')").await, vec!["to-b"]);
    assert_eq!(list(Who::A, "filter=(note.title='alpha')").await, vec!["to-a"]);
    // A negated probe cannot tell a hidden value from a missing one either.
    assert_eq!(list(Who::A, "filter=(note.title!='zulu')&sort=label").await, vec!["to-a", "to-b"]);
    // Back-relations from users to notes: A sees only her own notes behind each user.
    let users =
        w.s.call(
            "GET",
            "/api/collections/users/records?filter=(notes_via_owner.title?='zulu')",
            w.token(Who::B),
            None,
        )
        .await;
    assert_eq!(users.body["totalItems"], 1, "B sees herself with her note: {}", users.text);
    let users =
        w.s.call("GET", "/api/collections/users/records?filter=(notes_via_owner.title?='zulu')", a, None)
            .await;
    assert_eq!(users.body["totalItems"], 0, "{}", users.text);
    // @collection joins in a client filter only join rows the caller may list.
    assert_eq!(list(Who::A, "filter=(@collection.notes.title?='zulu')").await, Vec::<String>::new());
    assert_eq!(
        list(Who::Su, "filter=(@collection.notes.title?='zulu')&sort=label").await,
        vec!["to-a", "to-b"]
    );
    // Sorting by a hidden record's field treats it as empty: the order reveals nothing.
    let asc = list(Who::A, "sort=note.title,label").await;
    let desc = list(Who::A, "sort=-note.title,label").await;
    assert_eq!(asc, vec!["to-b", "to-a"], "B's title sorts as null (first ascending)");
    assert_eq!(desc, vec!["to-a", "to-b"]);
}

/// Every value a rule hides — a `hidden` field, and the address of a user whose
/// `emailVisibility` is off — probed by every kind of caller through every channel that
/// reads records: filter (own field, relation path, back-relation, `@collection` join), sort
/// (own field and relation path), the cursor a sort produces, expand, and search. Only the
/// superuser (and, for the address, its owner) may learn it. Realtime and exports do not
/// exist yet; they must join this matrix when they do.
#[tokio::test]
async fn every_hidden_value_stays_hidden_through_every_channel_for_every_caller() {
    let w = world().await;
    let su = w.token(Who::Su);
    // Users are listable by everyone, searchable by email; B's address is hidden.
    let r = w
        .s
        .call(
            "PATCH",
            "/api/collections/users",
            su,
            Some(json!({"listRule": "", "viewRule": "", "search": {"enabled": true, "fields": [{"name": "email"}, {"name": "name"}]}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Public notes by B, with a hidden secret.
    seed(&w, "public", &w.b_id, "by-b").await;
    // A key that may read users and public records.
    let key =
        w.s.call(
            "POST",
            "/api/keys",
            su,
            Some(
                json!({"name": "reader", "scopes": {"users": ["list", "view"], "public": ["list", "view"]}}),
            ),
        )
        .await;
    let key = format!("Bearer {}", key.body["key"].as_str().expect("key"));
    let callers: Vec<(Who, Option<String>)> = vec![
        (Who::Anon, None),
        (Who::A, w.token(Who::A).map(String::from)),
        (Who::B, w.token(Who::B).map(String::from)),
        (Who::Key, Some(key)),
        (Who::Su, su.map(String::from)),
    ];
    let b_email = "b@example.com";
    // Wait for the users' search index (superusers see every match).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r = w.s.call("GET", "/api/collections/users/search?q=example", su, None).await;
        if r.body["items"].as_array().is_some_and(|i| i.len() == 2) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "search never caught up: {}", r.text);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for (who, token) in &callers {
        let token = token.as_deref();
        let sees_email = matches!(who, Who::Su | Who::B);
        let privileged = *who == Who::Su;
        let get = |path: String| {
            let s = &w.s;
            async move { s.call("GET", &path, token, None).await }
        };
        // Filters on the address: matches exactly when the caller may see it.
        for q in [
            format!("/api/collections/users/records?filter=email='{b_email}'"),
            "/api/collections/users/records?filter=email~'b%25'".to_string(),
            format!("/api/collections/public/records?filter=owner.email='{b_email}'"),
            "/api/collections/users/records?filter=public_via_owner.owner.email~'b@'".to_string(),
            format!("/api/collections/public/records?filter=@collection.users.email='{b_email}'"),
        ] {
            let r = get(q.clone()).await;
            assert_eq!(r.status, 200, "{who:?} {q}: {}", r.text);
            let found = r.body["totalItems"].as_u64().unwrap_or(0);
            // B sees its own address wherever it appears (own field, relation, join).
            if sees_email {
                assert!(found >= 1, "{who:?} {q}: should see it: {}", r.text);
            } else {
                assert_eq!(found, 0, "{who:?} {q}: learnt a hidden address: {}", r.text);
            }
        }
        // Sorts and the cursors they produce.
        for q in [
            "/api/collections/users/records?sort=email&cursor=&perPage=1",
            "/api/collections/public/records?sort=owner.email&cursor=&perPage=1",
        ] {
            let r = get(q.to_string()).await;
            assert_eq!(r.status, 200, "{who:?} {q}: {}", r.text);
            let cursor = r.body["nextCursor"].as_str().unwrap_or_default();
            let decoded = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, cursor)
                .unwrap_or_default();
            let leaked = String::from_utf8_lossy(&decoded).contains(b_email);
            if !privileged && *who != Who::B {
                assert!(!leaked, "{who:?} {q}: the cursor carries the address");
            }
        }
        // Expand: the owner's address only for those who may see it.
        let r = get("/api/collections/public/records?expand=owner".to_string()).await;
        assert_eq!(r.status, 200, "{who:?}: {}", r.text);
        // (Names repeat the addresses; the `email` key is what must be absent.)
        assert_eq!(
            r.text.contains(&format!(r#""email":"{b_email}""#)),
            sees_email,
            "{who:?} expand: {}",
            r.text
        );
        // The hidden field: refused in filters and sorts, absent from output, for all but superusers.
        for q in ["filter=secret~'by'", "sort=secret", "filter=owner.tokenKey!=''"] {
            let r = get(format!("/api/collections/public/records?{q}")).await;
            if privileged {
                assert_eq!(r.status, 200, "{who:?} {q}: {}", r.text);
            } else {
                r.assert_problem(400);
            }
        }
        let r = get("/api/collections/public/records".to_string()).await;
        assert!(!r.text.contains("by-b-secret"), "{who:?}: hidden fields are never returned: {}", r.text);
        // Search by the hidden address finds nothing, for anyone (the index never holds it).
        let r = get("/api/collections/users/search?q=email:b".to_string()).await;
        assert_eq!(r.status, 200, "{who:?}: {}", r.text);
        assert_eq!(r.body["items"].as_array().map(Vec::len), Some(0), "{who:?} search: {}", r.text);
    }
}

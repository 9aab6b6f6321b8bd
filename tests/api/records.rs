use serde_json::{json, Value};

use crate::common::{posts_collection, Server};

async fn with_posts(rule: Option<&str>) -> (Server, String) {
    let s = Server::start();
    let t = s.setup_superuser().await;
    let mut body = posts_collection("posts");
    for slot in ["listRule", "viewRule", "createRule", "updateRule", "deleteRule"] {
        body[slot] = rule.map(Value::from).unwrap_or(Value::Null);
    }
    let r = s.call("POST", "/api/collections", Some(&t), Some(body)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    (s, t)
}

fn full_post() -> Value {
    json!({
        "title": "Hello",
        "views": "42",
        "published": true,
        "contact": "a@example.com",
        "site": "https://example.com",
        "when": "2024-05-01T10:20:30Z",
        "status": "live",
        "tags": ["a", "c"],
        "meta": {"k": [1, 2]},
        "body": "<p>hi</p>",
        "code": "ABC",
        "secret": "s3",
        "unknownField": "ignored"
    })
}

#[tokio::test]
async fn create_returns_pocketbase_record_json() {
    let (s, t) = with_posts(None).await;
    let r = s.call("POST", "/api/collections/posts/records", Some(&t), Some(full_post())).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let b = &r.body;
    let keys: Vec<&String> = b.as_object().expect("object").keys().collect();
    assert_eq!(&keys[..3], &["collectionId", "collectionName", "id"]);
    assert_eq!(b["collectionName"], "posts");
    let id = b["id"].as_str().expect("id");
    assert_eq!(id.len(), 15);
    assert!(id.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    assert_eq!(b["views"], 42, "numeric strings are cast");
    assert_eq!(b["when"], "2024-05-01 10:20:30.000Z");
    assert_eq!(b["tags"], json!(["a", "c"]));
    assert_eq!(b["meta"], json!({"k": [1, 2]}));
    assert!(b.get("secret").is_none(), "hidden field not returned");
    assert!(b.get("unknownField").is_none());
    let created = b["created"].as_str().expect("created");
    assert_eq!(created.len(), "2024-05-01 10:20:30.000Z".len());
    assert!(created.ends_with('Z') && created.as_bytes()[10] == b' ');
    assert_eq!(b["created"], b["updated"]);
}

#[tokio::test]
async fn get_update_and_delete_a_record() {
    let (s, t) = with_posts(None).await;
    let created = s.call("POST", "/api/collections/posts/records", Some(&t), Some(full_post())).await.body;
    let id = created["id"].as_str().expect("id");
    let path = format!("/api/collections/posts/records/{id}");
    let got = s.call("GET", &path, Some(&t), None).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, created);

    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let updated = s
        .call(
            "PATCH",
            &path,
            Some(&t),
            Some(json!({"title": "Changed", "created": "1999-01-01", "id": "zzzzzzzzzzzzzzz"})),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_eq!(updated.body["title"], "Changed");
    assert_eq!(updated.body["views"], 42, "absent fields keep their value");
    assert_eq!(updated.body["id"], id, "id cannot change");
    assert_eq!(updated.body["created"], created["created"], "created is server-managed");
    assert_ne!(updated.body["updated"], created["updated"]);

    let invalid = s.call("PATCH", &path, Some(&t), Some(json!({"views": -1}))).await;
    invalid.assert_problem(400).assert_field_error("views", "validation_min_number_constraint");
    assert_eq!(
        s.call("GET", &path, Some(&t), None).await.body["title"],
        "Changed",
        "failed update changed nothing"
    );

    assert_eq!(s.call("DELETE", &path, Some(&t), None).await.status, 204);
    s.call("GET", &path, Some(&t), None).await.assert_problem(404);
    s.call("DELETE", &path, Some(&t), None).await.assert_problem(404);
    s.call("PATCH", &path, Some(&t), Some(json!({"title": "x"}))).await.assert_problem(404);
}

#[tokio::test]
async fn client_chosen_ids_are_validated_and_unique() {
    let (s, t) = with_posts(None).await;
    let r = s
        .call(
            "POST",
            "/api/collections/posts/records",
            Some(&t),
            Some(json!({"id": "abcdefghijklmno", "title": "x"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["id"], "abcdefghijklmno");
    s.call(
        "POST",
        "/api/collections/posts/records",
        Some(&t),
        Some(json!({"id": "abcdefghijklmno", "title": "y"})),
    )
    .await
    .assert_problem(400)
    .assert_field_error("id", "validation_not_unique");
    for bad in [json!("short"), json!("ABCDEFGHIJKLMNO"), json!("abcdefghijklm-o"), json!(12)] {
        let r = s
            .call("POST", "/api/collections/posts/records", Some(&t), Some(json!({"id": bad, "title": "y"})))
            .await;
        r.assert_problem(400);
        assert!(r.body["data"]["id"]["code"].is_string(), "{}", r.text);
    }
}

#[tokio::test]
async fn every_field_type_reports_its_validation_error() {
    let (s, t) = with_posts(None).await;
    let cases = [
        (json!({}), "title", "validation_required"),
        (json!({"title": "x".repeat(101)}), "title", "validation_max_text_constraint"),
        (json!({"title": "t", "views": 1.5}), "views", "validation_only_int_constraint"),
        (json!({"title": "t", "views": "many"}), "views", "validation_invalid_type"),
        (json!({"title": "t", "published": "perhaps"}), "published", "validation_invalid_type"),
        (json!({"title": "t", "contact": "nope"}), "contact", "validation_invalid_email"),
        (json!({"title": "t", "site": "ftp//x"}), "site", "validation_invalid_url"),
        (json!({"title": "t", "when": "someday"}), "when", "validation_invalid_date"),
        (json!({"title": "t", "status": "archived"}), "status", "validation_invalid_value"),
        (json!({"title": "t", "tags": ["a", "z"]}), "tags", "validation_invalid_value"),
        (json!({"title": "t", "meta": {"big": "x".repeat(3000)}}), "meta", "validation_json_size_limit"),
        (json!({"title": "t", "code": "abc"}), "code", "validation_invalid_format"),
        (json!({"title": ["t"]}), "title", "validation_invalid_type"),
    ];
    for (body, field, code) in cases {
        let r = s.call("POST", "/api/collections/posts/records", Some(&t), Some(body.clone())).await;
        r.assert_problem(400).assert_field_error(field, code);
        assert_eq!(r.body["message"], "Failed to create record.");
    }
    let list = s.call("GET", "/api/collections/posts/records", Some(&t), None).await;
    assert_eq!(list.body["totalItems"], 0, "no invalid record was stored");
}

#[tokio::test]
async fn list_pages_sorts_and_counts() {
    let (s, t) = with_posts(None).await;
    for i in 0..25 {
        let r = s
            .call(
                "POST",
                "/api/collections/posts/records",
                Some(&t),
                Some(json!({"title": format!("t{:02}", 24 - i), "views": i % 5})),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    let page = s.call("GET", "/api/collections/posts/records?page=2&perPage=10", Some(&t), None).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!((page.body["page"].clone(), page.body["perPage"].clone()), (json!(2), json!(10)));
    assert_eq!(page.body["totalItems"], 25);
    assert_eq!(page.body["totalPages"], 3);
    assert_eq!(page.body["items"].as_array().expect("items").len(), 10);

    let titles = |r: &crate::common::Reply| -> Vec<String> {
        r.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["title"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let by_title = s.call("GET", "/api/collections/posts/records?sort=title&perPage=3", Some(&t), None).await;
    assert_eq!(titles(&by_title), vec!["t00", "t01", "t02"]);
    let newest =
        s.call("GET", "/api/collections/posts/records?sort=-created&perPage=2", Some(&t), None).await;
    assert_eq!(titles(&newest), vec!["t00", "t01"], "last created first");
    let oldest =
        s.call("GET", "/api/collections/posts/records?sort=created,id&perPage=2", Some(&t), None).await;
    assert_eq!(titles(&oldest), vec!["t24", "t23"]);
    let multi =
        s.call("GET", "/api/collections/posts/records?sort=-views,title&perPage=3", Some(&t), None).await;
    assert_eq!(titles(&multi), vec!["t00", "t05", "t10"]);

    // Pages walk the whole set without duplicates or gaps.
    let mut seen = std::collections::HashSet::new();
    for p in 1..=4 {
        let r = s
            .call(
                "GET",
                &format!("/api/collections/posts/records?sort=views&perPage=7&page={p}"),
                Some(&t),
                None,
            )
            .await;
        for item in r.body["items"].as_array().expect("items") {
            assert!(seen.insert(item["id"].as_str().expect("id").to_string()), "duplicate across pages");
        }
    }
    assert_eq!(seen.len(), 25);

    let skip = s.call("GET", "/api/collections/posts/records?skipTotal=1&perPage=5", Some(&t), None).await;
    assert_eq!(skip.body["totalItems"], -1);
    assert_eq!(skip.body["totalPages"], -1);
    assert_eq!(skip.body["items"].as_array().expect("items").len(), 5);

    let big = s.call("GET", "/api/collections/posts/records?perPage=5000", Some(&t), None).await;
    assert_eq!(big.body["perPage"], 1000, "perPage is capped");
    let past = s.call("GET", "/api/collections/posts/records?page=99", Some(&t), None).await;
    assert_eq!(past.body["items"], json!([]));

    let fields =
        s.call("GET", "/api/collections/posts/records?fields=id,title&perPage=1", Some(&t), None).await;
    let item = fields.body["items"][0].as_object().expect("item").clone();
    assert_eq!(item.keys().collect::<Vec<_>>(), vec!["id", "title"]);

    let body = s
        .call(
            "POST",
            "/api/collections/posts/records",
            Some(&t),
            Some(json!({"title": "zz", "body": "<p>Hello <b>big</b>\n world of text</p>"})),
        )
        .await;
    let id = body.body["id"].as_str().expect("id");
    let short = s
        .call(
            "GET",
            &format!("/api/collections/posts/records/{id}?fields=id,body:excerpt(9,true)"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(short.body, json!({"id": id, "body": "Hello big..."}), "{}", short.text);
}

#[tokio::test]
async fn bad_list_parameters_are_400() {
    let (s, t) = with_posts(None).await;
    for query in [
        "sort=nosuchfield",
        "sort=title.x",
        "page=abc",
        "perPage=1.5",
        "filter=title%3D",
        "filter=nosuchfield%3D1",
        "expand=author",
        "fields=title:excerpt(0)",
        "fields=title:upper",
        "fields=expand..author",
    ] {
        s.call("GET", &format!("/api/collections/posts/records?{query}"), Some(&t), None)
            .await
            .assert_problem(400);
    }
}

#[tokio::test]
async fn null_rules_mean_superusers_only_and_empty_rules_mean_public() {
    let (s, t) = with_posts(None).await;
    let id =
        s.call("POST", "/api/collections/posts/records", Some(&t), Some(json!({"title": "x"}))).await.body
            ["id"]
            .as_str()
            .expect("id")
            .to_string();
    let one = format!("/api/collections/posts/records/{id}");
    s.call("GET", "/api/collections/posts/records", None, None).await.assert_problem(403);
    s.call("GET", &one, None, None).await.assert_problem(403);
    s.call("POST", "/api/collections/posts/records", None, Some(json!({"title": "y"})))
        .await
        .assert_problem(403);
    s.call("PATCH", &one, None, Some(json!({"title": "y"}))).await.assert_problem(403);
    s.call("DELETE", &one, None, None).await.assert_problem(403);
    // Without credentials PocketBase's 403 stays; a token that is not accepted gets 401 with the reason.
    s.call("GET", "/api/collections/posts/records", Some("garbage"), None).await.assert_problem(401);

    let (p, pt) = with_posts(Some("")).await;
    let r = p.call("POST", "/api/collections/posts/records", None, Some(json!({"title": "public"}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let pid = r.body["id"].as_str().expect("id");
    assert_eq!(p.call("GET", "/api/collections/posts/records", None, None).await.status, 200);
    assert_eq!(p.call("GET", &format!("/api/collections/posts/records/{pid}"), None, None).await.status, 200);
    let _ = pt;

    // A rule expression filters: records the caller may not see are simply not there.
    let (q, qt) = with_posts(Some("@request.auth.id != ''")).await;
    let r = q
        .call("POST", "/api/collections/posts/records", Some(&qt), Some(json!({"title": "members only"})))
        .await;
    let qid = r.body["id"].as_str().expect("id").to_string();
    let anon = q.call("GET", "/api/collections/posts/records", None, None).await;
    assert_eq!(anon.status, 200, "{}", anon.text);
    assert_eq!(anon.body["totalItems"], 0);
    q.call("GET", &format!("/api/collections/posts/records/{qid}"), None, None).await.assert_problem(404);
    q.call("POST", "/api/collections/posts/records", None, Some(json!({"title": "y"})))
        .await
        .assert_problem(400);
    q.call("DELETE", &format!("/api/collections/posts/records/{qid}"), None, None).await.assert_problem(404);
    assert_eq!(q.call("GET", "/api/collections/posts/records", Some(&qt), None).await.body["totalItems"], 1);
}

#[tokio::test]
async fn concurrent_creates_are_all_acknowledged_and_stored() {
    let (s, t) = with_posts(Some("")).await;
    let s = std::sync::Arc::new(s);
    let mut handles = Vec::new();
    for i in 0..200 {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            // Every third request is invalid: it must fail alone.
            let body = if i % 3 == 0 { json!({"views": 1}) } else { json!({"title": format!("c{i}")}) };
            s.call("POST", "/api/collections/posts/records", None, Some(body)).await.status
        }));
    }
    let mut ok = 0;
    for h in handles {
        match h.await.expect("join") {
            200 => ok += 1,
            400 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(ok, 133);
    let list = s.call("GET", "/api/collections/posts/records?perPage=1000", Some(&t), None).await;
    assert_eq!(list.body["totalItems"], 133);
    assert_eq!(list.body["items"].as_array().expect("items").len(), 133);
}

#[tokio::test]
async fn superusers_are_records_of_an_auth_collection() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    let list = s.call("GET", "/api/collections/_superusers/records", Some(&t), None).await;
    assert_eq!(list.status, 200);
    let me = &list.body["items"][0];
    assert_eq!(me["email"], crate::common::SU_EMAIL);
    assert!(me.get("password").is_none() && me.get("tokenKey").is_none(), "secrets never returned: {me}");
    // Creating another superuser needs a matching passwordConfirm and a unique email.
    s.call(
        "POST",
        "/api/collections/_superusers/records",
        Some(&t),
        Some(json!({"email": "b@example.com", "password": "password-1"})),
    )
    .await
    .assert_problem(400)
    .assert_field_error("passwordConfirm", "validation_required");
    s.call(
        "POST",
        "/api/collections/_superusers/records",
        Some(&t),
        Some(json!({"email": crate::common::SU_EMAIL, "password": "password-1", "passwordConfirm": "password-1"})),
    )
    .await
    .assert_problem(400)
    .assert_field_error("email", "validation_not_unique");
    let r = s
        .call(
            "POST",
            "/api/collections/_superusers/records",
            Some(&t),
            Some(
                json!({"email": "b@example.com", "password": "password-1", "passwordConfirm": "password-1"}),
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // The only-superuser guard: delete b, then deleting the last one is refused.
    let b_id = r.body["id"].as_str().expect("id");
    assert_eq!(
        s.call("DELETE", &format!("/api/collections/_superusers/records/{b_id}"), Some(&t), None)
            .await
            .status,
        204
    );
    let me_id = me["id"].as_str().expect("id");
    s.call("DELETE", &format!("/api/collections/_superusers/records/{me_id}"), Some(&t), None)
        .await
        .assert_problem(409);
}

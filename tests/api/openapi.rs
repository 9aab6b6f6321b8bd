use serde_json::{json, Value};

use crate::common::{command, posts_collection, Server};

#[test]
fn committed_openapi_json_is_fresh() {
    let out = command().arg("export-openapi").output().expect("run export-openapi");
    assert!(out.status.success());
    let exported: Value = serde_json::from_slice(&out.stdout).expect("exported spec is JSON");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/openapi.json");
    let committed: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read openapi/openapi.json"))
            .expect("committed spec is JSON");
    assert!(
        exported == committed,
        "openapi/openapi.json is stale: run `cargo run -- export-openapi > openapi/openapi.json`"
    );
}

#[tokio::test]
async fn live_spec_has_typed_paths_and_schemas_per_collection() {
    let s = Server::start();
    let token = s.setup_superuser().await;
    let r = s.call("POST", "/api/collections", Some(&token), Some(posts_collection("articles"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // `articles` is superuser-only: its typed paths are in a superuser's spec.
    let spec = s.call("GET", "/api/openapi.json", Some(&token), None).await;
    assert_eq!(spec.status, 200);
    let b = &spec.body;
    assert_eq!(b["openapi"], "3.1.0");
    assert!(b["paths"]["/api/collections/articles/records"]["post"].is_object());
    assert!(b["paths"]["/api/collections/articles/records/{id}"]["patch"].is_object());
    let record = &b["components"]["schemas"]["ArticlesRecord"];
    assert_eq!(record["properties"]["views"]["type"], "integer");
    assert_eq!(record["properties"]["status"]["enum"], serde_json::json!(["draft", "live", ""]));
    assert!(record["properties"].get("secret").is_none(), "hidden fields are not in the response schema");
    let create = &b["components"]["schemas"]["ArticlesCreate"];
    assert_eq!(create["required"], serde_json::json!(["title"]));
    assert!(create["properties"].get("created").is_none(), "server-managed fields are not writable");
    // Every $ref resolves.
    let text = spec.text.clone();
    for piece in text.split("\"$ref\":\"#/components/").skip(1) {
        let target = piece.split('"').next().expect("ref target");
        let mut node = &b["components"];
        for part in target.split('/') {
            node = &node[part];
        }
        assert!(!node.is_null(), "dangling $ref {target}");
    }
}

#[tokio::test]
async fn collection_json_schema_describes_fields() {
    let s = Server::start();
    let token = s.setup_superuser().await;
    s.call("POST", "/api/collections", Some(&token), Some(posts_collection("articles"))).await;
    let r = s.call("GET", "/api/collections/articles/schema", Some(&token), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.content_type.starts_with("application/schema+json"));
    assert_eq!(r.body["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert_eq!(r.body["properties"]["title"]["maxLength"], 100);
    assert_eq!(r.body["properties"]["tags"]["type"], "array");
    // An optional email is an address or "" (its empty value).
    assert_eq!(r.body["properties"]["contact"]["anyOf"][0]["format"], "email");
    assert_eq!(r.body["properties"]["contact"]["anyOf"][1]["const"], "");
    assert_eq!(r.body["$defs"]["create"]["required"], serde_json::json!(["title"]));
    // Anonymous callers may not see a superuser-only collection's schema.
    s.call("GET", "/api/collections/articles/schema", None, None).await.assert_problem(403);
    s.call("GET", "/api/collections/nope/schema", Some(&token), None).await.assert_problem(404);
}

#[tokio::test]
async fn docs_page_and_assets_are_embedded() {
    let s = Server::start();
    let page = s.client.get(s.url("/api/docs")).send().await.expect("docs");
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap_or_default().starts_with("text/html"));
    let html = page.text().await.expect("html");
    assert!(html.contains("/api/docs/swagger-ui-bundle.js"));
    let js = s.client.get(s.url("/api/docs/swagger-ui-bundle.js")).send().await.expect("bundle");
    assert_eq!(js.status(), 200);
    assert!(js.bytes().await.expect("bytes").len() > 100_000);
    s.call("GET", "/api/docs/missing.js", None, None).await.assert_problem(404);
}

/// The names of the collections described in a live spec (from their record paths).
fn described_collections(spec: &Value) -> Vec<String> {
    let mut names: Vec<String> = spec["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .filter_map(|p| p.strip_prefix("/api/collections/")?.strip_suffix("/records").map(str::to_string))
        .filter(|name| name != "{collection}")
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn live_spec_shows_each_caller_only_what_it_may_see() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    // Superusers only (null rules), public with a hidden field, and a filter rule.
    let mut vault = posts_collection("vault");
    vault["fields"].as_array_mut().expect("fields").push(json!({"name": "vaultonly", "type": "text"}));
    let notes = json!({
        "name": "notes", "listRule": "", "viewRule": "",
        "fields": [{"name": "body", "type": "text"}, {"name": "internalnote", "type": "text", "hidden": true}]
    });
    let members = json!({
        "name": "members", "listRule": "@request.auth.id != ''", "viewRule": null,
        "fields": [{"name": "nick", "type": "text"}]
    });
    let users = json!({
        "name": "users", "type": "auth", "createRule": "",
        "listRule": "id = @request.auth.id", "viewRule": "id = @request.auth.id",
        "fields": [{"name": "nick", "type": "text"}]
    });
    for body in [vault, notes, members, users] {
        let r = s.call("POST", "/api/collections", Some(&su), Some(body)).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let key = s
        .call("POST", "/api/keys", Some(&su), Some(json!({"name": "k", "scopes": {"vault": ["list"]}})))
        .await;
    assert_eq!(key.status, 201, "{}", key.text);
    let key = format!("Bearer {}", key.body["key"].as_str().expect("key"));

    let anonymous = s.call("GET", "/api/openapi.json", None, None).await;
    let superuser = s.call("GET", "/api/openapi.json", Some(&su), None).await;
    let api_key = s.call("GET", "/api/openapi.json", Some(&key), None).await;
    for r in [&anonymous, &superuser, &api_key] {
        assert_eq!(r.status, 200, "{}", r.text);
    }

    // Superusers: everything, hidden fields included (in the bodies they may write).
    let all = described_collections(&superuser.body);
    for name in ["_superusers", "members", "notes", "vault"] {
        assert!(all.contains(&name.to_string()), "{name} missing for superusers: {all:?}");
    }
    let schemas = &superuser.body["components"]["schemas"];
    assert!(schemas["NotesCreate"]["properties"]["internalnote"].is_object());
    assert!(schemas["VaultCreate"]["properties"]["secret"].is_object());

    // Anonymous: no superuser-only collection, no hidden field name anywhere.
    assert_eq!(described_collections(&anonymous.body), ["members", "notes", "users"]);
    for absent in ["vault", "Vault", "vaultonly", "internalnote", "_superusers", "tokenKey"] {
        assert!(!anonymous.text.contains(absent), "anonymous spec mentions {absent}");
    }
    let notes_create = &anonymous.body["components"]["schemas"]["NotesCreate"]["properties"];
    assert!(notes_create["body"].is_object() && notes_create.get("internalnote").is_none());
    // Signing up still needs the (write-only) password; no response schema carries it.
    let users = &anonymous.body["components"]["schemas"];
    assert_eq!(users["UsersCreate"]["properties"]["password"]["writeOnly"], true);
    assert!(users["UsersRecord"]["properties"].get("password").is_none());

    // An API key: the collections its scopes reach, without hidden fields.
    assert_eq!(described_collections(&api_key.body), ["vault"]);
    assert!(!api_key.text.contains("\"secret\""), "hidden field in the key's spec");
    assert!(api_key.body["components"]["schemas"]["VaultCreate"]["properties"]["vaultonly"].is_object());

    // The static part is the same for everyone: every committed path is in each view.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/openapi.json");
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json");
    for r in [&anonymous, &superuser, &api_key] {
        for (p, item) in committed["paths"].as_object().expect("paths") {
            assert_eq!(&r.body["paths"][p], item, "static path {p} differs");
        }
    }

    // /api/collections/{c}/schema agrees with each caller's spec: 403 exactly when absent,
    // and the same fields when present.
    for (label, token, spec) in [
        ("anonymous", None, &anonymous),
        ("superuser", Some(su.as_str()), &superuser),
        ("key", Some(key.as_str()), &api_key),
    ] {
        let described = described_collections(&spec.body);
        for name in &all {
            let r = s.call("GET", &format!("/api/collections/{name}/schema"), token, None).await;
            if described.contains(name) {
                assert_eq!(r.status, 200, "{label} {name}: {}", r.text);
                let component = format!("{}Create", component(name));
                let in_spec: Vec<&String> = spec.body["components"]["schemas"][&component]["properties"]
                    .as_object()
                    .expect("props")
                    .keys()
                    .collect();
                let in_schema: Vec<&String> =
                    r.body["$defs"]["create"]["properties"].as_object().expect("props").keys().collect();
                assert_eq!(in_spec, in_schema, "{label} {name}");
            } else {
                r.assert_problem(403);
            }
        }
    }
    let notes_schema = s.call("GET", "/api/collections/notes/schema", None, None).await;
    assert!(!notes_schema.text.contains("internalnote"), "{}", notes_schema.text);
}

/// `component_name` of the server: `_superusers` → `Superusers`, `notes` → `Notes`.
fn component(name: &str) -> String {
    name.split('_').filter(|p| !p.is_empty()).map(|p| p[..1].to_uppercase() + &p[1..]).collect()
}

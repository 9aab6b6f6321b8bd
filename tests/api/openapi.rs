use serde_json::Value;

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
    let spec = s.call("GET", "/api/openapi.json", None, None).await;
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

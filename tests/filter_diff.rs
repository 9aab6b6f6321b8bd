//! Differential test: the same filters over the same records give the same results in
//! Backbone and in the real PocketBase (started with tests/peers/pocketbase.sh, which
//! installs the pinned release into .cache/peers on first use).

mod common;

use std::process::Command;

use serde_json::{json, Value};

use common::Server;

/// A running PocketBase peer, stopped on drop.
struct Peer {
    script: std::path::PathBuf,
    port: u16,
    base: String,
    token: String,
    _dir: tempfile::TempDir,
}

impl Peer {
    fn start() -> Peer {
        // The project's own peer script; BACKBONE_PEER_SCRIPT overrides it.
        let script =
            std::env::var("BACKBONE_PEER_SCRIPT").map(std::path::PathBuf::from).unwrap_or_else(|_| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/pocketbase.sh")
            });
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let out = Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(port.to_string())
            .arg(dir.path().join("pb_data"))
            .output()
            .expect("run the peer script");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "peer did not start: {text}\n{}", String::from_utf8_lossy(&out.stderr));
        let get = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .map(str::to_string)
                .unwrap_or_default()
        };
        Peer { script, port, base: get("BASE_URL"), token: get("SUPERUSER_TOKEN"), _dir: dir }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(&self.script).arg("stop").arg(self.port.to_string()).output();
    }
}

async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client.request(method, url).header("Authorization", token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// (filter, sort) pairs compared in order, page 2 of 4 records.
const SORTED: &[(&str, &str)] = &[
    ("n >= 1", "-n"),
    ("n > 2 && n < 9", "n"),
    ("status = 'live' && n > 0", "-n"),
    ("status = 'draft'", "n"),
    ("title > 'a'", "title"),
    ("title ~ 'e%'", "-title"),
    ("n != 4", "-title"),
    ("", "title"),
];

const FILTERS: &[&str] = &[
    "n = 3",
    "n != 3",
    "n > 2 && n <= 7",
    "n >= 5 || b = true",
    "n < 0",
    "title = 'alpha'",
    "title != 'alpha'",
    "title ~ 'ph'",
    "title ~ 'A'",
    "title !~ 'a'",
    "title ~ 'a%'",
    "title ~ '%a'",
    "title = ''",
    "title = null",
    "title != ''",
    "b = true",
    "b = false",
    "b != true",
    "tags ?= 'x'",
    "tags = 'x'",
    "tags != 'x'",
    "tags ?!= 'x'",
    "tags:each ?= 'x'",
    "tags:each = 'x'",
    "tags:each != 'x'",
    "tags:each ?!= 'x'",
    "tags = '[]'",
    "tags ~ 'y'",
    "tags:length = 0",
    "tags:length >= 2",
    "status = 'live'",
    "status = ''",
    "status != 'live'",
    "n = 3 && title = 'gamma' || n = 9",
    "n = 3 && (title = 'gamma' || n = 9)",
    "(n > 1 && n < 4) || (n > 6 && n < 9)",
    "title:lower = 'delta'",
    "created <= @now",
    "created > @now",
    "n = '3'",
    "n > '10'",
    "title < 'c'",
    "title >= 'beta'",
    "meta.k = 1",
    "meta.k > 1",
    "meta.missing = null",
];

#[tokio::test(flavor = "multi_thread")]
async fn filters_give_the_same_results_as_pocketbase() {
    let peer = Peer::start();
    let ours = Server::start();
    let our_token = ours.setup_superuser().await;
    let client = reqwest::Client::new();
    let collection = json!({
        "name": "diff",
        "type": "base",
        "fields": [
            {"name": "title", "type": "text"},
            {"name": "n", "type": "number"},
            {"name": "b", "type": "bool"},
            {"name": "tags", "type": "select", "values": ["x", "y", "z"], "maxSelect": 3},
            {"name": "status", "type": "select", "values": ["draft", "live"], "maxSelect": 1},
            {"name": "meta", "type": "json"},
            {"name": "created", "type": "autodate", "onCreate": true, "onUpdate": false},
            {"name": "updated", "type": "autodate", "onCreate": true, "onUpdate": true}
        ],
        // Backbone answers the range, prefix and sort cases below from these indexes.
        "indexes": [
            "CREATE INDEX idx_diff_n ON diff (n)",
            "CREATE INDEX idx_diff_title ON diff (title)",
            "CREATE INDEX idx_diff_status_n ON diff (status, n)"
        ]
    });
    let servers = [(peer.base.clone(), peer.token.clone()), (ours.base.clone(), our_token.clone())];
    for (base, token) in &servers {
        let (status, body) = send(
            &client,
            reqwest::Method::POST,
            format!("{base}/api/collections"),
            token,
            Some(collection.clone()),
        )
        .await;
        assert_eq!(status, 200, "{base}: {body}");
    }
    let titles = ["alpha", "beta", "gamma", "Delta", "", "epsilon", "zeta", "eta", "theta", "iota"];
    for (i, title) in titles.iter().enumerate() {
        let tags: Vec<&str> = ["x", "y", "z"]
            .iter()
            .copied()
            .filter(|t| !(i + t.len() * (t.as_bytes()[0] as usize)).is_multiple_of(3))
            .take(i % 4)
            .collect();
        let record = json!({
            "id": format!("diffrecord{i:05}"),
            "title": title,
            "n": i as i64,
            "b": i.is_multiple_of(3),
            "tags": tags,
            "status": if i.is_multiple_of(2) { "live" } else if i.is_multiple_of(5) { "" } else { "draft" },
            "meta": if i.is_multiple_of(4) { json!({"k": i % 3}) } else { json!(null) },
        });
        for (base, token) in &servers {
            let (status, body) = send(
                &client,
                reqwest::Method::POST,
                format!("{base}/api/collections/diff/records"),
                token,
                Some(record.clone()),
            )
            .await;
            assert_eq!(status, 200, "{base}: {body}");
        }
    }
    let mut mismatches = Vec::new();
    for filter in FILTERS {
        let mut results = Vec::new();
        for (base, token) in &servers {
            let encoded: String = url::form_urlencoded::byte_serialize(filter.as_bytes()).collect();
            let url = format!("{base}/api/collections/diff/records?perPage=100&sort=id&filter={encoded}");
            let (status, body) = send(&client, reqwest::Method::GET, url, token, None).await;
            let ids: Vec<String> = body["items"]
                .as_array()
                .map(|items| {
                    items.iter().filter_map(|i| i["id"].as_str()).map(|s| s[10..].to_string()).collect()
                })
                .unwrap_or_default();
            results.push((status, ids));
        }
        if results[0] != results[1] {
            mismatches.push(format!("{filter}: PocketBase {:?} vs Backbone {:?}", results[0], results[1]));
        }
    }
    // Ordered answers: the same ids in the same order (no ties in these sorts).
    for (filter, sort) in SORTED {
        let mut results = Vec::new();
        for (base, token) in &servers {
            let encoded: String = url::form_urlencoded::byte_serialize(filter.as_bytes()).collect();
            let sort_encoded: String = url::form_urlencoded::byte_serialize(sort.as_bytes()).collect();
            let url = format!(
                "{base}/api/collections/diff/records?perPage=4&page=2&sort={sort_encoded}&filter={encoded}"
            );
            let (status, body) = send(&client, reqwest::Method::GET, url, token, None).await;
            let ids: Vec<String> = body["items"]
                .as_array()
                .map(|items| {
                    items.iter().filter_map(|i| i["id"].as_str()).map(|s| s[10..].to_string()).collect()
                })
                .unwrap_or_default();
            results.push((status, ids, body["totalItems"].clone()));
        }
        if results[0] != results[1] {
            mismatches
                .push(format!("{filter} / {sort}: PocketBase {:?} vs Backbone {:?}", results[0], results[1]));
        }
    }
    println!(
        "filter differential: {} filters and {} sorted pages compared, {} mismatches",
        FILTERS.len(),
        SORTED.len(),
        mismatches.len()
    );
    assert!(mismatches.is_empty(), "filters that differ from PocketBase:\n{}", mismatches.join("\n"));
}

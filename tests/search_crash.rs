//! Search index consistency under crashes (issue #8): a burst of concurrent creates,
//! updates and deletes on a searchable collection, interrupted by SIGKILL, then checked
//! after a restart; finally the index directory is deleted and must be rebuilt equal.
//!
//! After every restart, once `/api/search/status` reports no lag:
//! - every live record is found by its current unique token, and by nothing else;
//! - every token no live record holds (deleted records, overwritten by updates) finds nothing;
//! - the index holds exactly as many documents as there are live records.
//!
//! Knobs: `BACKBONE_CRASH_SEED` (replay; the seed is printed), `BACKBONE_CRASH_CYCLES`
//! (SIGKILL cycles, default 3). Run: `cargo test --test search_crash -- --nocapture`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Server, StartOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const CLIENTS: usize = 6;
const DEFAULT_CYCLES: usize = 3;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

async fn call(
    client: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let method = reqwest::Method::from_bytes(method.as_bytes()).ok()?;
    let mut req = client.request(method, format!("{base}{path}")).header("Authorization", token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.ok()?;
    let status = res.status().as_u16();
    let body = res.json::<Value>().await.unwrap_or(Value::Null);
    Some((status, body))
}

/// One client's burst: creates, then updates (new token) or deletes its own records.
async fn burst(
    client: reqwest::Client,
    base: String,
    token: String,
    who: usize,
    cycle: usize,
    seed: u64,
    tokens: Arc<Mutex<BTreeSet<String>>>,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ ((who as u64) << 32) ^ cycle as u64);
    let mut mine: Vec<String> = Vec::new();
    for n in 0.. {
        let roll: u32 = rng.gen_range(0..10);
        let fresh = format!("tk{cycle}c{who}n{n}");
        tokens.lock().expect("tokens").insert(fresh.clone());
        let body = json!({"body": format!("{fresh} shared filler words")});
        let result = if roll < 6 || mine.is_empty() {
            let r = call(&client, &base, "POST", "/api/collections/docs/records", &token, Some(body)).await;
            if let Some((200, v)) = &r {
                if let Some(id) = v["id"].as_str() {
                    mine.push(id.to_string());
                }
            }
            r
        } else if roll < 8 {
            let id = &mine[rng.gen_range(0..mine.len())];
            call(&client, &base, "PATCH", &format!("/api/collections/docs/records/{id}"), &token, Some(body))
                .await
        } else {
            let id = mine.swap_remove(rng.gen_range(0..mine.len()));
            call(&client, &base, "DELETE", &format!("/api/collections/docs/records/{id}"), &token, None).await
        };
        if result.is_none() {
            return; // the server died
        }
    }
}

async fn wait_caught_up(s: &Server, su: &str) {
    let started = Instant::now();
    loop {
        let r = s.call("GET", "/api/search/status", Some(su), None).await;
        if r.status == 200 && r.body["lag"] == 0 && r.body["rebuilding"] == false && r.body["healthy"] == true
        {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "search did not catch up: {}", r.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Live records: id → body.
async fn live(s: &Server, su: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for page in 1.. {
        let r = s
            .call("GET", &format!("/api/collections/docs/records?perPage=1000&page={page}"), Some(su), None)
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let items = r.body["items"].as_array().cloned().unwrap_or_default();
        for item in &items {
            out.insert(
                item["id"].as_str().expect("id").to_string(),
                item["body"].as_str().unwrap_or_default().to_string(),
            );
        }
        if items.len() < 1000 {
            return out;
        }
    }
    out
}

/// The index equals the data: checked through the public search API.
async fn assert_index_equals_data(s: &Server, su: &str, tokens: &BTreeSet<String>, context: &str) {
    wait_caught_up(s, su).await;
    let records = live(s, su).await;
    let mut holder: BTreeMap<String, String> = BTreeMap::new();
    for (id, body) in &records {
        let token = body.split_whitespace().next().expect("token").to_string();
        holder.insert(token, id.clone());
    }
    let mut problems = Vec::new();
    for token in tokens {
        // A quoted single word matches exactly (no typo or prefix expansion).
        let r = s
            .call("GET", &format!("/api/collections/docs/search?q=%22{token}%22&fields=id"), Some(su), None)
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let found: Vec<&str> = r.body["items"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|i| i["id"].as_str())
            .collect();
        match holder.get(token) {
            Some(id) if found != [id.as_str()] => {
                problems.push(format!("{token}: live in {id}, search found {found:?}"))
            }
            None if !found.is_empty() => {
                problems.push(format!("{token}: held by no live record, search found {found:?}"))
            }
            _ => {}
        }
    }
    let status = s.call("GET", "/api/search/status", Some(su), None).await;
    if status.body["documents"].as_u64() != Some(records.len() as u64) {
        problems.push(format!(
            "index holds {} documents, {} live records",
            status.body["documents"],
            records.len()
        ));
    }
    let shown: Vec<&String> = problems.iter().take(20).collect();
    assert!(problems.is_empty(), "{context}: {} problems, e.g. {shown:#?}", problems.len());
    eprintln!(
        "{context}: {} live records, {} tokens checked: index equals data",
        records.len(),
        tokens.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_writes_then_index_deletion_leave_the_index_equal_to_the_data() {
    let seed = env_u64("BACKBONE_CRASH_SEED").unwrap_or_else(|| rand::thread_rng().gen());
    let cycles = env_u64("BACKBONE_CRASH_CYCLES").unwrap_or(DEFAULT_CYCLES as u64) as usize;
    eprintln!("search crash test: seed {seed} (BACKBONE_CRASH_SEED={seed} replays), {cycles} cycles");
    let mut rng = StdRng::seed_from_u64(seed);
    let temp = tempfile::tempdir().expect("temp dir");
    let options =
        StartOptions { env: vec![("BACKBONE_RATE_LIMITS_ENABLED".into(), "false".into())], args: vec![] };
    let mut s = Server::start_in(temp.path(), options.clone());
    let su = s.setup_superuser().await;
    let collection = json!({
        "name": "docs", "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
        "fields": [{"name": "body", "type": "text"}],
        "search": {"enabled": true, "fields": [{"name": "body"}]}
    });
    let r = s.call("POST", "/api/collections", Some(&su), Some(collection)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let tokens = Arc::new(Mutex::new(BTreeSet::new()));

    for cycle in 0..cycles {
        let mut tasks = Vec::new();
        for who in 0..CLIENTS {
            tasks.push(tokio::spawn(burst(
                s.client.clone(),
                s.base.clone(),
                su.clone(),
                who,
                cycle,
                seed,
                tokens.clone(),
            )));
        }
        let delay = rng.gen_range(400..=1800);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        s.kill9();
        for task in tasks {
            let _ = task.await;
        }
        // Data, jobs, files and the index agree (the index may lag: applied at the next start).
        common::run_check(temp.path(), true);
        s = Server::start_in(temp.path(), options.clone());
        let snapshot = tokens.lock().expect("tokens").clone();
        assert_index_equals_data(&s, &su, &snapshot, &format!("after SIGKILL {} at {delay} ms", cycle + 1))
            .await;
    }

    // The index is derived: delete it, restart, and it is rebuilt (by a job with progress).
    assert_eq!(s.terminate(), Some(0));
    // After a clean stop everything is applied: one document per record, checked offline.
    let report = common::run_check(temp.path(), false);
    assert!(!report.contains("search:"), "the index should be complete after a clean stop: {report}");
    std::fs::remove_dir_all(temp.path().join("search")).expect("remove the index directory");
    s = Server::start_in(temp.path(), options.clone());
    let snapshot = tokens.lock().expect("tokens").clone();
    assert_index_equals_data(&s, &su, &snapshot, "after deleting search/").await;
    let jobs = s.call("GET", "/api/jobs?kind=search.reindex&state=completed", Some(&su), None).await;
    let rebuild = jobs.body["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .find(|j| j["uniqueKey"] == "search.rebuild" && j["progress"]["indexed"].as_u64().unwrap_or(0) > 0)
        .cloned();
    let rebuild = rebuild.unwrap_or_else(|| panic!("no completed rebuild job with progress: {}", jobs.text));
    assert_eq!(rebuild["progress"]["indexed"], rebuild["progress"]["total"], "{rebuild}");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// An index from an older state of the data (its outbox entries since pruned, as after
/// restoring a copy of `search/`): `backbone check` reports it (a searchable collection has
/// more records than indexed documents) and the next start rebuilds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_older_than_the_data_is_reported_and_rebuilt() {
    let temp = tempfile::tempdir().expect("temp dir");
    let options = StartOptions::default();
    let mut s = Server::start_in(temp.path(), options.clone());
    let su = s.setup_superuser().await;
    let collection = json!({
        "name": "docs", "fields": [{"name": "body", "type": "text"}],
        "search": {"enabled": true, "fields": [{"name": "body"}]}
    });
    let r = s.call("POST", "/api/collections", Some(&su), Some(collection)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    async fn add(s: &Server, su: &str, body: &str) {
        let r = s.call("POST", "/api/collections/docs/records", Some(su), Some(json!({"body": body}))).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    add(&s, &su, "alpha").await;
    add(&s, &su, "beta").await;
    wait_caught_up(&s, &su).await;
    assert_eq!(s.terminate(), Some(0));
    let report = common::run_check(temp.path(), false);
    assert!(!report.contains("problem"), "{report}");
    let old_index = temp.path().join("old-search");
    copy_dir(&temp.path().join("search"), &old_index);

    s = Server::start_in(temp.path(), options.clone());
    add(&s, &su, "gamma").await;
    wait_caught_up(&s, &su).await;
    assert_eq!(s.terminate(), Some(0));
    std::fs::remove_dir_all(temp.path().join("search")).expect("remove index");
    std::fs::rename(&old_index, temp.path().join("search")).expect("restore the old index");
    let out = common::command().arg("check").arg("--dir").arg(temp.path()).output().expect("check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && stdout.contains("has 3 records but 2 indexed documents"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The server notices too: the outbox cannot continue that index, so it is rebuilt.
    s = Server::start_in(temp.path(), options.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = s.call("GET", "/api/collections/docs/search?q=gamma", Some(&su), None).await;
        if r.status == 200 && r.body["totalItems"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the stale index was not rebuilt: {}", r.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_caught_up(&s, &su).await;
    assert_eq!(s.terminate(), Some(0));
    let report = common::run_check(temp.path(), false);
    assert!(!report.contains("problem"), "{report}");
}

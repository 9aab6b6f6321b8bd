//! Crash test for uploads: concurrent multipart creates against the real binary, some of
//! them stalled mid-body, interrupted by SIGKILL (repeatedly, on the same data directory),
//! then checked after each restart:
//! - no temporary upload file survives the restart;
//! - every record that exists has every blob it names, with the bytes that were sent;
//! - every create that got a 2xx reply is present;
//! - no blob exists on disk that no record references.
//!
//! Knob: `BACKBONE_FILES_CRASH_CYCLES` (default 4). Run: `cargo test --test files_crash`.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::{Server, StartOptions};
use serde_json::{json, Value};

const BOUNDARY: &str = "crashboundary7MA4YWxkTrZu0gW";
const FILE_BYTES: usize = 300 * 1024;

fn content_for(tag: &str) -> Vec<u8> {
    tag.as_bytes().iter().copied().cycle().take(FILE_BYTES).collect()
}

/// The multipart head (text part, file part header) and tail around a file's content.
fn parts(tag: &str) -> (Vec<u8>, Vec<u8>) {
    let head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\n{tag}\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"doc\"; filename=\"{tag}.txt\"\r\nContent-Type: text/plain\r\n\r\n"
    );
    (head.into_bytes(), format!("\r\n--{BOUNDARY}--\r\n").into_bytes())
}

/// Uploads one file; with `stall`, sends half of it and then waits (until killed).
async fn upload(base: String, tag: String, stall: bool) -> Option<Value> {
    let (head, tail) = parts(&tag);
    let content = content_for(&tag);
    let half = content.len() / 2;
    let chunks: Vec<Vec<u8>> = vec![head, content[..half].to_vec(), content[half..].to_vec(), tail];
    let stream =
        futures_util::stream::iter(chunks.into_iter().enumerate()).then(move |(i, chunk)| async move {
            if stall && i == 2 {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            Ok::<_, std::io::Error>(chunk)
        });
    let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().ok()?;
    let res = client
        .post(format!("{base}/api/collections/uploads/records"))
        .header("Content-Type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .ok()?;
    if !res.status().is_success() {
        return None;
    }
    res.json().await.ok()
}

use futures_util::StreamExt;

fn blobs_on_disk(dir: &Path, collection_id: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let Ok(records) = std::fs::read_dir(dir.join("files").join(collection_id)) else { return out };
    for record in records.flatten() {
        for item in std::fs::read_dir(record.path()).into_iter().flatten().flatten() {
            let name = item.file_name().to_string_lossy().to_string();
            if !name.starts_with("thumbs_") {
                out.insert((record.file_name().to_string_lossy().to_string(), name));
            }
        }
    }
    out
}

#[tokio::test]
async fn sigkill_mid_upload_leaves_no_dangling_record_orphan_blob_or_temp_file() {
    let cycles: usize =
        std::env::var("BACKBONE_FILES_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let dir = tempfile::tempdir().expect("dir");
    let mut server = Server::start_in(dir.path(), StartOptions::default());
    let token = server.setup_superuser().await;
    let r = server
        .call(
            "POST",
            "/api/collections",
            Some(&token),
            Some(json!({
                "name": "uploads", "listRule": "", "viewRule": "", "createRule": "",
                "fields": [{"name": "title", "type": "text"}, {"name": "doc", "type": "file", "maxSize": 10_000_000}]
            })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let collection_id = r.body["id"].as_str().expect("id").to_string();
    let mut acked: Vec<(String, String)> = Vec::new(); // (record id, title)
    for cycle in 0..cycles {
        let mut tasks = Vec::new();
        for i in 0..6 {
            let tag = format!("c{cycle}u{i}");
            tasks.push(tokio::spawn(upload(server.base.clone(), tag, i % 2 == 1)));
        }
        // Kill while the stalled uploads sit half-written in files/.tmp.
        let tmp = dir.path().join("files/.tmp");
        for _ in 0..200 {
            if std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0) >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0) > 0, "uploads are in flight");
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.kill9();
        // Records, file rows and blobs agree after the kill (half-written uploads are notes).
        common::run_check(dir.path(), true);
        for task in tasks {
            if let Ok(Some(record)) = task.await {
                acked.push((
                    record["id"].as_str().unwrap_or_default().to_string(),
                    record["title"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
        server = Server::start_in(dir.path(), StartOptions::default());
        let left = std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0);
        assert_eq!(left, 0, "cycle {cycle}: temp files survived the restart");
        let r = server.call("GET", "/api/collections/uploads/records?perPage=500", None, None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let items = r.body["items"].as_array().cloned().unwrap_or_default();
        let mut referenced = BTreeSet::new();
        for item in &items {
            let id = item["id"].as_str().expect("id");
            let name = item["doc"].as_str().expect("doc");
            let title = item["title"].as_str().expect("title");
            let blob = dir.path().join("files").join(&collection_id).join(id).join(name);
            let bytes = std::fs::read(&blob)
                .unwrap_or_else(|_| panic!("cycle {cycle}: record {id} names missing blob {name}"));
            assert_eq!(bytes, content_for(title), "cycle {cycle}: blob {name} has the bytes sent");
            referenced.insert((id.to_string(), name.to_string()));
        }
        for (id, title) in &acked {
            assert!(
                items.iter().any(|i| i["id"] == *id.as_str()),
                "cycle {cycle}: acknowledged {title} ({id}) is missing"
            );
        }
        assert_eq!(
            blobs_on_disk(dir.path(), &collection_id),
            referenced,
            "cycle {cycle}: orphan blobs after restart"
        );
    }
    assert!(!acked.is_empty(), "some uploads completed before the kills");

    // The check is not blind: a referenced blob that vanished is a problem.
    server.kill9();
    let blobs = blobs_on_disk(dir.path(), &collection_id);
    let (id, name) = blobs.iter().next().expect("a stored blob");
    std::fs::remove_file(dir.path().join("files").join(&collection_id).join(id).join(name))
        .expect("remove blob");
    let out =
        common::command().arg("check").arg("--repair").arg("--dir").arg(dir.path()).output().expect("check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && stdout.contains("is missing on disk"), "{stdout}");
}

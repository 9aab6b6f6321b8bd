//! The README's tour, run exactly as written: every ```sh block from "## Quick tour" up to
//! "## Configuration", in order, in one `bash` with `set -euo pipefail`, against a fresh
//! server. The only changes are where the server is: its address (the README's
//! `http://127.0.0.1:8080`), its data directory (`./backbone_data`) and the binary
//! (`target/release/backbone`) are this test's. So the README cannot drift from the API.
//!
//! Needs bash, curl, jq (installed with apt-get when missing and running as root), base64
//! and mktemp.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;

/// The problem+json `type`s the tour shows on purpose, in order: the invalid record of the
/// quick tour, and the request with the token a sign-out revoked.
const EXPECTED_PROBLEMS: &[&str] = &["validation", "unauthenticated"];

/// The ```sh blocks of the tour.
fn tour_blocks(readme: &str) -> Vec<String> {
    let start = readme.find("\n## Quick tour").expect("README has a \"## Quick tour\" section");
    let end = readme[start..].find("\n## Configuration").map_or(readme.len(), |i| start + i);
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme[start..end].lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "an unterminated ```sh block in the tour");
    blocks
}

/// Every `"type":"/api/docs/errors#…"` in `text`, in order.
fn problem_types(text: &str) -> Vec<String> {
    let marker = "\"type\":\"/api/docs/errors#";
    text.match_indices(marker)
        .map(|(i, _)| {
            let rest = &text[i + marker.len()..];
            rest[..rest.find('"').unwrap_or(rest.len())].to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_shell_block_of_the_readme_tour_runs_as_written() {
    common::setup::require_command("jq", "jq");
    common::setup::require_command("curl", "curl");
    let readme = std::fs::read_to_string(common::setup::repo().join("README.md")).expect("README.md");
    let blocks = tour_blocks(&readme);
    assert!(blocks.len() >= 8, "the tour has {} shell blocks", blocks.len());

    let server = Server::start();
    let binary = common::binary().display().to_string();
    let data_dir = server.dir.display().to_string();
    let mut script = String::from("set -euo pipefail\n");
    for (i, block) in blocks.iter().enumerate() {
        let block = block
            .replace("http://127.0.0.1:8080", &server.base)
            .replace("target/release/backbone", &binary)
            .replace("./backbone_data", &data_dir);
        script.push_str(&format!("echo; echo '### tour block {}'\n{block}", i + 1));
    }

    let scratch = tempfile::tempdir().expect("scratch dir");
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(&script).current_dir(scratch.path()).stdin(Stdio::null());
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("BACKBONE_")) {
        cmd.env_remove(key);
    }
    let out = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let out = cmd.output().expect("run bash");
        (out, started.elapsed())
    })
    .await
    .expect("tour task");
    let (out, elapsed) = out;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let context = format!("--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
    assert!(out.status.success(), "the tour failed ({}) after {elapsed:?}\n{context}", out.status);
    assert!(elapsed < Duration::from_secs(300), "the tour took {elapsed:?}");

    // Only the errors it shows on purpose; no 5xx, no refusal of the superuser.
    assert_eq!(problem_types(&stdout), EXPECTED_PROBLEMS, "unexpected error answers\n{context}");
    assert!(!stdout.contains("\"status\":5"), "a 5xx answer\n{context}");
    // The outputs the README's comments promise.
    assert!(stdout.contains("Must be at least 0."), "{context}");
    assert!(stdout.contains("The authorization token was revoked"), "{context}");
    assert!(stdout.contains("\"openapi\""), "export-openapi printed the spec\n{context}");
    assert!(stdout.contains("without a token: 404"), "the protected file without a token\n{context}");
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{context}");
    assert!(stdout.contains("\nThe contract.\n"), "the protected file with the token\n{context}");
    assert!(stdout.contains("\"totalFiles\":3"), "{context}");
    // Search found the post, with highlights.
    assert!(stdout.contains("\"title\":\"<mark>Ownership</mark> in Rust\""), "{context}");
}

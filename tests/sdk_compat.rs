//! Compatibility with the real, unmodified PocketBase JS SDK: starts the server, creates the
//! superuser, and runs `tests/compat/sdk_compat.mjs` under node against it.
//!
//! Needs `node` and `npm` on PATH. When `tests/compat/node_modules` lacks the pinned SDK the
//! test runs `npm ci` there first (so it needs the npm registry once per fresh clone); a
//! failing `npm ci` fails the test.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long `npm ci` and the node script may take.
const NPM_TIMEOUT: Duration = Duration::from_secs(300);
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

fn compat_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("compat")
}

fn read_json(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// The SDK version pinned in package.json.
fn pinned_sdk_version(dir: &Path) -> String {
    let manifest = read_json(&dir.join("package.json")).expect("tests/compat/package.json is valid JSON");
    manifest["dependencies"]["pocketbase"]
        .as_str()
        .expect("package.json pins dependencies.pocketbase")
        .to_string()
}

/// The SDK version installed in node_modules, if any.
fn installed_sdk_version(dir: &Path) -> Option<String> {
    let manifest = read_json(&dir.join("node_modules").join("pocketbase").join("package.json"))?;
    manifest["version"].as_str().map(str::to_string)
}

/// Runs `cmd` to completion with a deadline, capturing stdout and stderr.
fn run_with_timeout(mut cmd: Command, timeout: Duration, what: &str) -> Output {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child =
        cmd.spawn().unwrap_or_else(|e| panic!("could not start {what}: {e} (is it installed and on PATH?)"));
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().expect("wait for child") {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                let out = out_reader.join().unwrap_or_default();
                let err = err_reader.join().unwrap_or_default();
                panic!(
                    "{what} did not finish within {timeout:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&err)
                );
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Output { status, stdout, stderr }
}

/// Installs the pinned SDK from the lockfile unless it is already there.
fn ensure_sdk_installed(dir: &Path) {
    let pinned = pinned_sdk_version(dir);
    if installed_sdk_version(dir).as_deref() == Some(pinned.as_str()) {
        return;
    }
    let mut cmd = Command::new("npm");
    cmd.arg("ci").arg("--no-audit").arg("--no-fund").current_dir(dir);
    let out = run_with_timeout(cmd, NPM_TIMEOUT, "npm ci (in tests/compat)");
    assert!(
        out.status.success(),
        "npm ci in {} failed ({}); the PocketBase SDK is needed for this test\n--- stdout ---\n{}\n--- stderr ---\n{}",
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        installed_sdk_version(dir).as_deref(),
        Some(pinned.as_str()),
        "npm ci did not install pocketbase {pinned}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pocketbase_js_sdk_drives_the_server() {
    let dir = compat_dir();
    tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || {
            common::setup::require_command("node", "nodejs");
            common::setup::require_command("npm", "npm");
            ensure_sdk_installed(&dir)
        }
    })
    .await
    .expect("npm ci task");

    let server = common::Server::start();
    server.setup_superuser().await;

    let base = server.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new("node");
        cmd.arg("tests/compat/sdk_compat.mjs")
            .arg(&base)
            .arg(common::SU_EMAIL)
            .arg(common::SU_PASSWORD)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        run_with_timeout(cmd, SCRIPT_TIMEOUT, "node tests/compat/sdk_compat.mjs")
    })
    .await
    .expect("node task");

    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the PocketBase JS SDK compatibility script failed ({})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("sdk compat: ") && l.ends_with(" checks passed")),
        "the script exited 0 without its summary line\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
    println!("{stdout}");
}

//! Node packages for the tests that drive the server from JavaScript: `npm ci` in a
//! directory with a committed `package-lock.json`, once, whenever a pinned dependency is
//! missing or at another version. A failing `npm ci` fails the test with its output.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long `npm ci` may take.
const NPM_TIMEOUT: Duration = Duration::from_secs(300);

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// The dependencies of `dir/package.json` whose installed version is not the pinned one.
fn missing(dir: &Path) -> Vec<String> {
    let manifest = read_json(&dir.join("package.json"))
        .unwrap_or_else(|| panic!("{}/package.json is not valid JSON", dir.display()));
    let deps = manifest["dependencies"].as_object().cloned().unwrap_or_default();
    deps.iter()
        .filter(|(name, pinned)| {
            let installed = read_json(&dir.join("node_modules").join(name).join("package.json"));
            installed.as_ref().and_then(|m| m["version"].as_str()) != pinned.as_str()
        })
        .map(|(name, pinned)| format!("{name}@{}", pinned.as_str().unwrap_or("?")))
        .collect()
}

/// Installs the pinned packages of `dir` from its lockfile unless they are all there.
/// Serialized with every other set-up step (node and npm come from `setup`).
pub fn ensure_installed(dir: &Path) {
    super::setup::require_command("node", "nodejs");
    super::setup::require_command("npm", "npm");
    let _lock = super::setup::lock();
    let before = missing(dir);
    if before.is_empty() {
        return;
    }
    let mut cmd = Command::new("npm");
    cmd.args(["ci", "--no-audit", "--no-fund"]).current_dir(dir);
    let out = run_with_timeout(cmd, NPM_TIMEOUT, &format!("npm ci (in {})", dir.display()));
    assert!(
        out.status.success(),
        "npm ci in {} failed ({}); it installs {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        dir.display(),
        out.status,
        before.join(", "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let after = missing(dir);
    assert!(after.is_empty(), "npm ci in {} did not install {}", dir.display(), after.join(", "));
}

/// Runs `cmd` to completion with a deadline, capturing stdout and stderr; panics with both
/// when the deadline passes.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration, what: &str) -> Output {
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
    Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

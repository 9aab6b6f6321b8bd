//! Running the tests' JavaScript (the PocketBase SDK scripts in `tests/compat`) against a
//! server: the pinned npm packages come from `setup::npm_ci`; the script runs under node
//! with a deadline and must exit 0 and print its summary line.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `node <script> <base> <superuser email> <superuser password>` from the repository
/// root after installing the packages of the script's folder; panics with its output unless
/// it exits 0 and prints a line starting with `summary` and ending in " checks passed".
/// Returns its stdout.
pub async fn run_script(
    script: &'static str,
    base: &str,
    timeout: Duration,
    summary: &'static str,
) -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = repo.join(script).parent().expect("the script's folder").to_path_buf();
    let base = base.to_string();
    let out = tokio::task::spawn_blocking(move || {
        super::setup::require_command("node", "nodejs");
        super::setup::npm_ci(&dir);
        let mut cmd = Command::new("node");
        cmd.arg(script).arg(&base).arg(super::SU_EMAIL).arg(super::SU_PASSWORD).current_dir(repo);
        run_with_timeout(cmd, timeout, &format!("node {script}"))
    })
    .await
    .expect("node task");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed ({})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    assert!(
        stdout.lines().any(|l| l.starts_with(summary) && l.ends_with(" checks passed")),
        "{script} exited 0 without its summary line\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
    stdout
}

/// Runs `cmd` to completion with a deadline, capturing stdout and stderr; panics with both
/// when the deadline passes.
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
    Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

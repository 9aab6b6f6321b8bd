//! A real SMTP server for the mail tests: `tests/mail/smtp_sink.py` (Python `aiosmtpd`, from
//! the test venv: see `setup`), started on a loopback port, writing every accepted message,
//! parsed, as JSON.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

/// A running SMTP sink process.
pub struct SmtpSink {
    pub port: u16,
    pub out: PathBuf,
    child: Child,
}

impl SmtpSink {
    /// Starts the sink on `port`, writing messages to `out`, with extra flags
    /// (`--fail-first 2`, `--reject-reply "550 ..."`); returns once it accepts connections.
    pub fn start(port: u16, out: &Path, flags: &[&str]) -> SmtpSink {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mail/smtp_sink.py");
        let mut child = Command::new(super::setup::python())
            .arg(script)
            .arg("--port")
            .arg(port.to_string())
            .arg("--out")
            .arg(out)
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .stdin(Stdio::null())
            .spawn()
            .expect("the test venv's python3 runs tests/mail/smtp_sink.py");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("READY") {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(20)).is_err() {
            let _ = child.kill();
            panic!(
                "the SMTP sink (tests/mail/smtp_sink.py) did not start on port {port}; its error is above"
            );
        }
        SmtpSink { port, out: out.to_path_buf(), child }
    }

    /// SIGKILL: the process dies at once, mid-transaction if one runs.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Every message accepted so far (by any sink process writing to `out`), oldest first.
    pub fn messages(&self) -> Vec<Value> {
        read_messages(&self.out)
    }
}

/// The parsed messages in `out`, ordered by file name (process id, then sequence).
pub fn read_messages(out: &Path) -> Vec<Value> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(out)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    names.retain(|p| p.extension().is_some_and(|e| e == "json"));
    names.sort();
    names
        .iter()
        .map(|p| serde_json::from_slice(&std::fs::read(p).expect("read message")).expect("message json"))
        .collect()
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

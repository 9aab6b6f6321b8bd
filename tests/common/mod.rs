//! Test helpers shared by the integration tests: start the real `backbone` binary on
//! port 0 with a temporary data directory, sign in, and make requests.
#![allow(dead_code)]

pub mod npm;
pub mod setup;
pub mod smtp;
pub mod sse;
pub mod webhook_sink;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const SU_EMAIL: &str = "root@example.com";

/// The least time a test waits for something to happen in the background (a job, an email,
/// a blob removal) before failing. Waits poll, so a fast machine moves on at once; on a
/// machine loaded with builds, seconds-long stalls happen and must not fail a test.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// How long to poll for something expected `within` a time: never less than [`PATIENCE`].
pub fn patient(within: Duration) -> Duration {
    within.max(PATIENCE)
}
pub const SU_PASSWORD: &str = "root-password-123";

/// Path of the binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_backbone"))
}

/// A `backbone` command with no inherited `BACKBONE_*` variables (the server refuses unknown
/// ones, and test knobs such as `BACKBONE_TEST_LOGS` are not meant for it).
pub fn command() -> Command {
    let mut cmd = Command::new(binary());
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("BACKBONE_")) {
        cmd.env_remove(key);
    }
    cmd.env("BACKBONE_LOG", "warn");
    cmd
}

/// Runs `backbone check` on a stopped data directory (with `--repair`: redb recovery after a
/// kill first) and requires a clean report; returns what it printed.
#[track_caller]
pub fn run_check(dir: &Path, repair: bool) -> String {
    let mut cmd = command();
    cmd.arg("check").arg("--dir").arg(dir);
    if repair {
        cmd.arg("--repair");
    }
    let out = cmd.output().expect("run backbone check");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && stdout.contains("all tables consistent"),
        "backbone check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A running server process.
pub struct Server {
    pub base: String,
    pub dir: PathBuf,
    /// Keeps the temporary directory alive when the server owns it.
    _temp: Option<tempfile::TempDir>,
    pub child: Child,
    pub setup_token: Option<String>,
    pub client: reqwest::Client,
    /// Every line the server wrote to stderr so far.
    pub stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// Options for starting a server.
#[derive(Default, Clone)]
pub struct StartOptions {
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
}

impl Server {
    /// Starts a server on a fresh temporary data directory.
    pub fn start() -> Server {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_path_buf();
        let mut server = Server::start_in(&dir, StartOptions::default());
        server._temp = Some(temp);
        server
    }

    /// Starts a server with extra environment or arguments.
    pub fn start_with(options: StartOptions) -> Server {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_path_buf();
        let mut server = Server::start_in(&dir, options);
        server._temp = Some(temp);
        server
    }

    /// Starts a server whose stderr (its log) goes to the file `log`, as when an operator
    /// redirects it.
    pub fn start_logging_to(options: StartOptions, log: &Path) -> Server {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_path_buf();
        let mut server = Server::start_inner(&dir, options, Some(log));
        server._temp = Some(temp);
        server
    }

    /// Starts a server on `dir` (which outlives it; used by restart tests).
    pub fn start_in(dir: &Path, options: StartOptions) -> Server {
        Server::spawn(dir, options, None, None)
    }

    /// [`Server::start_in`] through `sh -c 'umask <mask>; exec backbone ...'` (the test
    /// runner's own umask is whatever its shell had).
    pub fn start_in_with_umask(dir: &Path, options: StartOptions, mask: u32) -> Server {
        Server::spawn(dir, options, Some(mask), None)
    }

    fn start_inner(dir: &Path, options: StartOptions, log: Option<&Path>) -> Server {
        Server::spawn(dir, options, None, log)
    }

    fn spawn(dir: &Path, options: StartOptions, umask: Option<u32>, log: Option<&Path>) -> Server {
        let mut cmd = match umask {
            Some(mask) => {
                let mut sh = Command::new("sh");
                for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("BACKBONE_")) {
                    sh.env_remove(key);
                }
                sh.env("BACKBONE_LOG", "warn");
                sh.arg("-c").arg(format!("umask {mask:03o}; exec \"$0\" \"$@\"")).arg(binary());
                sh
            }
            None => command(),
        };
        cmd.arg("serve").arg("--http").arg("127.0.0.1:0").arg("--dir").arg(dir);
        cmd.args(&options.args);
        for (k, v) in &options.env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::piped()).stdin(Stdio::null());
        match log {
            Some(path) => cmd.stderr(std::fs::File::create(path).expect("create the log file")),
            None => cmd.stderr(Stdio::piped()),
        };
        let log_path_owned = log.map(Path::to_path_buf);
        let mut child = cmd.spawn().expect("spawn backbone");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take();
        let (addr_tx, addr_rx) = mpsc::channel::<(String, bool)>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or_default().to_string();
                    let _ = addr_tx.send((addr, line.contains("[setup required]")));
                }
            }
        });
        let (token_tx, token_rx) = mpsc::channel::<String>();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = lines.clone();
        let log_file = log_path_owned;
        std::thread::spawn(move || {
            let Some(stderr) = stderr else {
                // The log goes to a file: the token line is in it once the server listens.
                let deadline = Instant::now() + PATIENCE;
                while Instant::now() < deadline {
                    let text =
                        log_file.as_ref().and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
                    if let Some(token) = text.lines().find_map(|l| l.strip_prefix("SETUP_TOKEN=")) {
                        let _ = token_tx.send(token.trim().to_string());
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                return;
            };
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut log) = log.lock() {
                    log.push(line.clone());
                }
                if let Some(token) = line.strip_prefix("SETUP_TOKEN=") {
                    let _ = token_tx.send(token.trim().to_string());
                } else if std::env::var("BACKBONE_TEST_LOGS").is_ok() {
                    eprintln!("[server] {line}");
                }
            }
        });
        let (addr, setup_required) = match addr_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(started) => started,
            Err(_) => {
                let _ = child.kill();
                let out = child.wait_with_output().map(|o| String::from_utf8_lossy(&o.stderr).to_string());
                panic!("server did not start: {out:?}");
            }
        };
        // The token is printed before the listening line, so it is there when announced.
        let setup_token =
            if setup_required { token_rx.recv_timeout(Duration::from_secs(10)).ok() } else { None };
        Server {
            base: format!("http://{addr}"),
            dir: dir.to_path_buf(),
            _temp: None,
            child,
            setup_token,
            client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client"),
            stderr: lines,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Creates the first superuser through the setup endpoint and returns its token.
    pub async fn setup_superuser(&self) -> String {
        let token = self.setup_token.clone().expect("a fresh server prints a setup token");
        let res = self
            .client
            .post(self.url("/api/setup"))
            .json(&json!({"token": token, "email": SU_EMAIL, "password": SU_PASSWORD}))
            .send()
            .await
            .expect("setup request");
        assert_eq!(res.status(), 200, "setup failed");
        let body: Value = res.json().await.expect("json");
        body["token"].as_str().expect("token").to_string()
    }

    /// Signs the default superuser in (after `setup_superuser` ran, possibly in an earlier process).
    pub async fn login(&self) -> String {
        let res = self
            .client
            .post(self.url("/api/collections/_superusers/auth-with-password"))
            .json(&json!({"identity": SU_EMAIL, "password": SU_PASSWORD}))
            .send()
            .await
            .expect("login request");
        assert_eq!(res.status(), 200, "login failed");
        let body: Value = res.json().await.expect("json");
        body["token"].as_str().expect("token").to_string()
    }

    /// Sends a request with an optional token and JSON body; returns (status, headers, body).
    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.header("Authorization", t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Reply::from(req.send().await.expect("request")).await
    }

    /// Sends raw bytes with the given content type.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(method, self.url(path)).body(body);
        if let Some(t) = token {
            req = req.header("Authorization", t);
        }
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        Reply::from(req.send().await.expect("request")).await
    }

    /// Sends SIGKILL and waits for the process to die.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (up to [`PATIENCE`]) for a clean exit; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response, fully read.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    async fn from(res: reqwest::Response) -> Reply {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let content_type =
            headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let text = res.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, content_type, headers, body, text }
    }

    /// Asserts the problem+json shape and status; returns self for further checks.
    #[track_caller]
    pub fn assert_problem(&self, status: u16) -> &Reply {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text);
        assert!(
            self.content_type.starts_with("application/problem+json"),
            "content type {:?}; body: {}",
            self.content_type,
            self.text
        );
        let b = &self.body;
        assert_eq!(b["status"].as_u64(), Some(u64::from(status)), "status member: {}", self.text);
        for key in ["type", "title", "detail", "message"] {
            assert!(b[key].is_string(), "member {key} missing: {}", self.text);
        }
        assert!(b["type"].as_str().unwrap_or_default().starts_with("/api/docs/errors#"), "{}", self.text);
        assert!(b["data"].is_object(), "data must be an object: {}", self.text);
        self
    }

    /// Asserts a field error code under `data`.
    #[track_caller]
    pub fn assert_field_error(&self, field: &str, code: &str) -> &Reply {
        assert_eq!(self.body["data"][field]["code"].as_str(), Some(code), "field {field}: {}", self.text);
        self
    }
}

/// A collection body with common field types.
pub fn posts_collection(name: &str) -> Value {
    json!({
        "name": name,
        "listRule": null,
        "fields": [
            {"name": "title", "type": "text", "required": true, "min": 1, "max": 100},
            {"name": "views", "type": "number", "onlyInt": true, "min": 0},
            {"name": "published", "type": "bool"},
            {"name": "contact", "type": "email"},
            {"name": "site", "type": "url"},
            {"name": "when", "type": "date"},
            {"name": "status", "type": "select", "values": ["draft", "live"], "maxSelect": 1},
            {"name": "tags", "type": "select", "values": ["a", "b", "c"], "maxSelect": 3},
            {"name": "meta", "type": "json", "maxSize": 2000},
            {"name": "body", "type": "editor"},
            {"name": "code", "type": "text", "pattern": "^[A-Z]{3}$"},
            {"name": "secret", "type": "text", "hidden": true}
        ]
    })
}

/// A `multipart/form-data` body of text parts (name, value), then file parts (field, file
/// name, content type, bytes); returns the `Content-Type` header and the body.
pub fn multipart(texts: &[(&str, &str)], files: &[(&str, &str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----backbone-test-boundary";
    let mut body = Vec::new();
    for (name, value) in texts {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    for (field, file_name, content_type, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{file_name}\"\r\n\
                 Content-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Polls the alert history until `n` rows exist; returns them (newest first).
pub async fn wait_alert_history(s: &Server, su: &str, rule: &str, n: usize, within: Duration) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let r = s.call("GET", &format!("/api/alerts/history?rule={rule}"), Some(su), None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let items = r.body["items"].as_array().cloned().unwrap_or_default();
        if items.len() >= n {
            return items;
        }
        assert!(started.elapsed() < patient(within), "fewer than {n} alert transitions: {}", r.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Enqueues a job that dies at once (the `fail` test kind): `jobs_dead` goes up by one.
/// Needs `BACKBONE_JOBS_TEST_KINDS=true`. Returns the job id.
pub async fn dead_job(s: &Server, su: &str) -> String {
    let r = s
        .call("POST", "/api/jobs", Some(su), Some(json!({"kind": "fail", "payload": {"discard": true}})))
        .await;
    assert!(r.status == 201 || r.status == 202, "{}", r.text);
    r.body["id"].as_str().map(str::to_string).unwrap_or_else(|| r.body["id"].to_string())
}

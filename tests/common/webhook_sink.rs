//! A real HTTP receiver for the webhook tests: a poem server on a loopback port that records
//! every request (method, path, headers, body) and answers with the status a test chooses
//! per path and per attempt. Signatures are checked independently with Python's `hmac`.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poem::listener::TcpAcceptor;
use poem::{Request, Response, Server};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str).unwrap_or_default()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the webhook body is JSON")
    }
}

/// Chooses the answer's status from the request path and how many requests that path got
/// before (0 for the first).
pub type Responder = dyn Fn(&str, usize) -> u16 + Send + Sync;

/// A running receiver; stops when dropped.
pub struct WebhookSink {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookSink {
    /// Starts a receiver that answers 200 to everything.
    pub async fn start() -> WebhookSink {
        WebhookSink::start_with(|_, _| 200).await
    }

    /// Starts a receiver whose answers `responder` chooses.
    pub async fn start_with(responder: impl Fn(&str, usize) -> u16 + Send + Sync + 'static) -> WebhookSink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the receiver");
        let base = format!("http://{}", listener.local_addr().expect("receiver address"));
        let acceptor = TcpAcceptor::from_tokio(listener).expect("acceptor");
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let responder: Arc<Responder> = Arc::new(responder);
        let log = received.clone();
        let endpoint = poem::endpoint::make(move |mut req: Request| {
            let (log, responder) = (log.clone(), responder.clone());
            async move {
                let body = req.take_body().into_vec().await.unwrap_or_default();
                let headers = req
                    .headers()
                    .iter()
                    .map(|(k, v)| {
                        (k.as_str().to_ascii_lowercase(), v.to_str().unwrap_or_default().to_string())
                    })
                    .collect();
                let path = req.uri().path().to_string();
                let status = {
                    let mut log = log.lock().expect("log");
                    let before = log.iter().filter(|r| r.path == path).count();
                    log.push(Received {
                        method: req.method().to_string(),
                        path: path.clone(),
                        headers,
                        body,
                    });
                    responder(&path, before)
                };
                Response::builder()
                    .status(poem::http::StatusCode::from_u16(status).expect("status"))
                    .body(format!("answered {status}"))
            }
        });
        let task = tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor).run(endpoint).await;
        });
        WebhookSink { base, received, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Everything received so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("log").clone()
    }

    /// Waits until at least `n` requests arrived (panics after `within`); returns them all.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let started = Instant::now();
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                started.elapsed() < super::patient(within),
                "only {} of {n} webhook requests arrived: {got:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for WebhookSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Checks `X-Backbone-Signature` (`t=<unix>,v1=<hex>`) over `body` with Python's `hmac`
/// module (an implementation independent of the server's): HMAC-SHA256 keyed with the
/// secret over `"<t>.<body>"`. Returns the signed timestamp when the signature matches.
pub fn verify_with_python(secret: &str, header: &str, body: &[u8]) -> Option<i64> {
    let script = r#"
import hashlib, hmac, sys
secret, header = sys.argv[1], sys.argv[2]
body = sys.stdin.buffer.read()
parts = dict(p.split("=", 1) for p in header.split(","))
expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
print(parts["t"] if hmac.compare_digest(expected, parts["v1"]) else "mismatch")
"#;
    let mut child = Command::new("python3")
        .args(["-c", script, secret, header])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().expect("stdin").write_all(body).expect("write the body");
    let out = child.wait_with_output().expect("python3 output");
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

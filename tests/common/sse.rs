//! A minimal server-sent-events reader for the realtime tests.

use std::time::Duration;

use serde_json::{json, Value};

use super::Server;

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub event: String,
    pub data: Value,
}

/// A minimal SSE reader over a streaming response.
pub struct Sse {
    response: reqwest::Response,
    buffer: String,
    pub client_id: String,
}

impl Sse {
    /// Connects (optionally resuming after `last_event_id`) and reads `PB_CONNECT`.
    pub async fn connect(s: &Server, last_event_id: Option<&str>) -> Sse {
        let mut request = s.client.get(s.url("/api/realtime"));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.expect("connect");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers().get("content-type").and_then(|v| v.to_str().ok()),
            Some("text/event-stream")
        );
        let mut sse = Sse { response, buffer: String::new(), client_id: String::new() };
        let hello = sse.next(Duration::from_secs(5)).await.expect("PB_CONNECT");
        assert_eq!(hello.event, "PB_CONNECT");
        assert_eq!(hello.data["clientId"].as_str(), Some(hello.id.as_str()), "the event id is the client id");
        sse.client_id = hello.id;
        sse
    }

    /// The next event within `within`, or `None` (timeout or end of stream).
    pub async fn next(&mut self, within: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (String::new(), String::new(), String::new());
                for line in frame.lines() {
                    if line.starts_with(':') {
                        continue;
                    }
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "id" => id = value.to_string(),
                        "event" => event = value.to_string(),
                        "data" => data.push_str(value),
                        _ => {}
                    }
                }
                if event.is_empty() && data.is_empty() {
                    continue;
                }
                let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
                return Some(Event { id, event, data });
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk()).await.ok()?.ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Every event arriving within `within`.
    pub async fn drain(&mut self, within: Duration) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(e) = self.next(within).await {
            out.push(e);
        }
        out
    }

    pub async fn subscribe(&self, s: &Server, token: Option<&str>, topics: &[&str]) -> super::Reply {
        s.call(
            "POST",
            "/api/realtime",
            token,
            Some(json!({"clientId": self.client_id, "subscriptions": topics})),
        )
        .await
    }
}

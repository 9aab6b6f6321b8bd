//! `/api/realtime`: PocketBase's realtime protocol (server-sent events), see `crate::realtime`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Body, Request, Response};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::body::json_object;
use super::error::ApiError;
use super::openapi::{op, query_param, r};
use super::{caller, Routes};
use crate::app::App;
use crate::realtime::{Connection, Message, RealtimeError};

/// How often an idle stream carries a comment line, so dead connections are noticed.
const KEEPALIVE: Duration = Duration::from_secs(20);

impl From<RealtimeError> for ApiError {
    fn from(err: RealtimeError) -> Self {
        match err {
            RealtimeError::UnknownClient => ApiError::not_found(err.to_string()),
            RealtimeError::AuthMismatch | RealtimeError::Forbidden(_) => ApiError::forbidden(err.to_string()),
            RealtimeError::Invalid(detail) => ApiError::bad_request(detail),
            RealtimeError::Full(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "realtime-full",
                "Too many realtime clients",
                err.to_string(),
            ),
            RealtimeError::Store(e) => ApiError::from(e),
        }
    }
}

/// The state of one open stream.
struct Stream {
    connection: Connection,
    pending: VecDeque<Bytes>,
    keepalive: tokio::time::Interval,
    idle_until: Instant,
    done: bool,
}

impl Stream {
    /// The next chunk to write, or `None` when the stream ends.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                return Some(chunk);
            }
            if self.done {
                return None;
            }
            tokio::select! {
                message = self.connection.receiver.recv() => match message {
                    Some(message) => {
                        self.pending.extend(message.frames);
                        // Whatever else is queued goes out in the same write.
                        while let Ok(more) = self.connection.receiver.try_recv() {
                            self.pending.extend(more.frames);
                            if self.pending.len() >= 512 {
                                break;
                            }
                        }
                        self.idle_until = Instant::now() + self.connection.idle_timeout;
                    }
                    None => {
                        let reason = self.connection.closing.lock().ok().and_then(|mut r| r.take());
                        if let Some(reason) = reason {
                            let bye = Message::control("", "PB_DISCONNECT", json!({ "reason": reason }));
                            self.pending.extend(bye.frames);
                        }
                        self.done = true;
                    }
                },
                _ = self.keepalive.tick() => self.pending.push_back(Bytes::from_static(b":\n\n")),
                _ = tokio::time::sleep_until(self.idle_until) => self.done = true,
            }
        }
    }
}

/// Opens the event stream: `PB_CONNECT` first (its id is the client id), then the events of
/// the client's topics. `Last-Event-ID` (or `?lastEventId=`) resumes after that event.
#[handler]
pub async fn connect(req: &Request, Data(app): Data<&Arc<App>>) -> Result<Response, ApiError> {
    let from_query = req.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "lastEventId")
            .map(|(_, v)| v.into_owned())
    });
    let resume = req.header("Last-Event-ID").map(str::to_string).or(from_query);
    let connection = app.realtime.connect(resume.as_deref()).await?;
    let mut keepalive = tokio::time::interval_at(Instant::now() + KEEPALIVE, KEEPALIVE);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = Stream {
        pending: connection.hello.frames.iter().cloned().collect(),
        idle_until: Instant::now() + connection.idle_timeout,
        connection,
        keepalive,
        done: false,
    };
    let body = futures_util::stream::unfold(stream, |mut stream| async move {
        let chunk = stream.next().await?;
        Some((Ok::<Bytes, std::io::Error>(chunk), stream))
    });
    Ok(Response::builder()
        .content_type("text/event-stream")
        .header("Cache-Control", "no-store")
        .header("X-Accel-Buffering", "no")
        .body(Body::from_bytes_stream(body)))
}

/// Sets the client's topics (replacing the previous ones) under the caller's credentials.
#[handler]
pub async fn subscribe(req: &Request, body: Body, Data(app): Data<&Arc<App>>) -> Result<Response, ApiError> {
    let body = json_object(req, body, app.body_limits()).await?;
    let client_id = match body.get("clientId") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        _ => return Err(ApiError::bad_request("clientId: give the client id from the PB_CONNECT event.")),
    };
    let subscriptions = match body.get("subscriptions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect::<Option<Vec<String>>>()
            .ok_or_else(|| ApiError::bad_request("subscriptions: a list of strings."))?,
        Some(_) => return Err(ApiError::bad_request("subscriptions: a list of strings.")),
    };
    if let Some(unknown) = body.keys().find(|k| *k != "clientId" && *k != "subscriptions") {
        return Err(ApiError::bad_request(format!("{unknown}: unknown member (clientId, subscriptions).")));
    }
    let (who, info) = caller(app, req).await;
    app.realtime.subscribe(&client_id, &who, &info, &subscriptions)?;
    Ok(Response::builder().status(StatusCode::NO_CONTENT).finish())
}

/// `/api/realtime`.
pub(super) fn routes(api: Routes) -> Routes {
    let mut stream_op = op(
        "realtimeConnect",
        "Open the realtime event stream (server-sent events): PB_CONNECT first (its id is the client id), then {action, record} events of the client's topics, each with its change-feed id. Last-Event-ID resumes after that event (PB_RESET when it is too old).",
        "realtime",
        vec![
            query_param("lastEventId", "Resume after this event id (as the Last-Event-ID header).", json!({"type": "string"})),
        ],
        None,
        (200, None),
        &[503],
    );
    stream_op["responses"]["200"] = json!({
        "description": "The event stream",
        "content": {"text/event-stream": {"schema": {
            "type": "object",
            "description": "One event: PB_CONNECT ({clientId}), then the subscription string as the event name with {action, record} as data; PB_RESET ({reason}) and PB_DISCONNECT ({reason}) from the server.",
            "properties": {
                "id": {"type": "string", "description": "The change-feed sequence (PB_CONNECT: the client id)."},
                "event": {"type": "string"},
                "data": {"type": "string", "description": "JSON."},
                "retry": {"type": "integer"}
            }
        }}}
    });
    api.at("/api/realtime", |m| {
        m.get(connect, stream_op).post(
            subscribe,
            op(
                "realtimeSubscribe",
                "Set the topics of a realtime client (collection, collection/*, collection/recordId, jobs, jobs/{id}, each optionally with ?options={query, headers}); events are checked against the caller's list or view rule when sent",
                "realtime",
                vec![],
                Some(r("RealtimeSubscription")),
                (204, None),
                &[400, 403, 404, 413, 415],
            ),
        )
    })
}

/// Schemas of the realtime endpoints.
pub(super) fn schemas() -> Value {
    json!({
        "RealtimeSubscription": {
            "type": "object",
            "additionalProperties": false,
            "required": ["clientId"],
            "properties": {
                "clientId": {"type": "string", "description": "The id of the PB_CONNECT event."},
                "subscriptions": {
                    "type": "array",
                    "maxItems": 1000,
                    "items": {"type": "string", "maxLength": 2500},
                    "description": "Topics: collection, collection/*, collection/recordId, jobs, jobs/{id}; each may end in ?options= and URL-encoded JSON {\"query\": {\"expand\", \"fields\", \"filter\"}, \"headers\": {}}."
                }
            }
        }
    })
}

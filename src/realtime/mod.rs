//! Realtime: PocketBase's server-sent-events protocol over the durable change feed.
//!
//! A client opens `GET /api/realtime` (an SSE stream whose first event, `PB_CONNECT`, carries
//! its client id) and sets its topics with `POST /api/realtime`. Every committed record
//! change is in the change feed ([`feed`], written in the change's own transaction); one
//! dispatcher task, woken by the store after each durable commit that wrote the feed, reads
//! new entries in sequence order and offers each to the subscribed clients. Each event is
//! checked against the subscriber's list rule (collection topics) or view rule (record
//! topics) when it is sent, and rendered as a response to that subscriber would be
//! (`records::live`); subscribers who see the same thing share one rendering.
//!
//! Each event carries its feed sequence as its SSE id. A client that reconnects with
//! `Last-Event-ID` (or `?lastEventId=`) is first caught up from the feed, alone, and joins
//! the live stream once it has reached it; when the events it missed were already pruned,
//! it gets a `PB_RESET` event instead of a silent gap. A client whose queue is full is
//! disconnected with a `PB_DISCONNECT` event naming the reason (after the events queued
//! before it, so it can resume exactly); a client that received nothing for the idle
//! timeout is closed, as in PocketBase.
//!
//! Job topics (`jobs`, `jobs/{id}`, superusers only) carry job state changes as they are
//! committed; they are live only (not replayed across a reconnect).
//!
//! This module must not decide what a subscriber may see: that is `records::live`.

pub mod feed;
pub mod topic;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, Notify};

use crate::auth::{Op, Principal};
use crate::config::RealtimeSection;
use crate::records::catalog::Catalog;
use crate::records::filter::RequestInfo;
use crate::records::live::{self, LiveQuery, Watcher};
use crate::records::{Records, RecordsError};
use crate::store::{ReadTx, Store, StoreError, Table};
use crate::util::metrics::{Counter, Exposition};
use topic::Topic;

/// Entries read from the feed per step.
const CHUNK: usize = 512;
/// How long the dispatcher waits after a commit for the next ones, to send them together.
const GATHER: Duration = Duration::from_millis(5);
/// Job events waiting for the dispatcher at most.
pub const MAX_PENDING_JOB_EVENTS: usize = 10_000;

/// Why a realtime call was refused.
#[derive(Debug, thiserror::Error)]
pub enum RealtimeError {
    /// Unknown (or already closed) client id.
    #[error("Missing or invalid client id.")]
    UnknownClient,
    /// The caller is not who set the client's topics before.
    #[error("The current and the previous request authorization don't match.")]
    AuthMismatch,
    /// A topic only superusers may watch.
    #[error("{0}")]
    Forbidden(String),
    /// A subscription that cannot work, with the reason.
    #[error("{0}")]
    Invalid(String),
    /// Too many connected clients.
    #[error("The server has as many realtime clients as it takes ({0}); retry later.")]
    Full(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One SSE event, framed: `id`, `event`, `data` and the blank line that ends it. An empty
/// `id` leaves the client's last event id as it was; `event` has no line break
/// (subscription strings with one are refused). Subscribers who see the same thing share
/// one frame.
fn frame(id: &str, event: &str, data: &str) -> Bytes {
    let mut out = String::with_capacity(id.len() + event.len() + data.len() + 24);
    if !id.is_empty() {
        out.push_str("id:");
        out.push_str(id);
        out.push('\n');
    }
    out.push_str("event:");
    out.push_str(event);
    out.push_str("\ndata:");
    out.push_str(data);
    out.push_str("\n\n");
    Bytes::from(out)
}

/// What one client is sent at once: the events of one dispatch step, in order (one queue
/// slot and one wake-up for all of them).
#[derive(Debug, Clone, Default)]
pub struct Message {
    pub frames: Vec<Bytes>,
}

impl Message {
    fn one(frame: Bytes) -> Message {
        Message { frames: vec![frame] }
    }

    /// A protocol event of the server's own (`PB_CONNECT`, `PB_RESET`, `PB_DISCONNECT`).
    pub fn control(id: &str, event: &str, data: Value) -> Message {
        Message::one(frame(id, event, &data.to_string()))
    }
}

/// A client's identity as its topics were set: who, and what rules see of it.
#[derive(Debug, Clone)]
struct Caller {
    principal: Principal,
    /// Groups subscribers who see the same thing (one rendering per group).
    key: Arc<str>,
}

/// One subscription of one client.
#[derive(Debug)]
struct Subscription {
    /// The string as the client sent it: the SSE event name of its events.
    raw: Arc<str>,
    topic: Topic,
    query: LiveQuery,
    request: RequestInfo,
    /// The id of the topic's collection when the subscription was made.
    collection_id: Option<String>,
}

/// A connected client.
struct Client {
    id: Arc<str>,
    caller: Mutex<Option<Caller>>,
    subscriptions: RwLock<Arc<Vec<Subscription>>>,
    sender: mpsc::Sender<Message>,
    /// Why the server closed the stream, shown in the last event.
    closing: Arc<Mutex<Option<String>>>,
    /// The last feed sequence this client has been offered.
    cursor: AtomicU64,
    /// Offered events by the dispatcher (false while catching up from the feed).
    live: AtomicBool,
    catching_up: AtomicBool,
    /// Whether the client asked to resume from a position the feed no longer holds.
    reset: AtomicBool,
}

/// Counters for `/metrics`.
#[derive(Default)]
struct Stats {
    connects: Counter,
    events: Counter,
    slow_disconnects: Counter,
    resets: Counter,
}

struct Inner {
    store: Store,
    records: Records,
    config: RealtimeSection,
    clients: RwLock<HashMap<Arc<str>, Arc<Client>>>,
    wake: Notify,
    /// The last feed sequence offered to live clients.
    dispatched: AtomicU64,
    /// Held while a dispatch step runs, so a catching-up client joins between steps.
    dispatch_lock: tokio::sync::Mutex<()>,
    /// Job changes waiting to be sent (job id, action, job JSON).
    jobs: Mutex<Vec<(u64, &'static str, Value)>>,
    /// Set once a client watches a job topic: until then jobs are not copied for us.
    jobs_watched: Arc<AtomicBool>,
    stats: Stats,
}

/// The realtime service (cheap to clone).
#[derive(Clone)]
pub struct Realtime {
    inner: Arc<Inner>,
}

/// What `connect` hands the HTTP layer: the client id, its queue, and where the reason for
/// a server-side close is left.
pub struct Connection {
    pub client_id: Arc<str>,
    pub receiver: mpsc::Receiver<Message>,
    pub closing: Arc<Mutex<Option<String>>>,
    pub guard: ClientGuard,
    /// The first event (`PB_CONNECT`).
    pub hello: Message,
    pub idle_timeout: Duration,
}

/// Removes the client when its stream ends (dropped by the HTTP layer).
pub struct ClientGuard {
    inner: Arc<Inner>,
    id: Arc<str>,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        if let Ok(mut clients) = self.inner.clients.write() {
            clients.remove(&self.id);
        }
    }
}

/// Where a reconnecting client resumes: the sequence of the last event it saw. The client
/// id of `PB_CONNECT` ends in `.{sequence}`, so a client that lost its connection before
/// any event also resumes where it was.
pub fn parse_resume(last_event_id: &str) -> Option<u64> {
    let text = last_event_id.trim();
    let digits = text.rsplit_once('.').map_or(text, |(_, seq)| seq);
    digits.parse().ok()
}

impl Realtime {
    /// The service; `start` runs its dispatcher.
    pub fn new(store: Store, records: Records, config: RealtimeSection) -> Realtime {
        let inner = Arc::new(Inner {
            store,
            records,
            config,
            clients: RwLock::new(HashMap::new()),
            wake: Notify::new(),
            dispatched: AtomicU64::new(0),
            dispatch_lock: tokio::sync::Mutex::new(()),
            jobs: Mutex::new(Vec::new()),
            jobs_watched: Arc::new(AtomicBool::new(false)),
            stats: Stats::default(),
        });
        Realtime { inner }
    }

    /// Starts the dispatcher and the feed pruner; they stop when `shutdown` resolves.
    pub async fn start(
        &self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), StoreError> {
        let head = self.inner.store.read(feed::last_seq).await?;
        self.inner.dispatched.store(head, Ordering::SeqCst);
        let wake = self.inner.clone();
        self.inner.store.on_commit(Table::ChangeFeed, Arc::new(move || wake.wake.notify_one()));
        let inner = self.inner.clone();
        let dispatcher = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = inner.wake.notified() => {
                        // Commits close together go out as one step: one wake-up and one
                        // write per client instead of one per commit.
                        tokio::time::sleep(GATHER).await;
                    }
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                if let Err(err) = dispatch(&inner).await {
                    tracing::warn!(error = %err, "realtime dispatch failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
        let inner = self.inner.clone();
        let pruner = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                if let Err(err) = prune(&inner).await {
                    tracing::warn!(error = %err, "change feed pruning failed");
                }
            }
        });
        let inner = self.inner.clone();
        tokio::spawn(async move {
            shutdown.await;
            dispatcher.abort();
            pruner.abort();
            let clients: Vec<Arc<Client>> =
                inner.clients.read().map(|c| c.values().cloned().collect()).unwrap_or_default();
            for client in clients {
                close(
                    &inner,
                    &client,
                    "The server is shutting down; reconnect with Last-Event-ID to resume.",
                );
            }
        });
        Ok(())
    }

    /// Registers a new client. `resume` is the `Last-Event-ID` it sent, if any.
    pub async fn connect(&self, resume: Option<&str>) -> Result<Connection, RealtimeError> {
        let inner = &self.inner;
        let max = inner.config.max_clients.max(1);
        if inner.clients.read().map(|c| c.len()).unwrap_or(0) >= max {
            return Err(RealtimeError::Full(max));
        }
        // Everything committed before the connection is in the past, even what the
        // dispatcher has not sent yet.
        let head = inner.store.read(feed::last_seq).await?;
        let (position, live, reset) = match resume {
            None => (head, true, false),
            Some(raw) => match parse_resume(raw) {
                Some(seq) => (seq, false, false),
                // An id we never handed out: the client cannot know what it missed.
                None => (head, false, true),
            },
        };
        let (sender, receiver) = mpsc::channel(inner.config.client_queue.max(1));
        let closing = Arc::new(Mutex::new(None));
        let id: Arc<str> = Arc::from(format!("{}.{position}", crate::util::id::random_string(30)));
        let client = Arc::new(Client {
            id: id.clone(),
            caller: Mutex::new(None),
            subscriptions: RwLock::new(Arc::new(Vec::new())),
            sender,
            closing: closing.clone(),
            cursor: AtomicU64::new(position),
            live: AtomicBool::new(live),
            catching_up: AtomicBool::new(false),
            reset: AtomicBool::new(reset),
        });
        if let Ok(mut clients) = inner.clients.write() {
            clients.insert(id.clone(), client);
        }
        inner.stats.connects.inc();
        let hello = Message::control(&id, "PB_CONNECT", json!({ "clientId": &*id }));
        Ok(Connection {
            client_id: id.clone(),
            receiver,
            closing,
            guard: ClientGuard { inner: inner.clone(), id },
            hello,
            idle_timeout: Duration::from_secs(inner.config.idle_timeout_secs.max(1)),
        })
    }

    /// Sets the topics of client `client_id` as `principal` (replacing the previous ones).
    pub fn subscribe(
        &self,
        client_id: &str,
        principal: &Principal,
        request: &RequestInfo,
        subscriptions: &[String],
    ) -> Result<(), RealtimeError> {
        let inner = &self.inner;
        let client = inner
            .clients
            .read()
            .ok()
            .and_then(|c| c.get(client_id).cloned())
            .ok_or(RealtimeError::UnknownClient)?;
        if subscriptions.len() > topic::MAX_SUBSCRIPTIONS {
            return Err(RealtimeError::Invalid(format!(
                "At most {} subscriptions per client.",
                topic::MAX_SUBSCRIPTIONS
            )));
        }
        let key: Arc<str> = Arc::from(match principal {
            Principal::Anonymous => "anonymous".to_string(),
            Principal::Superuser { id } => format!("superuser:{id}"),
            Principal::Record { collection_id, id } => format!("record:{collection_id}:{id}"),
            Principal::ApiKey { id, .. } => format!("key:{id}"),
        });
        {
            let mut caller = client.caller.lock().map_err(|_| RealtimeError::UnknownClient)?;
            // As PocketBase: an anonymous client may sign in, a signed-in one cannot change.
            if let Some(previous) = caller.as_ref() {
                if &*previous.key != "anonymous" && previous.key != key {
                    return Err(RealtimeError::AuthMismatch);
                }
            }
            *caller = Some(Caller { principal: principal.clone(), key });
        }
        let catalog = inner.records.catalog();
        let mut parsed = Vec::with_capacity(subscriptions.len());
        for raw in subscriptions {
            let p = topic::parse(raw)
                .map_err(|e| RealtimeError::Invalid(format!("Invalid subscription: {e}.")))?;
            let entry = match &p.topic {
                Topic::Jobs | Topic::Job(_) => {
                    if !principal.is_superuser() {
                        return Err(RealtimeError::Forbidden(format!(
                            "Only superusers can subscribe to \"{raw}\"."
                        )));
                    }
                    inner.jobs_watched.store(true, Ordering::Relaxed);
                    None
                }
                Topic::Collection(c) | Topic::Record { collection: c, .. } => catalog.get(c).cloned(),
            };
            let text = |name: &str| p.query.get(name).and_then(Value::as_str).map(str::to_string);
            let query = LiveQuery::parse(
                &catalog,
                entry.as_deref(),
                principal,
                text("fields").as_deref(),
                text("expand").as_deref(),
                text("filter").as_deref(),
            )
            .map_err(|e| match e {
                RecordsError::BadRequest(m) => RealtimeError::Invalid(format!("{raw}: {m}")),
                other => RealtimeError::Invalid(format!("{raw}: {other}")),
            })?;
            let request = RequestInfo {
                auth: request.auth.clone(),
                method: "GET".into(),
                query: p.query.clone(),
                headers: p.headers.clone(),
                body: Map::new(),
            };
            let collection_id = entry.map(|e| e.collection.id.clone());
            parsed.push(Subscription {
                raw: Arc::from(raw.as_str()),
                topic: p.topic,
                query,
                request,
                collection_id,
            });
        }
        if let Ok(mut subs) = client.subscriptions.write() {
            *subs = Arc::new(parsed);
        }
        if !client.live.load(Ordering::SeqCst) && !client.catching_up.swap(true, Ordering::SeqCst) {
            let inner = inner.clone();
            tokio::spawn(async move {
                if let Err(err) = catch_up(&inner, &client).await {
                    tracing::warn!(error = %err, client = %client.id, "realtime catch-up failed");
                    close(
                        &inner,
                        &client,
                        "The server could not read the events this client missed; reconnect.",
                    );
                }
            });
        }
        Ok(())
    }

    /// Notes that job `id` changed (called after its transaction committed) or reported
    /// progress; subscribers of `jobs` and `jobs/{id}` get `{action, record: job}`. Live
    /// only: at most [`MAX_PENDING_JOB_EVENTS`] wait for the dispatcher (the oldest go).
    pub fn job_changed(&self, id: u64, action: &'static str, job: Value) {
        if let Ok(mut jobs) = self.inner.jobs.lock() {
            if jobs.len() >= MAX_PENDING_JOB_EVENTS {
                jobs.remove(0);
            }
            jobs.push((id, action, job));
        }
        self.inner.wake.notify_one();
    }

    /// Whether any client watches a job topic (shared with the job queue, which copies job
    /// changes only while it is set).
    pub fn jobs_watched(&self) -> Arc<AtomicBool> {
        self.inner.jobs_watched.clone()
    }

    /// Connected clients.
    pub fn clients(&self) -> usize {
        self.inner.clients.read().map(|c| c.len()).unwrap_or(0)
    }

    /// The realtime metric families.
    pub fn render_metrics(&self, out: &mut Exposition) {
        let s = &self.inner.stats;
        out.single(
            "backbone_realtime_clients",
            "gauge",
            "Connected realtime (SSE) clients.",
            self.clients() as f64,
        );
        let counters = [
            ("backbone_realtime_connects_total", "Realtime connections opened.", &s.connects),
            ("backbone_realtime_events_total", "Realtime events queued for clients.", &s.events),
            (
                "backbone_realtime_slow_disconnects_total",
                "Realtime clients disconnected because their queue was full.",
                &s.slow_disconnects,
            ),
            (
                "backbone_realtime_resets_total",
                "Reconnecting realtime clients told to reload (the events they missed were pruned).",
                &s.resets,
            ),
        ];
        for (name, help, counter) in counters {
            out.single(name, "counter", help, counter.get() as f64);
        }
    }
}

/// Closes `client` with `reason` (shown as its last event) and forgets it.
fn close(inner: &Inner, client: &Client, reason: &str) {
    if let Ok(mut closing) = client.closing.lock() {
        closing.get_or_insert_with(|| reason.to_string());
    }
    if let Ok(mut clients) = inner.clients.write() {
        clients.remove(&client.id);
    }
}

/// Messages of one feed entry, shared by subscribers who see the same thing (same identity,
/// same subscription string).
type Renderings = HashMap<(Arc<str>, Arc<str>), Option<Bytes>>;

/// The message of `entry` for `sub` of `client`, if the client may see it.
fn render_for(
    tx: &ReadTx,
    catalog: &Catalog,
    entry: &feed::Entry,
    stored: &crate::records::record::Stored,
    caller: &Caller,
    sub: &Subscription,
    cache: &mut Renderings,
) -> Option<Bytes> {
    let record_topic = matches!(sub.topic, Topic::Record { .. });
    let key = (caller.key.clone(), sub.raw.clone());
    if let Some(hit) = cache.get(&key) {
        return hit.clone();
    }
    let rendered = catalog.get(&entry.collection_id).and_then(|collection| {
        let op = if record_topic { Op::View } else { Op::List };
        let watcher = Watcher { principal: &caller.principal, request: &sub.request };
        match live::render_change(tx, catalog, collection, stored, op, watcher, &sub.query) {
            Ok(Some(record)) => {
                let data = json!({ "action": entry.action.as_str(), "record": record }).to_string();
                Some(frame(&entry.seq.to_string(), &sub.raw, &data))
            }
            Ok(None) => None,
            Err(err) => {
                tracing::debug!(error = %err, "a realtime event could not be rendered for a subscriber");
                None
            }
        }
    });
    cache.insert(key, rendered.clone());
    rendered
}

/// Whether `sub` watches `entry`.
fn watches(sub: &Subscription, catalog: &Catalog, entry: &feed::Entry) -> bool {
    let same_collection = |c: &str| match &sub.collection_id {
        Some(id) => *id == entry.collection_id,
        // The collection did not exist when the subscription was made.
        None => {
            c == entry.collection_id || catalog.get(c).is_some_and(|e| e.collection.id == entry.collection_id)
        }
    };
    match &sub.topic {
        Topic::Collection(c) => same_collection(c),
        Topic::Record { collection, id } => *id == entry.record_id && same_collection(collection),
        Topic::Jobs | Topic::Job(_) => false,
    }
}

/// The messages of `entries` for one client (in order).
fn messages_for(
    tx: &ReadTx,
    catalog: &Catalog,
    entries: &[(feed::Entry, Option<crate::records::record::Stored>)],
    client: &Client,
    caches: &mut [Renderings],
) -> Vec<Bytes> {
    let mut out = Vec::new();
    let Some(caller) = client.caller.lock().ok().and_then(|c| c.clone()) else {
        return out;
    };
    let subs = match client.subscriptions.read() {
        Ok(s) => s.clone(),
        Err(_) => return out,
    };
    let seen = client.cursor.load(Ordering::SeqCst);
    for (i, (entry, stored)) in entries.iter().enumerate() {
        let Some(stored) = stored else { continue };
        if entry.seq <= seen {
            continue;
        }
        for sub in subs.iter() {
            if !watches(sub, catalog, entry) {
                continue;
            }
            if let Some(frame) = render_for(tx, catalog, entry, stored, &caller, sub, &mut caches[i]) {
                out.push(frame);
            }
        }
    }
    out
}

/// Decodes the records of the entries some client watches.
fn decode_watched(
    catalog: &Catalog,
    entries: Vec<feed::Entry>,
    clients: &[Arc<Client>],
) -> Vec<(feed::Entry, Option<crate::records::record::Stored>)> {
    entries
        .into_iter()
        .map(|entry| {
            let watched = clients.iter().any(|c| {
                c.subscriptions
                    .read()
                    .map(|subs| subs.iter().any(|s| watches(s, catalog, &entry)))
                    .unwrap_or(false)
            });
            let stored = if watched {
                match entry.stored() {
                    Ok(s) => Some(s),
                    Err(err) => {
                        tracing::warn!(error = %err, "change feed entry skipped");
                        None
                    }
                }
            } else {
                None
            };
            (entry, stored)
        })
        .collect()
}

/// Offers every new feed entry to the live clients, in order; then the job changes.
async fn dispatch(inner: &Arc<Inner>) -> Result<(), StoreError> {
    let _step = inner.dispatch_lock.lock().await;
    loop {
        let from = inner.dispatched.load(Ordering::SeqCst);
        let clients: Vec<Arc<Client>> = inner
            .clients
            .read()
            .map(|c| c.values().filter(|c| c.live.load(Ordering::SeqCst)).cloned().collect())
            .unwrap_or_default();
        let catalog = inner.records.catalog();
        let worker = inner.clone();
        let (last, slow) = inner
            .store
            .read(move |tx| -> Result<(u64, Vec<Arc<Client>>), StoreError> {
                let head = feed::last_seq(tx)?;
                if head <= from {
                    return Ok((from, Vec::new()));
                }
                if clients.is_empty() {
                    return Ok((head, Vec::new()));
                }
                let entries = feed::read_range(tx, from, head, CHUNK)?;
                // Entries pruned before they were offered (only when the feed is tiny) are
                // skipped to where the feed continues.
                let last = entries.last().map_or(head, |e| e.seq);
                let entries = decode_watched(&catalog, entries, &clients);
                let mut caches: Vec<Renderings> = vec![HashMap::new(); entries.len()];
                let mut slow = Vec::new();
                for client in &clients {
                    let frames = messages_for(tx, &catalog, &entries, client, &mut caches);
                    if !frames.is_empty() {
                        let n = frames.len() as u64;
                        if client.sender.try_send(Message { frames }).is_err() {
                            slow.push(client.clone());
                        } else {
                            worker.stats.events.add(n);
                        }
                    }
                    client.cursor.store(last, Ordering::SeqCst);
                }
                Ok((last, slow))
            })
            .await?;
        for client in slow {
            inner.stats.slow_disconnects.inc();
            close(
                inner,
                &client,
                "This client did not keep up with its events; reconnect with Last-Event-ID to resume.",
            );
        }
        if last == from {
            break;
        }
        inner.dispatched.store(last, Ordering::SeqCst);
    }
    send_jobs(inner);
    Ok(())
}

/// Sends the queued job changes to superusers watching them.
fn send_jobs(inner: &Inner) {
    let jobs = match inner.jobs.lock() {
        Ok(mut jobs) if !jobs.is_empty() => std::mem::take(&mut *jobs),
        _ => return,
    };
    let clients: Vec<Arc<Client>> =
        inner.clients.read().map(|c| c.values().cloned().collect()).unwrap_or_default();
    for (id, action, job) in jobs {
        let data = json!({ "action": action, "record": job }).to_string();
        for client in &clients {
            let Ok(subs) = client.subscriptions.read().map(|s| s.clone()) else { continue };
            for sub in subs.iter() {
                let hit = match sub.topic {
                    Topic::Jobs => true,
                    Topic::Job(j) => j == id,
                    _ => false,
                };
                if hit && client.sender.try_send(Message::one(frame("", &sub.raw, &data))).is_ok() {
                    inner.stats.events.inc();
                }
            }
        }
    }
}

/// Brings a reconnected client from its resume point up to the live stream, then makes it
/// live. It alone is served here, waiting for room in its queue (with a deadline).
async fn catch_up(inner: &Arc<Inner>, client: &Arc<Client>) -> Result<(), StoreError> {
    let send_deadline = Duration::from_secs(30);
    let (pruned, head) =
        inner.store.read(|tx| Ok::<_, StoreError>((feed::pruned_through(tx)?, feed::last_seq(tx)?))).await?;
    let cursor = client.cursor.load(Ordering::SeqCst);
    if client.reset.load(Ordering::SeqCst) || cursor < pruned || cursor > head {
        inner.stats.resets.inc();
        let reason = if cursor > head {
            "This event id is newer than the server's feed (was the data restored?); reload what you show."
        } else {
            "Some events this client missed are no longer kept; reload what you show."
        };
        // Its id moves the client's position to now: a later reconnect resumes from here.
        let message = Message::control(&head.to_string(), "PB_RESET", json!({ "reason": reason }));
        if tokio::time::timeout(send_deadline, client.sender.send(message)).await.map_or(true, |r| r.is_err())
        {
            close(inner, client, "This client did not read its events; reconnect.");
            return Ok(());
        }
        client.cursor.store(head, Ordering::SeqCst);
    }
    loop {
        let cursor = client.cursor.load(Ordering::SeqCst);
        let target = inner.dispatched.load(Ordering::SeqCst);
        if cursor >= target {
            let _step = inner.dispatch_lock.lock().await;
            if client.cursor.load(Ordering::SeqCst) >= inner.dispatched.load(Ordering::SeqCst) {
                client.live.store(true, Ordering::SeqCst);
                return Ok(());
            }
            continue;
        }
        let catalog = inner.records.catalog();
        let one = vec![client.clone()];
        let (last, frames) = inner
            .store
            .read(move |tx| -> Result<(u64, Vec<Bytes>), StoreError> {
                let entries = feed::read_range(tx, cursor, target, CHUNK)?;
                let last = entries.last().map_or(target, |e| e.seq);
                let entries = decode_watched(&catalog, entries, &one);
                let mut caches: Vec<Renderings> = vec![HashMap::new(); entries.len()];
                Ok((last, messages_for(tx, &catalog, &entries, &one[0], &mut caches)))
            })
            .await?;
        if !frames.is_empty() {
            let n = frames.len() as u64;
            match tokio::time::timeout(send_deadline, client.sender.send(Message { frames })).await {
                Ok(Ok(())) => inner.stats.events.add(n),
                // The stream is gone: nothing left to do.
                Ok(Err(_)) => return Ok(()),
                Err(_) => {
                    close(inner, client, "This client did not read its events; reconnect to resume.");
                    return Ok(());
                }
            }
        }
        client.cursor.store(last, Ordering::SeqCst);
    }
}

/// Deletes feed entries past the retention (age and count).
async fn prune(inner: &Inner) -> Result<(), StoreError> {
    let retention_ms = i64::try_from(inner.config.retention_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let keep = inner.config.retention_events.max(1);
    loop {
        let older_than = chrono::Utc::now().timestamp_millis().saturating_sub(retention_ms);
        if !inner.store.read(move |tx| feed::prune_due(tx, older_than, keep)).await? {
            return Ok(());
        }
        let deleted = inner.store.write(move |tx| feed::prune(tx, older_than, keep, 2000)).await?;
        if deleted < 2000 {
            return Ok(());
        }
    }
}

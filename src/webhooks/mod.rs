//! Outbound webhooks: signed JSON POSTs to URLs that users register, delivered by the job
//! queue with retries. Alert rules use it today; record webhooks are meant to reuse it.
//!
//! Owns: [`Webhooks`] (what other modules call: [`Webhooks::enqueue_in`] inside their own
//! write transaction, so a delivery exists if and only if the change that caused it
//! commits), the `webhooks.deliver` job kind and its handler (`deliver.rs`), signatures
//! (`sign.rs`), the target policy against SSRF (`target.rs`), and the signing secrets
//! (table `webhook_secrets`, keyed by the owner's reference such as `alert/<rule id>`).
//! Knows nothing of HTTP routes; errors are [`WebhookError`].
//!
//! A delivery's job payload holds the URL, the event name, the JSON body, a delivery id
//! (the `X-Backbone-Delivery` header, the same on every attempt, for the receiver to
//! de-duplicate) and a reference to its secret, never the secret itself: the jobs API shows
//! payloads, and a rotated secret signs the retries that follow.
//!
//! # How it works
//!
//! Outbound webhooks: signed JSON POSTs to URLs users register, delivered by the job queue.
//! `Webhooks` (on `App` as `app.webhooks`) is what other modules call:
//! `Webhooks::enqueue_in(&self, tx, Delivery { url, event, body, secret_owner })` inside their
//! own write transaction (the delivery exists if and only if that write commits). Alert rules
//! use it; record webhooks are meant to reuse it unchanged.
//! - `mod.rs` — the service, the `webhooks.deliver` kind (queue `webhooks`, `[webhooks]
//!   max_attempts` 8, first retry after 30 s, doubling), and the signing secrets: table
//!   `webhook_secrets`, owner (`alert/<rule id>`) → secret. The job payload is `{url, event,
//!   deliveryId, secretOwner, body}`: the secret is read at send time, so the jobs API never
//!   shows it and a rotated secret signs the retries that follow. `deliveryId` (`whd_…`, the
//!   `X-Backbone-Delivery` header) is fixed at enqueue, the same on every attempt and replay.
//! - `sign.rs` — `X-Backbone-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
//!   (Stripe's scheme: the timestamp is signed, each attempt signed afresh), `verify` as a
//!   receiver does it, generated secrets (`whsec_` + 32 random characters) and their hints.
//! - `target.rs` — the SSRF policy. `non_public_range` names the range of any non-public
//!   address (loopback, RFC 1918, link-local incl. 169.254.169.254, CGNAT, benchmarking,
//!   documentation, multicast, reserved, unique-local/site-local/link-local IPv6, and IPv6 forms
//!   embedding such an IPv4 address: mapped, NAT64, 6to4); `TargetPolicy` adds `[webhooks]
//!   allow_private_targets` and `allowed_private_ranges`; `parse_url` (http/https, a host, no
//!   credentials, ≤ 2048 bytes, literal addresses checked) runs when a URL is saved, then
//!   `check_resolved` resolves names before the write (a name that does not resolve yet is
//!   accepted). `GuardedResolver` is the HTTP client's only resolver: it checks every address a
//!   name resolves to and refuses the name if any is forbidden.
//! - `deliver.rs` — the handler: one POST with `Content-Type: application/json`,
//!   `User-Agent: Backbone/<version>`, `X-Backbone-Event`, `X-Backbone-Delivery` and the
//!   signature; reqwest with rustls (ring), no proxies, no redirects, `timeout_secs` for
//!   connecting and for the whole exchange; at most 64 KiB of the answer read. 2xx completes
//!   (the status goes into the job's progress); 410, a refused target, a missing secret or a
//!   malformed payload are final ([`crate::jobs::registry::JobFailure::discard`]); anything else retries, the status and
//!   the start of the answer in the attempt's error.
//!
//! **Architecture invariant:** every webhook request is a `webhooks.deliver` job, and its
//! client connects only to addresses the target policy checked at that moment: names resolve
//! through `GuardedResolver`, literal addresses are checked before sending, redirects are not
//! followed, proxies are not used.

pub mod deliver;
pub mod sign;
pub mod target;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{Config, WebhooksSection};
use crate::jobs::{JobSpec, Jobs, JobsError, KindOptions, Registry};
use crate::store::{ReadTx, Store, StoreError, Table, WriteTx};
pub use target::{TargetError, TargetPolicy};

/// The job kind of one delivery (one event to one URL).
pub const JOB_KIND: &str = "webhooks.deliver";
/// The queue deliveries run in (`[jobs.queues] webhooks = N`; default `[jobs]
/// default_concurrency`), apart from email and other work so a slow receiver delays
/// nothing else.
pub const QUEUE: &str = "webhooks";
/// Longest delivery body, in bytes (bodies are built by the server; this is a guard).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// What can go wrong in the webhooks domain.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The URL is malformed or its target is refused.
    #[error(transparent)]
    Target(TargetError),
    /// The body is larger than [`MAX_BODY_BYTES`] or cannot be encoded.
    #[error("{0}")]
    Body(String),
    /// Enqueueing the job failed.
    #[error(transparent)]
    Jobs(JobsError),
    /// Storage failed.
    #[error(transparent)]
    Store(StoreError),
    /// The server is misconfigured (e.g. an invalid `[webhooks]` range).
    #[error("{0}")]
    Config(String),
}

impl From<StoreError> for WebhookError {
    fn from(err: StoreError) -> WebhookError {
        WebhookError::Store(err)
    }
}

/// One event to deliver to one URL.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The receiver (checked when it was saved; checked again at every attempt).
    pub url: String,
    /// The event name, sent as `X-Backbone-Event` (`alert.firing`).
    pub event: String,
    /// The JSON sent; encoded the same way on every attempt.
    pub body: Value,
    /// The owner of the signing secret in `webhook_secrets` (see [`put_secret`]).
    pub secret_owner: String,
}

/// The job payload of a delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Payload {
    pub url: String,
    pub event: String,
    pub delivery_id: String,
    pub secret_owner: String,
    pub body: Value,
}

/// State shared by [`Webhooks`] and the job handler.
pub(crate) struct Core {
    pub store: Store,
    pub config: WebhooksSection,
    pub policy: Arc<TargetPolicy>,
    client: OnceLock<reqwest::Client>,
}

impl Core {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.config.timeout_secs.max(1))
    }

    /// The HTTP client, built on first use on the blocking pool (building it reads the
    /// system's root certificates from disk).
    pub async fn client(self: &Arc<Self>) -> Result<reqwest::Client, String> {
        if let Some(client) = self.client.get() {
            return Ok(client.clone());
        }
        let core = self.clone();
        tokio::task::spawn_blocking(move || {
            let built =
                deliver::build_client(core.policy.clone(), core.timeout()).map_err(|e| e.to_string())?;
            Ok(core.client.get_or_init(|| built).clone())
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// The service before the job queue exists (the queue needs the registered handler, and
/// [`Webhooks`] needs the queue): see [`Webhooks::prepare`] and [`Webhooks::new`].
pub struct PreparedWebhooks(Arc<Core>);

/// The webhooks service. Cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    core: Arc<Core>,
    jobs: Jobs,
}

impl Webhooks {
    /// Reads `[webhooks]` and registers the `webhooks.deliver` job kind in `registry`.
    pub fn prepare(
        store: Store,
        config: &Config,
        registry: &mut Registry,
    ) -> Result<PreparedWebhooks, WebhookError> {
        let policy = Arc::new(TargetPolicy::from_config(&config.webhooks));
        let core = Arc::new(Core { store, config: config.webhooks.clone(), policy, client: OnceLock::new() });
        let handler_core = core.clone();
        registry.register(
            JOB_KIND,
            KindOptions {
                queue: Some(QUEUE.into()),
                max_attempts: Some(config.webhooks.max_attempts.max(1)),
                // The request's own deadline, plus a margin for reading the secret.
                timeout: Some(core.timeout() + Duration::from_secs(5)),
                backoff_base: Some(Duration::from_millis(config.webhooks.backoff_base_ms.max(1))),
            },
            move |ctx| deliver::run(handler_core.clone(), ctx),
        );
        Ok(PreparedWebhooks(core))
    }

    pub fn new(prepared: PreparedWebhooks, jobs: Jobs) -> Webhooks {
        Webhooks { core: prepared.0, jobs }
    }

    /// Which targets are allowed (for checking URLs when they are saved).
    pub fn policy(&self) -> &TargetPolicy {
        &self.core.policy
    }

    /// Queues `delivery` inside the caller's write transaction; returns its delivery id.
    pub fn enqueue_in(&self, tx: &mut WriteTx<'_>, delivery: Delivery) -> Result<String, WebhookError> {
        let size = serde_json::to_vec(&delivery.body).map_err(|e| WebhookError::Body(e.to_string()))?.len();
        if size > MAX_BODY_BYTES {
            return Err(WebhookError::Body(format!(
                "a webhook body of {size} bytes (at most {MAX_BODY_BYTES})"
            )));
        }
        let delivery_id = format!("whd_{}", crate::util::id::random_string(24));
        let payload = Payload {
            url: delivery.url,
            event: delivery.event,
            delivery_id: delivery_id.clone(),
            secret_owner: delivery.secret_owner,
            body: delivery.body,
        };
        let payload = serde_json::to_value(&payload).map_err(|e| WebhookError::Body(e.to_string()))?;
        self.jobs.enqueue_in(tx, JobSpec::new(JOB_KIND, payload).queue(QUEUE)).map_err(WebhookError::Jobs)?;
        Ok(delivery_id)
    }
}

/// Stores (or replaces) the signing secret of `owner` (e.g. `alert/<rule id>`).
pub fn put_secret(tx: &mut WriteTx<'_>, owner: &str, secret: &str) {
    tx.put(Table::WebhookSecrets, owner.as_bytes(), secret.as_bytes().to_vec());
}

/// Deletes `owner`'s secret (its deliveries still queued then fail for good).
pub fn delete_secret(tx: &mut WriteTx<'_>, owner: &str) {
    tx.delete(Table::WebhookSecrets, owner.as_bytes());
}

/// `owner`'s signing secret, if it has one.
pub fn read_secret(tx: &ReadTx, owner: &str) -> Result<Option<String>, StoreError> {
    Ok(tx.get(Table::WebhookSecrets, owner.as_bytes())?.and_then(|bytes| String::from_utf8(bytes).ok()))
}

/// Checks a secret a user chose: 16 to 256 visible ASCII characters (it is the HMAC key,
/// as UTF-8 bytes, and receivers paste it into their configuration).
pub fn parse_secret(raw: &str) -> Result<String, String> {
    let len = raw.chars().count();
    if !(16..=256).contains(&len) || !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("16 to 256 visible ASCII characters (no spaces).".into());
    }
    Ok(raw.to_string())
}

//! One delivery attempt: the `webhooks.deliver` job handler and its HTTP client.
//!
//! The client resolves names only through [`GuardedResolver`] (so it connects to nothing
//! the target policy did not check), ignores proxy variables (a proxy would resolve names
//! itself), follows no redirects (a 3xx is a failed attempt: a redirect could point
//! anywhere), and has one deadline for connecting and one for the whole exchange. The
//! response body is read up to [`MAX_RESPONSE_BYTES`] and dropped; its first characters go
//! into the attempt's error text, which the jobs API shows.
//!
//! Outcomes: 2xx completes the job. 410 Gone is final at once (the receiver says it is
//! gone for good); so are a refused target, a missing secret and a malformed payload.
//! Everything else (other statuses, timeouts, connection and TLS errors, delivery switched
//! off) fails the attempt, and the queue retries with the kind's backoff until
//! `[webhooks] max_attempts`, then the job is dead and can be replayed from `/api/jobs`.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::sign;
use super::target::{GuardedResolver, TargetError, TargetPolicy};
use super::{Core, Payload};
use crate::jobs::{Done, JobContext, JobFailure};

/// Most response bytes read (the rest is not read; the connection is dropped).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Characters of the response body kept in a failed attempt's error text.
const SNIPPET_CHARS: usize = 200;

/// The User-Agent of every delivery.
pub fn user_agent() -> String {
    format!("Backbone/{}", env!("CARGO_PKG_VERSION"))
}

/// The delivery client (one per server; connections are pooled per host).
pub fn build_client(policy: Arc<TargetPolicy>, timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver::new(policy)))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .user_agent(user_agent())
        .build()
}

/// What the receiver answered.
struct Answer {
    status: reqwest::StatusCode,
    snippet: String,
}

/// Sends the request and reads at most [`MAX_RESPONSE_BYTES`] of the answer. Once the
/// status has arrived the receiver has decided; a body that breaks off does not change it.
async fn exchange(request: reqwest::RequestBuilder) -> Result<Answer, reqwest::Error> {
    let mut response = request.send().await?;
    let status = response.status();
    let mut body = Vec::new();
    while body.len() < MAX_RESPONSE_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_RESPONSE_BYTES - body.len();
                body.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
            }
            Ok(None) | Err(_) => break,
        }
    }
    let text: String = String::from_utf8_lossy(&body)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(SNIPPET_CHARS)
        .collect();
    Ok(Answer { status, snippet: text.trim().to_string() })
}

/// The error and its causes on one line (reqwest's own text names only the URL).
fn describe(err: &reqwest::Error, timeout: Duration) -> String {
    if err.is_timeout() {
        return format!("no answer within {} s (timed out)", timeout.as_secs());
    }
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The policy's refusal inside a client error (the resolver's verdict), if that is what it is.
fn refusal(err: &reqwest::Error) -> Option<&TargetError> {
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<TargetError>() {
            return Some(refused);
        }
        source = cause.source();
    }
    None
}

/// The `webhooks.deliver` handler: one signed POST.
pub(super) async fn run(core: Arc<Core>, ctx: JobContext) -> Result<Done, JobFailure> {
    let payload: Payload = serde_json::from_value(ctx.payload.clone())
        .map_err(|e| JobFailure::discard(format!("malformed webhook job payload: {e}")))?;
    if !core.config.enabled {
        return Err(JobFailure::retry(
            "webhook delivery is disabled ([webhooks] enabled = false); the delivery waits",
        ));
    }
    let url = core.policy.parse_url(&payload.url).map_err(|e| JobFailure::discard(e.to_string()))?;
    let owner = payload.secret_owner.clone();
    let secret = core
        .store
        .read(move |tx| super::read_secret(tx, &owner))
        .await
        .map_err(|e| JobFailure::retry(format!("cannot read the signing secret: {e}")))?
        .ok_or_else(|| {
            JobFailure::discard(format!(
                "the signing secret of {} no longer exists (its owner was deleted)",
                payload.secret_owner
            ))
        })?;
    let body = serde_json::to_vec(&payload.body).map_err(|e| JobFailure::discard(e.to_string()))?;
    let client =
        core.client().await.map_err(|e| JobFailure::retry(format!("cannot build the HTTP client: {e}")))?;
    let signature = sign::header_value(&secret, chrono::Utc::now().timestamp(), &body);
    let request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(sign::HEADER, signature)
        .header("X-Backbone-Event", payload.event.as_str())
        .header("X-Backbone-Delivery", payload.delivery_id.as_str())
        .body(body);
    let outcome = tokio::select! {
        outcome = exchange(request) => outcome,
        () = ctx.cancelled().cancelled() => {
            return Err(JobFailure::retry("stopped before the receiver answered"));
        }
    };
    let answer = match outcome {
        Ok(answer) => answer,
        Err(err) => {
            if let Some(refused) = refusal(&err) {
                return Err(JobFailure::discard(refused.to_string()));
            }
            return Err(JobFailure::retry(describe(&err, core.timeout())));
        }
    };
    let status = answer.status;
    ctx.progress(json!({"status": status.as_u16(), "attempt": ctx.attempt}));
    if status.is_success() {
        return Done::complete();
    }
    let mut message = format!("HTTP {status}");
    if status.is_redirection() {
        message.push_str(" (redirects are not followed; use the final URL)");
    }
    if !answer.snippet.is_empty() {
        message.push_str(": ");
        message.push_str(&answer.snippet);
    }
    if status == reqwest::StatusCode::GONE {
        return Err(JobFailure::discard(format!("{message} (the receiver is gone; not retried)")));
    }
    Err(JobFailure::retry(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_client_refuses_a_name_that_resolves_to_loopback_before_connecting() {
        crate::util::tls::install_crypto_provider();
        let client = build_client(Arc::new(TargetPolicy::default()), Duration::from_secs(5)).expect("client");
        // Nothing listens on port 9; the refusal comes from the resolver, before any connect.
        let err = client.post("http://localhost:9/hook").send().await.expect_err("refused");
        let refused = refusal(&err).expect("the policy's refusal is in the error chain");
        assert!(matches!(refused, TargetError::Forbidden { .. }), "{refused}");
        assert!(describe(&err, Duration::from_secs(5)).contains("non-public address"), "{err}");
    }
}

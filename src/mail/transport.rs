//! SMTP delivery with mail-send: implicit TLS, STARTTLS or plain; AUTH; timeouts; a small
//! pool of idle connections so a busy outbox does not pay a handshake per message.
//!
//! Every error is classified for the outbox: a 5xx reply to MAIL FROM, RCPT TO or DATA is
//! permanent (the email is dead at once, the reply kept); everything else (4xx, refused or
//! dropped connections, timeouts, TLS or AUTH trouble, a 5xx greeting) is temporary and
//! retried with backoff, since fixing the relay or the settings makes it succeed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mail_send::smtp::message::Message;
use mail_send::{Credentials, SmtpClient, SmtpClientBuilder};
use tokio::io::{AsyncRead, AsyncWrite};

use super::settings::{Security, Smtp};

/// Idle connections kept for reuse.
const POOL_MAX: usize = 64;
/// Idle connections older than this are closed rather than reused (servers drop idle
/// clients after a few minutes; stay well below).
const POOL_IDLE: Duration = Duration::from_secs(30);

/// Any byte stream a client can run over (TCP, or TLS over TCP).
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

type Client = SmtpClient<Box<dyn Stream>>;

/// One email, ready for the wire.
pub struct Envelope<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub body: Vec<u8>,
}

/// How a delivery attempt failed.
#[derive(Debug, Clone, PartialEq)]
pub struct SendFailure {
    /// True when retrying cannot help (a 5xx reply to the message).
    pub permanent: bool,
    /// The server's reply (`550 5.1.1 no such user`) or a description of the failure.
    pub reply: String,
}

/// The SMTP transport: builds clients from the current settings and pools idle ones.
pub struct Transport {
    /// Bumped whenever the settings change: pooled clients of an older generation are closed.
    generation: AtomicU64,
    idle: Mutex<Vec<(u64, Instant, Client)>>,
    builder: Mutex<Option<(u64, SmtpClientBuilder<String>)>>,
}

impl Default for Transport {
    fn default() -> Self {
        Transport { generation: AtomicU64::new(0), idle: Mutex::new(Vec::new()), builder: Mutex::new(None) }
    }
}

/// mail-send's reply type.
mod smtp_reply {
    pub type Reply = smtp_proto::Response<String>;
}

/// A reply as one line: `550 5.1.1 no such user`.
fn describe(reply: &smtp_reply::Reply) -> String {
    let text = reply.message.split_whitespace().collect::<Vec<_>>().join(" ");
    match reply.esc {
        [0, 0, 0] => format!("{} {text}", reply.code),
        [a, b, c] => format!("{} {a}.{b}.{c} {text}", reply.code),
    }
}

impl Transport {
    /// Forgets pooled connections and the cached client builder (after a settings change).
    pub fn settings_changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }

    fn builder(&self, smtp: &Smtp) -> Result<SmtpClientBuilder<String>, SendFailure> {
        let generation = self.generation.load(Ordering::SeqCst);
        if let Ok(slot) = self.builder.lock() {
            if let Some((g, builder)) = slot.as_ref() {
                if *g == generation {
                    return Ok(builder.clone());
                }
            }
        }
        let mut builder = SmtpClientBuilder::new(smtp.host.clone(), smtp.port)
            .map_err(|e| temporary(format!("cannot set up TLS: {e}")))?
            .implicit_tls(smtp.security == Security::Tls)
            .timeout(Duration::from_secs(smtp.timeout_secs.max(1)));
        if !smtp.local_name.is_empty() {
            builder = builder.helo_host(smtp.local_name.clone());
        }
        if !smtp.username.is_empty() {
            builder = builder.credentials(Credentials::new(smtp.username.clone(), smtp.password.clone()));
        }
        if let Ok(mut slot) = self.builder.lock() {
            *slot = Some((generation, builder.clone()));
        }
        Ok(builder)
    }

    async fn connect(&self, smtp: &Smtp) -> Result<Client, SendFailure> {
        let builder = self.builder(smtp)?;
        // TCP_NODELAY: mail-send writes a message in several small writes; with Nagle on,
        // the last one waits for the server's delayed ACK (~40 ms per message).
        let client = match smtp.security {
            Security::None => builder.connect_plain().await.map(|c| {
                let _ = c.stream.set_nodelay(true);
                boxed(c)
            }),
            Security::Tls | Security::Starttls => builder.connect().await.map(|c| {
                let _ = c.stream.get_ref().0.set_nodelay(true);
                boxed(c)
            }),
        };
        client
            .map_err(|e| temporary(format!("connecting to {}:{}: {}", smtp.host, smtp.port, error_text(&e))))
    }

    fn take_idle(&self) -> Option<(u64, Client)> {
        let generation = self.generation.load(Ordering::SeqCst);
        let mut idle = self.idle.lock().ok()?;
        while let Some((g, since, client)) = idle.pop() {
            if g == generation && since.elapsed() < POOL_IDLE {
                return Some((g, client));
            }
        }
        None
    }

    /// Returns a healthy client to the pool, unless the settings changed since it connected.
    fn put_idle(&self, generation: u64, client: Client) {
        if generation != self.generation.load(Ordering::SeqCst) {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < POOL_MAX {
                idle.push((generation, Instant::now(), client));
            }
        }
    }

    /// Delivers one message; returns the server's final reply (`250 ...`).
    pub async fn send(&self, smtp: &Smtp, envelope: &Envelope<'_>) -> Result<String, SendFailure> {
        if let Some((generation, mut client)) = self.take_idle() {
            match client.send(message(envelope)).await {
                Ok(reply) => {
                    self.put_idle(generation, client);
                    return Ok(describe(&reply));
                }
                // 421: the server is closing this (idle) connection; try a fresh one.
                Err(mail_send::Error::UnexpectedReply(reply)) if reply.code() != 421 => {
                    return Err(classify_reply(&reply))
                }
                // A pooled connection the server had already dropped: use a fresh one.
                Err(_) => {}
            }
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let mut client = self.connect(smtp).await?;
        match client.send(message(envelope)).await {
            Ok(reply) => {
                self.put_idle(generation, client);
                Ok(describe(&reply))
            }
            Err(mail_send::Error::UnexpectedReply(reply)) => Err(classify_reply(&reply)),
            Err(other) => Err(temporary(error_text(&other))),
        }
    }
}

fn boxed<T: Stream + 'static>(client: SmtpClient<T>) -> Client {
    SmtpClient { stream: Box::new(client.stream), timeout: client.timeout }
}

fn message<'a>(envelope: &'a Envelope<'_>) -> Message<'a> {
    Message::new(envelope.from, [envelope.to], envelope.body.as_slice())
}

fn temporary(reply: String) -> SendFailure {
    SendFailure { permanent: false, reply }
}

/// A reply to the message's own commands: 5xx is permanent, anything else temporary.
fn classify_reply(reply: &smtp_reply::Reply) -> SendFailure {
    SendFailure { permanent: (500..600).contains(&reply.code()), reply: describe(reply) }
}

/// mail-send's error as one line, with the server's reply when there was one.
fn error_text(error: &mail_send::Error) -> String {
    match error {
        mail_send::Error::UnexpectedReply(reply) => describe(reply),
        mail_send::Error::AuthenticationFailed(reply) => {
            format!("authentication failed: {}", describe(reply))
        }
        mail_send::Error::MissingStartTls => {
            "the server does not offer STARTTLS (set security to tls or none)".into()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_hundreds_are_permanent_and_four_hundreds_temporary() {
        let reply = |code: u16| smtp_reply::Reply { code, esc: [0, 0, 0], message: "x".into() };
        assert!(classify_reply(&reply(550)).permanent);
        assert!(classify_reply(&reply(554)).permanent);
        assert!(!classify_reply(&reply(451)).permanent);
        assert!(!classify_reply(&reply(421)).permanent);
    }
}

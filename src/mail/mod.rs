//! Outgoing email: templates, the outbox (every email is a `mail.send` job), SMTP delivery,
//! the delivery log and the run-time mail settings.
//!
//! Owns: [`Mail`] (what other modules call: [`Mail::enqueue_in`] inside their own write
//! transaction, or [`Mail::enqueue`]), the job handler, header and address validation
//! (`address.rs`), templates and rendering (`template.rs`), settings (`settings.rs`), the
//! delivery log (`log.rs`) and the SMTP transport (`transport.rs`). Knows nothing of HTTP;
//! errors are [`MailError`].
//!
//! Rendering happens at enqueue time: the job payload holds the finished subject, text and
//! HTML, so the log shows the real subject, a template edit never changes an email already
//! queued, and a render error is the caller's 400 instead of a dead job. The transport
//! settings (host, credentials) are read at send time, so fixing them lets queued email go.
//!
//! # How it works
//!
//! Outgoing email. `Mail` (on `App` as `app.mail`) is what other modules call:
//! `Mail::enqueue_in(&self, tx, OutgoingMail) -> Result<MailId, MailError>` inside their own
//! write transaction (the email exists if and only if that write commits) or
//! `Mail::enqueue(OutgoingMail)` on its own. `OutgoingMail { to, to_name, locale, content }`
//! with `Content::Template { template: Template, vars }` or `Content::Raw { subject, html,
//! text }`; `MailId` is the id of the email's `mail.send` job.
//! - `mod.rs` — the service, rendering, and the `mail.send` handler (queue `mail`, whose
//!   concurrency is the number of SMTP connections).
//! - `address.rs` — addresses (ASCII dot-atom `local@domain`) and header text; any control
//!   character (CR/LF) in a header value is a field error, never stripped.
//! - `template.rs` — the six built-in templates (HTML + text), variant choice by locale
//!   (`pt-br` → `pt` → `default` → built-in), and rendering: `{{name}}`/`{{record.field}}` plus
//!   PocketBase's `{APP_NAME}`-style placeholders, HTML-escaped in the HTML part, one pass.
//! - `settings.rs` — `GET/PATCH /api/settings` (PocketBase's `meta`/`smtp` shape plus
//!   `smtp.security`, `smtp.timeoutSecs`, `templates`). The config's `[mail]` section gives
//!   defaults; the `settings` table holds only the superuser's overrides, so config changes
//!   still reach keys nobody overrode. `Settings::update(tx, ...)` is the only writer and
//!   returns a `SettingsChange` (changed key paths, secrets by name only) for the audit log to
//!   come. The SMTP password is never serialized.
//! - `log.rs` — the delivery log (`mail_log` table, keyed by job id): written `queued` with the
//!   job, then `sent`/`retrying`/`dead` with the SMTP reply by the handler's effects, in the
//!   transaction that records the attempt on the job. Outcomes the handler never sees (cancel,
//!   timeout, crash) are read from the job when listing. Retention (`[mail] keep_log_secs`):
//!   each successful send's transaction also deletes up to 8 of the oldest expired rows.
//! - `transport.rs` — mail-send over TCP (+ TLS via rustls/ring): implicit TLS, STARTTLS or
//!   plain; AUTH; one timeout for connecting and for each command; TCP_NODELAY; a pool of idle
//!   connections (dropped after 30 s or a settings change; a dead pooled connection falls back
//!   to a fresh one). A 5xx reply to MAIL/RCPT/DATA is permanent; everything else (4xx,
//!   connection, TLS, AUTH, timeouts, a 5xx greeting) is retried.
//!
//! Rendering happens at enqueue: the job payload is the finished message, so the log shows the
//! real subject, template edits never change queued email, and bad input is the caller's 400
//! rather than a dead job. Transport settings are read at send time, so fixing them lets
//! waiting email go; while `smtp.enabled` is false, email waits and retries.
//!
//! **Architecture invariant:** every email is a `mail.send` job; nothing sends SMTP outside the
//! job handler (the test email too goes through the outbox).

pub mod address;
pub mod log;
pub mod settings;
pub mod template;
mod transport;

#[cfg(test)]
mod tests;

use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::jobs::{Done, JobContext, JobFailure, JobSpec, Jobs, JobsError, KindOptions, Registry};
use crate::store::{Store, StoreError, Table, WriteTx};
use crate::util::invalid::{parse_object, Collector, Invalid, Summary, Typed};
use address::{parse_address, parse_header_text};
use log::{DeliveryState, LogFilter, LogRow};
use settings::{Settings, SettingsChange};
use transport::{Envelope, SendFailure, Transport};

/// The job kind of one email.
pub const JOB_KIND: &str = "mail.send";
/// The queue mail jobs run in (its concurrency is the number of SMTP connections; set it
/// with `[jobs.queues] mail = N`, default `[jobs] default_concurrency`).
pub const QUEUE: &str = "mail";

/// The built-in templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Template {
    Verification,
    PasswordReset,
    EmailChange,
    Otp,
    ExportReady,
    Alert,
}

/// Hides the one-time secrets (verification, reset and email-change links, sign-in codes)
/// of a queued `mail.send` job's payload, for showing the job (`/api/jobs`): the rendered
/// text and HTML of those templates are replaced by a note. Other emails show in full.
pub fn redact_job_payload(payload: &mut Value) {
    let Some(map) = payload.as_object_mut() else {
        return;
    };
    let secret = map.get("template").and_then(Value::as_str).and_then(Template::parse).is_some_and(|t| {
        matches!(t, Template::Verification | Template::PasswordReset | Template::EmailChange | Template::Otp)
    });
    if !secret {
        return;
    }
    for key in ["text", "html"] {
        if map.get(key).is_some_and(|v| !v.is_null()) {
            map.insert(key.into(), Value::String("[redacted: holds a one-time secret]".into()));
        }
    }
}

impl Template {
    pub const ALL: [Template; 6] = [
        Template::Verification,
        Template::PasswordReset,
        Template::EmailChange,
        Template::Otp,
        Template::ExportReady,
        Template::Alert,
    ];

    /// The name used in settings, the API and the log (`password-reset`).
    pub fn name(self) -> &'static str {
        match self {
            Template::Verification => "verification",
            Template::PasswordReset => "password-reset",
            Template::EmailChange => "email-change",
            Template::Otp => "otp",
            Template::ExportReady => "export-ready",
            Template::Alert => "alert",
        }
    }

    /// Parses a name; PocketBase's `login-alert` means [`Template::Alert`].
    pub fn parse(name: &str) -> Option<Template> {
        if name == "login-alert" {
            return Some(Template::Alert);
        }
        Template::ALL.into_iter().find(|t| t.name() == name)
    }

    pub fn names() -> Vec<&'static str> {
        Template::ALL.iter().map(|t| t.name()).collect()
    }
}

/// What an email says.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// A template rendered with `vars` (plus `appName` and `appURL` from the settings).
    /// Variables: `appName`, `appURL`, `token`, `otp`, `actionURL`, `record` (an object:
    /// `{{record.email}}`), and for alerts `title` and `message`.
    Template { template: Template, vars: Map<String, Value> },
    /// A finished message; nothing is substituted.
    Raw { subject: String, html: Option<String>, text: String },
}

/// One email to send.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingMail {
    /// The recipient's address (validated on enqueue).
    pub to: String,
    pub to_name: Option<String>,
    /// The recipient's locale (`pt-BR`): picks the template variant.
    pub locale: Option<String>,
    pub content: Content,
}

impl OutgoingMail {
    /// A templated email.
    pub fn template(to: impl Into<String>, template: Template, vars: Map<String, Value>) -> OutgoingMail {
        OutgoingMail {
            to: to.into(),
            to_name: None,
            locale: None,
            content: Content::Template { template, vars },
        }
    }

    /// Reads the body of `POST /api/mail/send`: `to`, `toName`, `locale`, and either
    /// `template` + `vars` or `subject` + `text` (+ `html`). Every problem is reported at
    /// once, summarized by the first.
    pub fn from_json(body: &Map<String, Value>) -> Result<OutgoingMail, MailError> {
        let input: SendInput = parse_object(Value::Object(body.clone()), Summary::FirstProblem)?;
        let mut c = Collector::new();
        let to = string(&mut c, "to", input.to);
        if to.is_none() {
            c.add("to", "validation_required", "Cannot be blank.");
        }
        let content = match input.template {
            Some(Typed::Ok(name)) => {
                let raw = [("subject", &input.subject), ("text", &input.text), ("html", &input.html)];
                for (field, value) in raw {
                    if value.is_some() {
                        c.add(
                            field,
                            "validation_conflict",
                            "Give either a template (with vars) or subject and text, not both.",
                        );
                    }
                }
                let template = Template::parse(&name);
                if template.is_none() {
                    c.add("template", "validation_unknown_template", unknown_template());
                }
                let vars = c.typed("vars", input.vars, "validation_invalid_type", "Must be an object.");
                template.map(|template| Content::Template { template, vars: vars.unwrap_or_default() })
            }
            Some(Typed::Wrong(_)) => {
                c.add("template", "validation_invalid_type", "Must be a string.");
                None
            }
            None => {
                if input.vars.is_some() {
                    c.add("vars", "validation_conflict", "vars needs a template.");
                }
                let subject = string(&mut c, "subject", input.subject).unwrap_or_default();
                let text = string(&mut c, "text", input.text).unwrap_or_default();
                if subject.trim().is_empty() {
                    c.add("subject", "validation_required", "Cannot be blank.");
                }
                if text.trim().is_empty() {
                    c.add("text", "validation_required", "Cannot be blank.");
                }
                let html = string(&mut c, "html", input.html);
                Some(Content::Raw { subject, html, text })
            }
        };
        let to_name = string(&mut c, "toName", input.to_name);
        let locale = string(&mut c, "locale", input.locale);
        c.finish(Summary::FirstProblem)?;
        match (to, content) {
            (Some(to), Some(content)) => Ok(OutgoingMail { to, to_name, locale, content }),
            _ => Err(MailError::Internal("a mail body passed validation without its content".into())),
        }
    }
}

/// The body of `POST /api/mail/send`; members sent as `null` count as absent.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SendInput {
    #[serde(default)]
    to: Option<Typed<String>>,
    #[serde(default)]
    to_name: Option<Typed<String>>,
    #[serde(default)]
    locale: Option<Typed<String>>,
    #[serde(default)]
    template: Option<Typed<String>>,
    #[serde(default)]
    vars: Option<Typed<Map<String, Value>>>,
    #[serde(default)]
    subject: Option<Typed<String>>,
    #[serde(default)]
    text: Option<Typed<String>>,
    #[serde(default)]
    html: Option<Typed<String>>,
}

/// The body of a test email (`POST /api/settings/test/email` and the admin socket):
/// PocketBase's `{email, template?}`, whose optional `collection` is accepted and ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestEmailInput {
    #[serde(default)]
    email: Option<Typed<String>>,
    #[serde(default)]
    template: Option<Typed<String>>,
    #[serde(default, rename = "collection")]
    _collection: Option<serde::de::IgnoredAny>,
}

/// Reads a test-email body into the recipient and the template name, if given (see
/// [`Mail::send_test`]). Every problem is reported at once, summarized by the first.
pub fn test_email_input(body: &Map<String, Value>) -> Result<(String, Option<String>), MailError> {
    let input: TestEmailInput = parse_object(Value::Object(body.clone()), Summary::FirstProblem)?;
    let mut c = Collector::new();
    let email = string(&mut c, "email", input.email);
    if email.is_none() {
        c.add("email", "validation_required", "Cannot be blank.");
    }
    let template = string(&mut c, "template", input.template);
    c.finish(Summary::FirstProblem)?;
    Ok((email.unwrap_or_default(), template))
}

/// An optional string member, or a type problem noted for `field`.
fn string(c: &mut Collector, field: &str, value: Option<Typed<String>>) -> Option<String> {
    c.typed(field, value, "validation_invalid_type", "Must be a string.")
}

fn unknown_template() -> String {
    format!("Unknown template; use one of {}.", Template::names().join(", "))
}

/// An email's id: the id of its `mail.send` job (and of its delivery log row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MailId(pub u64);

/// What can go wrong in the mail domain.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The input is invalid (including CR/LF in a header value); the failure says where
    /// (summarized by its first problem).
    #[error("{0}")]
    Validation(Invalid),
    /// A malformed request parameter.
    #[error("{0}")]
    BadRequest(String),
    /// SMTP delivery is switched off, and the action needs it (a test email).
    #[error("{0}")]
    Disabled(String),
    /// Enqueueing the job failed.
    #[error(transparent)]
    Jobs(JobsError),
    /// Storage failed.
    #[error(transparent)]
    Store(StoreError),
    /// Encoding or invariant failure; details for the log only.
    #[error("{0}")]
    Internal(String),
}

impl From<Invalid> for MailError {
    fn from(invalid: Invalid) -> MailError {
        MailError::Validation(invalid)
    }
}

impl From<StoreError> for MailError {
    fn from(err: StoreError) -> MailError {
        MailError::Store(err)
    }
}

/// The job payload: the finished email.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rendered {
    from: String,
    #[serde(default)]
    from_name: String,
    to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    to_name: Option<String>,
    subject: String,
    text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    html: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    locale: Option<String>,
}

impl Rendered {
    /// The MIME message: multipart/alternative when there is HTML, else text/plain.
    fn to_mime(&self) -> Result<Vec<u8>, String> {
        use mail_send::mail_builder::MessageBuilder;
        let from = if self.from_name.is_empty() {
            mail_send::mail_builder::headers::address::Address::from(self.from.as_str())
        } else {
            (self.from_name.as_str(), self.from.as_str()).into()
        };
        let to = match &self.to_name {
            Some(name) if !name.is_empty() => (name.as_str(), self.to.as_str()).into(),
            _ => mail_send::mail_builder::headers::address::Address::from(self.to.as_str()),
        };
        let mut builder = MessageBuilder::new()
            .from(from)
            .to(to)
            .subject(self.subject.as_str())
            .text_body(self.text.as_str());
        if let Some(html) = &self.html {
            builder = builder.html_body(html.as_str());
        }
        builder.write_to_vec().map_err(|e| e.to_string())
    }
}

/// State shared by [`Mail`] and the job handler.
struct Core {
    store: Store,
    defaults: crate::config::MailSection,
    public_url: String,
    settings: RwLock<Arc<Settings>>,
    transport: Transport,
    counters: MailCounters,
}

/// Delivery attempts since start (for `/metrics`).
#[derive(Debug, Default)]
pub struct MailCounters {
    /// Messages the SMTP server accepted.
    pub sent: crate::util::metrics::Counter,
    /// Attempts that failed (retried or final).
    pub failed: crate::util::metrics::Counter,
    /// Messages given up on (5xx reply or attempts exhausted).
    pub dead: crate::util::metrics::Counter,
}

impl MailCounters {
    /// `backbone_mail_*`: deliveries accepted, failed and given up on.
    pub fn render_metrics(&self, out: &mut crate::util::metrics::Exposition) {
        for (name, help, counter) in [
            ("backbone_mail_sent_total", "Emails the SMTP server accepted.", &self.sent),
            ("backbone_mail_failed_total", "Email delivery attempts that failed.", &self.failed),
            (
                "backbone_mail_dead_total",
                "Emails given up on (permanent failure or attempts exhausted).",
                &self.dead,
            ),
        ] {
            out.single(name, "counter", help, counter.get() as f64);
        }
    }
}

impl Core {
    fn settings(&self) -> Arc<Settings> {
        match self.settings.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn replace_settings(&self, settings: Settings) {
        match self.settings.write() {
            Ok(mut guard) => *guard = Arc::new(settings),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(settings),
        }
        self.transport.settings_changed();
    }
}

/// The mail service before the job queue exists (the queue needs the registered handler,
/// and [`Mail`] needs the queue): see [`Mail::prepare`] and [`Mail::new`].
pub struct PreparedMail(Arc<Core>);

/// The mail service. Cheap to clone.
#[derive(Clone)]
pub struct Mail {
    core: Arc<Core>,
    jobs: Jobs,
}

impl Mail {
    /// Loads the settings and registers the `mail.send` job kind in `registry`.
    pub async fn prepare(
        store: Store,
        config: &Config,
        registry: &mut Registry,
    ) -> Result<PreparedMail, MailError> {
        crate::util::tls::install_crypto_provider();
        let defaults = config.mail.clone();
        parse_address("mail.sender_address", &defaults.sender_address)?;
        let public_url = config.public_url(None);
        let overrides =
            store.read(|tx| Ok::<_, MailError>(tx.get(Table::Settings, settings::SETTINGS_KEY)?)).await?;
        let overrides = Settings::read_overrides(overrides.as_deref())?;
        let settings = Settings::effective(&defaults, &public_url, &overrides)?;
        let core = Arc::new(Core {
            store,
            defaults,
            public_url,
            settings: RwLock::new(Arc::new(settings)),
            transport: Transport::default(),
            counters: MailCounters::default(),
        });
        let handler_core = core.clone();
        registry.register(
            JOB_KIND,
            KindOptions {
                queue: Some(QUEUE.into()),
                max_attempts: Some(config.mail.max_attempts.max(1)),
                ..KindOptions::default()
            },
            move |ctx| deliver(handler_core.clone(), ctx),
        );
        Ok(PreparedMail(core))
    }

    pub fn new(prepared: PreparedMail, jobs: Jobs) -> Mail {
        Mail { core: prepared.0, jobs }
    }

    /// Delivery counters since start.
    pub fn counters(&self) -> &MailCounters {
        &self.core.counters
    }

    /// The effective settings (config defaults with the stored overrides).
    pub fn settings(&self) -> Arc<Settings> {
        self.core.settings()
    }

    /// Applies a `PATCH /api/settings` body in one durable write; returns the new settings
    /// and what changed. Queued email keeps its rendered text; delivery uses the new
    /// transport settings from the next attempt on.
    pub async fn update_settings(
        &self,
        patch: Map<String, Value>,
        audit: Option<crate::audit::Event>,
    ) -> Result<(Settings, SettingsChange), MailError> {
        let core = self.core.clone();
        self.core
            .store
            .write(move |tx: &mut WriteTx<'_>| {
                let (settings, change) = Settings::update(tx, &core.defaults, &core.public_url, &patch)?;
                if let Some(event) = audit {
                    // The entry names what changed (secrets by name only), in the same commit.
                    let event = event.detail(serde_json::json!({"changed": change.changed}));
                    crate::audit::append(tx, event)?;
                }
                let hook_core = core.clone();
                let fresh = settings.clone();
                tx.after_commit(move || hook_core.replace_settings(fresh));
                Ok((settings, change))
            })
            .await
    }

    /// Renders and validates `mail` into a job and its log row (no storage access).
    fn render(&self, mail: OutgoingMail) -> Result<(JobSpec, LogRow), MailError> {
        let to = parse_address("to", &mail.to)?;
        let to_name = match mail.to_name.as_deref() {
            Some(name) => Some(parse_header_text("toName", name)?).filter(|n| !n.is_empty()),
            None => None,
        };
        let locale = match mail.locale.as_deref().map(str::trim).filter(|l| !l.is_empty()) {
            Some(l) if l != "default" && template::valid_locale(l) => Some(l.to_string()),
            Some(_) => {
                return Err(Invalid::of(
                    "locale",
                    "validation_invalid_locale",
                    "Use a language tag such as en or pt-BR.",
                )
                .into())
            }
            None => None,
        };
        let settings = self.core.settings();
        let from = parse_address("meta.senderAddress", &settings.meta.sender_address)?;
        let (subject, text, html, template_name) = match mail.content {
            Content::Template { template, mut vars } => {
                let variant = template::choose(template, locale.as_deref(), &settings.templates);
                vars.entry("appName").or_insert_with(|| json!(settings.meta.app_name));
                vars.entry("appURL").or_insert_with(|| json!(settings.meta.app_url));
                if !vars.contains_key("actionURL") {
                    if let Some(token) = vars.get("token").and_then(Value::as_str) {
                        if let Some(url) =
                            template::default_action_url(template, &settings.meta.app_url, token)
                        {
                            vars.insert("actionURL".into(), json!(url));
                        }
                    }
                }
                let subject = template::render(&variant.subject, &vars, false);
                let text = template::render(&variant.text, &vars, false);
                let html = variant.html.as_deref().map(|h| template::render(h, &vars, true));
                (subject, text, html, Some(template.name().to_string()))
            }
            Content::Raw { subject, html, text } => (subject, text, html, None),
        };
        let subject = parse_header_text("subject", &subject)?;
        if subject.is_empty() {
            return Err(Invalid::of("subject", "validation_required", "Cannot be blank.").into());
        }
        let rendered = Rendered {
            from,
            from_name: parse_header_text("meta.senderName", &settings.meta.sender_name)?,
            to: to.clone(),
            to_name: to_name.clone(),
            subject: subject.clone(),
            text,
            html,
            template: template_name.clone(),
            locale: locale.clone(),
        };
        let payload = serde_json::to_value(&rendered).map_err(|e| MailError::Internal(e.to_string()))?;
        // Connect (TCP, TLS, EHLO, AUTH) plus MAIL, RCPT, DATA and the body, each bounded.
        let timeout_ms = settings.smtp.timeout_secs.saturating_mul(5_000).saturating_add(5_000);
        let spec = JobSpec::new(JOB_KIND, payload).queue(QUEUE).timeout_ms(timeout_ms);
        let now = self.jobs.now_ms();
        let row = LogRow {
            to,
            to_name,
            subject,
            template: template_name,
            locale,
            state: DeliveryState::Queued,
            attempts: 0,
            last_reply: None,
            created: now,
            updated: now,
            sent_at: None,
        };
        Ok((spec, row))
    }

    fn insert(&self, tx: &mut WriteTx<'_>, spec: JobSpec, row: &LogRow) -> Result<MailId, MailError> {
        let enqueued = self.jobs.enqueue_in(tx, spec).map_err(MailError::Jobs)?;
        log::insert(tx, enqueued.job.id, row)?;
        Ok(MailId(enqueued.job.id))
    }

    /// Queues `mail` inside the caller's write transaction: the email exists (and will be
    /// sent) if and only if that transaction commits.
    pub fn enqueue_in(&self, tx: &mut WriteTx<'_>, mail: OutgoingMail) -> Result<MailId, MailError> {
        let (spec, row) = self.render(mail)?;
        self.insert(tx, spec, &row)
    }

    /// Queues `mail` on its own; returns once it is durably stored.
    pub async fn enqueue(&self, mail: OutgoingMail) -> Result<MailId, MailError> {
        let (spec, row) = self.render(mail)?;
        let this = self.clone();
        self.core.store.write(move |tx: &mut WriteTx<'_>| this.insert(tx, spec, &row)).await
    }

    /// Queues a test email of `template` (default `verification`) to `to`, with sample
    /// variables. Refused while SMTP is disabled, since it could not be delivered.
    pub async fn send_test(&self, to: &str, template: Option<&str>) -> Result<MailId, MailError> {
        let settings = self.core.settings();
        if !settings.smtp.enabled {
            return Err(MailError::Disabled(
                "SMTP delivery is disabled; enable it with PATCH /api/settings {\"smtp\":{\"enabled\":true,...}} or [mail] enabled = true.".into(),
            ));
        }
        let name = template.map(str::trim).filter(|t| !t.is_empty()).unwrap_or("verification");
        let template = Template::parse(name)
            .ok_or_else(|| Invalid::of("template", "validation_unknown_template", unknown_template()))?;
        let vars = json!({
            "token": "TEST-TOKEN",
            "otp": "123456",
            "record": {"email": to, "newEmail": to},
            "title": "Test alert",
            "message": "This is a test email: SMTP delivery works.",
        });
        let vars = vars.as_object().cloned().unwrap_or_default();
        self.enqueue(OutgoingMail::template(to, template, vars)).await
    }

    /// One page of the delivery log, newest first. `state` and `to` filter; paging as
    /// elsewhere (`page` from 1, `perPage` up to 500).
    pub async fn log(
        &self,
        state: Option<&str>,
        to: Option<&str>,
        page: Option<&str>,
        per_page: Option<&str>,
    ) -> Result<(usize, usize, usize, Vec<Value>), MailError> {
        let (page, per_page) =
            crate::jobs::paging(page, per_page).map_err(|e| MailError::BadRequest(e.to_string()))?;
        let per_page = per_page.min(log::MAX_PER_PAGE);
        let state = match state.map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(name) => Some(DeliveryState::parse(name).ok_or_else(|| {
                MailError::BadRequest(format!(
                    "Unknown state {name:?}; use one of queued, sending, sent, retrying, dead, cancelled."
                ))
            })?),
        };
        let filter = LogFilter {
            state,
            to: to.map(str::trim).filter(|t| !t.is_empty()).map(str::to_string),
            page,
            per_page,
        };
        let (total, items) = self.core.store.read(move |tx| log::list(tx, &filter)).await?;
        Ok((page, per_page, total, items))
    }

    /// The delivery log row of one email.
    pub async fn log_entry(&self, id: MailId) -> Result<Option<Value>, MailError> {
        self.core.store.read(move |tx| log::get(tx, id.0)).await
    }
}

/// The `mail.send` handler: one delivery attempt, its outcome written to the log in the
/// transaction that records it on the job.
async fn deliver(core: Arc<Core>, ctx: JobContext) -> Result<Done, JobFailure> {
    let (id, attempt) = (ctx.id, ctx.attempt);
    let last_attempt = attempt >= ctx.max_attempts;
    let jobs = ctx.jobs().clone();
    let outcome = match serde_json::from_value::<Rendered>(ctx.payload.clone()) {
        Err(err) => Err(SendFailure { permanent: true, reply: format!("malformed mail job payload: {err}") }),
        Ok(rendered) => {
            let settings = core.settings();
            if !settings.smtp.enabled {
                Err(SendFailure {
                    permanent: false,
                    reply: "SMTP delivery is disabled in the settings; the email waits".into(),
                })
            } else {
                match rendered.to_mime() {
                    Err(err) => Err(SendFailure {
                        permanent: true,
                        reply: format!("cannot build the message: {err}"),
                    }),
                    Ok(body) => {
                        let envelope = Envelope { from: &rendered.from, to: &rendered.to, body };
                        tokio::select! {
                            result = core.transport.send(&settings.smtp, &envelope) => result,
                            () = ctx.cancelled().cancelled() => Err(SendFailure { permanent: false, reply: "stopped before the server answered".into() }),
                        }
                    }
                }
            }
        }
    };
    let now = jobs.now_ms();
    let cutoff = now
        .saturating_sub(i64::try_from(core.defaults.keep_log_secs.saturating_mul(1000)).unwrap_or(i64::MAX));
    match &outcome {
        Ok(_) => core.counters.sent.inc(),
        Err(failure) => {
            core.counters.failed.inc();
            if failure.permanent || last_attempt {
                core.counters.dead.inc();
            }
        }
    }
    match outcome {
        Ok(reply) => Done::complete_with(move |tx| {
            log::record(tx, id, DeliveryState::Sent, attempt, Some(reply), now).map_err(effect_error)?;
            log::prune(tx, cutoff, id, 8).map_err(effect_error)?;
            Ok(())
        }),
        Err(failure) => {
            let state =
                if failure.permanent || last_attempt { DeliveryState::Dead } else { DeliveryState::Retrying };
            // The server log says it too: an operator should not need /api/mail/log to learn
            // that email does not go out.
            tracing::warn!(
                job = id,
                attempt,
                max_attempts = ctx.max_attempts,
                gives_up = failure.permanent || last_attempt,
                reply = %failure.reply,
                "email delivery failed"
            );
            let job_failure = if failure.permanent {
                JobFailure::discard(failure.reply.clone())
            } else {
                JobFailure::retry(failure.reply.clone())
            };
            let reply = failure.reply;
            Done::fail_with(job_failure, move |tx| {
                log::record(tx, id, state, attempt, Some(reply), now).map_err(effect_error)
            })
        }
    }
}

fn effect_error(err: MailError) -> JobsError {
    match err {
        MailError::Store(e) => JobsError::Store(e),
        other => JobsError::Internal(other.to_string()),
    }
}

//! Alerts: rules over the stored history series ("`jobs_dead` > 0 for 60 s"), evaluated
//! after every history sample (and by the `alerts.check` job kind, which an operator may
//! also schedule through `/api/crons`); firing and resolving notifications by email through
//! the outbox and by signed webhook (`webhooks.deliver` jobs); a per-rule cooldown between
//! firing notifications; and a history of every transition.
//!
//! A rule's webhook secret lives in the webhooks module's `webhook_secrets` table under
//! `alert/<rule id>` (deliveries name that, not the secret); the rule keeps only a hint of
//! its last characters. A generated secret is shown once, in the answer that created it.
//!
//! Why not a built-in cron schedule: a schedule every few seconds would put thousands of
//! completed `alerts.check` jobs a day into the job list. The sampler already wakes on a
//! fixed interval, and evaluating right after it stores a sample never reads stale values.
//!
//! A rule is `ok`, `pending` (the condition holds, not yet for `forSecs`) or `firing`.
//! Firing notifications go out at most once per `cooldownSecs`; a resolve notification goes
//! out only for a firing that was notified, so recipients always see pairs. Rules and their state live
//! in one row each (the state changes only inside the evaluator's write).

use std::sync::{Arc, OnceLock, Weak};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::history::{History, SERIES};
use super::ObserveError;
use crate::jobs::{Done, JobContext, JobFailure, KindOptions, Registry};
use crate::mail::{Mail, OutgoingMail};
use crate::store::{ScanControl, Store, StoreError, Table, WriteTx};
use crate::util::invalid::{parse_object, present, Collector, Invalid, Typed};
use crate::webhooks::{Delivery, TargetError, TargetPolicy, Webhooks};

/// The job kind that evaluates every rule.
pub const JOB_KIND: &str = "alerts.check";
/// History rows kept at most (oldest pruned as new ones are added).
const KEEP_HISTORY: usize = 5_000;
/// Most rules.
const MAX_RULES: usize = 200;
/// Most webhook URLs per rule.
const MAX_WEBHOOKS: usize = 5;
/// Most email recipients per rule.
const MAX_EMAILS: usize = 20;
/// Longest `forSecs` and `cooldownSecs` (a year).
const MAX_SECS: u64 = 31_536_000;
/// How long saving a rule waits for DNS when it checks a webhook target.
const RESOLVE_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);
/// The message of every invalid rule body.
const INVALID_RULE: &str = "Invalid alert rule.";

/// How a rule compares the series with its threshold (stored and sent as `>`, `>=`, `<`,
/// `<=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = ">")]
    Above,
    #[serde(rename = ">=")]
    AtLeast,
    #[serde(rename = "<")]
    Below,
    #[serde(rename = "<=")]
    AtMost,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Above => ">",
            Op::AtLeast => ">=",
            Op::Below => "<",
            Op::AtMost => "<=",
        }
    }

    fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Above => value > threshold,
            Op::AtLeast => value >= threshold,
            Op::Below => value < threshold,
            Op::AtMost => value <= threshold,
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a rule is: the condition does not hold (`ok`), holds but not yet for `forSecs`
/// (`pending`), or held long enough (`firing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Ok,
    Pending,
    Firing,
}

/// One stored rule with its evaluation state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub id: String,
    pub name: String,
    /// A history series (`observe::history::SERIES`).
    pub series: String,
    pub op: Op,
    pub threshold: f64,
    /// Seconds the condition must hold before the rule fires (0: at once).
    pub for_secs: u64,
    /// Seconds between two firing notifications of this rule at least.
    pub cooldown_secs: u64,
    pub enabled: bool,
    /// Recipients of notification emails.
    pub emails: Vec<String>,
    /// Receivers of signed webhook notifications (no emails and no webhooks: history only).
    #[serde(default)]
    pub webhooks: Vec<String>,
    /// The last characters of the webhook signing secret, once there is one.
    #[serde(default)]
    pub webhook_secret_hint: Option<String>,
    pub state: State,
    /// When the condition started holding (ms), while pending or firing.
    #[serde(default)]
    pub since: Option<i64>,
    /// When the last firing notification went out (ms).
    #[serde(default)]
    pub last_notified: Option<i64>,
    /// Whether the current firing was notified (so its resolve is notified too).
    #[serde(default)]
    pub notified: bool,
    /// When the current firing began (ms), while firing.
    #[serde(default)]
    pub firing_since: Option<i64>,
    /// The last value seen.
    #[serde(default)]
    pub value: Option<f64>,
}

impl Rule {
    /// A new rule with the defaults a create body may override.
    fn new() -> Rule {
        Rule {
            id: crate::util::id::random_string(15),
            name: String::new(),
            series: String::new(),
            op: Op::Above,
            threshold: 0.0,
            for_secs: 60,
            cooldown_secs: 3600,
            enabled: true,
            emails: Vec::new(),
            webhooks: Vec::new(),
            webhook_secret_hint: None,
            state: State::Ok,
            since: None,
            last_notified: None,
            notified: false,
            firing_since: None,
            value: None,
        }
    }

    fn holds(&self, value: f64) -> bool {
        self.op.holds(value, self.threshold)
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Whether a firing or resolve would notify anyone.
    fn has_receivers(&self) -> bool {
        !self.emails.is_empty() || !self.webhooks.is_empty()
    }
}

/// A rule as saved, with the webhook secret the server generated for it in this save (the
/// only time it is shown).
#[derive(Debug, Clone)]
pub struct Saved {
    pub rule: Rule,
    pub generated_secret: Option<String>,
}

impl Saved {
    pub fn to_json(&self) -> Value {
        let mut json = self.rule.to_json();
        if let (Some(secret), Some(object)) = (&self.generated_secret, json.as_object_mut()) {
            object.insert("webhookSecret".into(), json!(secret));
        }
        json
    }
}

/// The owner name of a rule's secret in `webhook_secrets`.
pub fn secret_owner(rule_id: &str) -> String {
    format!("alert/{rule_id}")
}

/// A default rule: name, series, op, threshold, `forSecs`.
type DefaultRule = (&'static str, &'static str, Op, f64, u64);

/// The rules a fresh server starts with (no recipients: add them with PATCH).
fn defaults() -> Vec<DefaultRule> {
    vec![
        ("High error rate", "http_error_ratio", Op::Above, 0.05, 300),
        ("Slow responses (p99 over 1 s)", "http_p99_ms", Op::Above, 1000.0, 300),
        ("Dead jobs", "jobs_dead", Op::Above, 0.0, 0),
        ("Job backlog older than 5 minutes", "jobs_oldest_waiting_secs", Op::Above, 300.0, 300),
        ("Disk almost full (under 1 GiB free)", "disk_free_bytes", Op::Below, 1_073_741_824.0, 300),
        (
            "Host memory low (under 200 MiB available)",
            "host_memory_available_bytes",
            Op::Below,
            209_715_200.0,
            300,
        ),
        SEARCH_LAG_RULE,
    ]
}

/// The search index falls behind the data: more than 1000 changes not searchable for 2 minutes.
const SEARCH_LAG_RULE: DefaultRule =
    ("Search index lagging (over 1000 changes for 2 minutes)", "search_lag", Op::Above, 1000.0, 120);

/// `Meta` flag: the search lag rule was seeded (data files seeded before it existed get it once).
const SEARCH_RULE_SEEDED: &[u8] = b"alerts_seeded_search";

/// A create or update body (`POST /api/alerts`, `PATCH /api/alerts/{id}`): every field may
/// be left out of an update; [`apply_input`] says what a create is missing.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleInput {
    #[serde(default, deserialize_with = "present")]
    pub name: Option<Typed<String>>,
    #[serde(default, deserialize_with = "present")]
    pub series: Option<Typed<String>>,
    #[serde(default, deserialize_with = "present")]
    pub op: Option<Typed<Op>>,
    #[serde(default, deserialize_with = "present")]
    pub threshold: Option<Typed<f64>>,
    #[serde(default, deserialize_with = "present")]
    pub for_secs: Option<Typed<u64>>,
    #[serde(default, deserialize_with = "present")]
    pub cooldown_secs: Option<Typed<u64>>,
    #[serde(default, deserialize_with = "present")]
    pub enabled: Option<Typed<bool>>,
    #[serde(default, deserialize_with = "present")]
    pub emails: Option<Typed<Vec<Typed<String>>>>,
    #[serde(default, deserialize_with = "present")]
    pub webhooks: Option<Typed<Vec<Typed<String>>>>,
    /// Write-only: the signing secret to use instead of a generated one.
    #[serde(default, deserialize_with = "present")]
    pub webhook_secret: Option<Typed<String>>,
}

impl RuleInput {
    /// Parses a rule body; an unknown field is refused by name.
    pub fn parse(body: Value) -> Result<RuleInput, ObserveError> {
        parse_object(body, INVALID_RULE).map_err(ObserveError::Invalid)
    }

    /// The webhook URLs the body names (strings only; the rest is [`apply_input`]'s to
    /// report).
    fn webhook_urls(&self) -> Vec<String> {
        match &self.webhooks {
            Some(Typed::Ok(list)) => list
                .iter()
                .filter_map(|item| match item {
                    Typed::Ok(url) => Some(url.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Checks `urls` against `targets` without DNS; the distinct URLs, or the first item's
/// problem.
fn parse_webhooks(list: &[Typed<String>], targets: &TargetPolicy) -> Result<Vec<String>, (String, String)> {
    let mut urls: Vec<String> = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let parsed = match item {
            Typed::Ok(raw) => targets.parse_url(raw),
            _ => Err(TargetError::Invalid("Must be a string.".into())),
        };
        match parsed {
            Ok(url) => {
                if !urls.contains(&url.to_string()) {
                    urls.push(url.to_string());
                }
            }
            Err(err) => {
                let code = match err {
                    TargetError::Invalid(_) => "validation_invalid_url",
                    TargetError::Forbidden { .. } => "validation_private_target",
                };
                return Err((code.to_string(), format!("Item {i}: {err}")));
            }
        }
    }
    Ok(urls)
}

/// Applies a create (`base` None) or update body to a rule; every problem is a field error.
/// Webhook URLs are checked against `targets` without DNS (see [`check_webhook_targets`]).
/// Returns the rule and the webhook secret the body sets, if it sets one.
pub fn apply_input(
    input: RuleInput,
    base: Option<Rule>,
    targets: &TargetPolicy,
) -> Result<(Rule, Option<String>), ObserveError> {
    let mut fields = Collector::new();
    let creating = base.is_none();
    let mut rule = base.unwrap_or_else(Rule::new);
    const NAME: &str = "A name of 1-200 characters.";
    const SERIES_HINT: &str = "A series from GET /api/metrics.";
    const NUMBER: &str = "A number.";
    const SECONDS: &str = "Whole seconds, 0 to 31536000.";
    match input.name {
        None => {}
        Some(Typed::Ok(s)) if !s.trim().is_empty() && s.trim().chars().count() <= 200 => {
            rule.name = s.trim().to_string();
        }
        _ => fields.add("name", "validation_required", NAME),
    }
    match input.series {
        None => {}
        Some(Typed::Ok(s)) if SERIES.iter().any(|(n, _)| *n == s) => rule.series = s,
        _ => fields.add("series", "validation_unknown_series", SERIES_HINT),
    }
    match input.op {
        None => {}
        Some(Typed::Ok(op)) => rule.op = op,
        Some(Typed::Wrong(_)) => fields.add("op", "validation_invalid_value", "One of >, >=, <, <=."),
    }
    let threshold_given = input.threshold.is_some();
    match input.threshold {
        None => {}
        Some(Typed::Ok(f)) if f.is_finite() => rule.threshold = f,
        _ => fields.add("threshold", "validation_invalid_number", NUMBER),
    }
    match input.for_secs {
        None => {}
        Some(Typed::Ok(n)) if n <= MAX_SECS => rule.for_secs = n,
        _ => fields.add("forSecs", "validation_invalid_number", SECONDS),
    }
    match input.cooldown_secs {
        None => {}
        Some(Typed::Ok(n)) if n <= MAX_SECS => rule.cooldown_secs = n,
        _ => fields.add("cooldownSecs", "validation_invalid_number", SECONDS),
    }
    match input.enabled {
        None => {}
        Some(Typed::Ok(b)) => rule.enabled = b,
        Some(Typed::Wrong(_)) => fields.add("enabled", "validation_invalid_type", "true or false."),
    }
    match input.emails {
        None => {}
        Some(Typed::Ok(list)) if list.len() <= MAX_EMAILS => {
            let parsed: Option<Vec<String>> = list
                .iter()
                .map(|item| match item {
                    Typed::Ok(s) => crate::mail::address::parse_address("emails", s).ok(),
                    _ => None,
                })
                .collect();
            match parsed {
                Some(list) => rule.emails = list,
                None => fields.add("emails", "validation_invalid_email", "Up to 20 email addresses."),
            }
        }
        _ => fields.add("emails", "validation_invalid_email", "Up to 20 email addresses."),
    }
    match input.webhooks {
        None => {}
        Some(Typed::Ok(list)) if list.len() <= MAX_WEBHOOKS => match parse_webhooks(&list, targets) {
            Ok(urls) => rule.webhooks = urls,
            Err((code, message)) => fields.add("webhooks", &code, message),
        },
        _ => fields.add("webhooks", "validation_invalid_value", "A list of up to 5 http(s) URLs."),
    }
    let mut secret = None;
    match input.webhook_secret {
        None => {}
        Some(Typed::Ok(raw)) => match crate::webhooks::parse_secret(&raw) {
            Ok(s) => secret = Some(s),
            Err(message) => fields.add("webhookSecret", "validation_invalid_secret", message),
        },
        Some(Typed::Wrong(_)) => fields.add(
            "webhookSecret",
            "validation_invalid_secret",
            "16 to 256 visible ASCII characters (no spaces).",
        ),
    }
    if creating {
        // The first problem of a field is kept: a wrong value says more than "required".
        if rule.name.is_empty() {
            fields.add("name", "validation_required", NAME);
        }
        if rule.series.is_empty() {
            fields.add("series", "validation_required", SERIES_HINT);
        }
        if !threshold_given {
            fields.add("threshold", "validation_required", NUMBER);
        }
    }
    fields.finish(INVALID_RULE).map_err(ObserveError::Invalid)?;
    if !creating {
        // A changed condition starts over.
        rule.state = State::Ok;
        rule.since = None;
        rule.notified = false;
        rule.firing_since = None;
    }
    Ok((rule, secret))
}

/// Resolves the names among `urls` and refuses those that lead to addresses `targets`
/// does not allow (a literal address was already checked by [`apply_input`]). Deliveries
/// check again as they connect; this is so a mistake is a 400 now rather than a dead
/// delivery later.
async fn check_webhook_targets(targets: &TargetPolicy, urls: &[String]) -> Result<(), ObserveError> {
    if targets.allows_everything() {
        return Ok(());
    }
    for (i, raw) in urls.iter().enumerate() {
        let Ok(url) = targets.parse_url(raw) else { continue };
        if let Err(err) = targets.check_resolved(&url, RESOLVE_WITHIN).await {
            return Err(ObserveError::Invalid(Invalid::field(
                INVALID_RULE,
                "webhooks",
                "validation_private_target",
                format!("Item {i}: {err}"),
            )));
        }
    }
    Ok(())
}

fn decode(bytes: &[u8]) -> Option<Rule> {
    serde_json::from_slice(bytes).ok()
}

fn encode(rule: &Rule) -> Vec<u8> {
    serde_json::to_vec(rule).unwrap_or_default()
}

fn not_found() -> ObserveError {
    ObserveError::NotFound("The requested alert rule wasn't found.".into())
}

/// Builds the server's public URL (for links in notification emails).
pub type PublicUrl = Arc<dyn Fn() -> String + Send + Sync>;

/// The alert rules and their evaluation: what they read (the stored history), where they
/// live (the store), and where notifications go (the mail and webhook outboxes).
#[derive(Clone)]
pub struct Alerts {
    store: Store,
    history: History,
    mail: Mail,
    webhooks: Webhooks,
    public_url: PublicUrl,
}

impl Alerts {
    pub fn new(history: History, mail: Mail, webhooks: Webhooks, public_url: PublicUrl) -> Alerts {
        Alerts { store: history.store().clone(), history, mail, webhooks, public_url }
    }

    /// Every rule, ordered by id.
    pub async fn list(&self) -> Result<Vec<Rule>, ObserveError> {
        Ok(self
            .store
            .read(|tx| {
                let mut out = Vec::new();
                tx.scan_prefix(Table::AlertRules, b"", false, None, |_, v| {
                    out.extend(decode(v));
                    ScanControl::Continue
                })?;
                Ok::<_, StoreError>(out)
            })
            .await?)
    }

    pub async fn get(&self, id: &str) -> Result<Rule, ObserveError> {
        let id = id.to_string();
        self.store
            .read(move |tx| {
                Ok::<_, StoreError>(tx.get(Table::AlertRules, id.as_bytes())?.as_deref().and_then(decode))
            })
            .await?
            .ok_or_else(not_found)
    }

    pub async fn create(&self, input: RuleInput) -> Result<Saved, ObserveError> {
        let (rule, secret) = apply_input(input, None, self.webhooks.policy())?;
        check_webhook_targets(self.webhooks.policy(), &rule.webhooks).await?;
        self.store
            .write(move |tx: &mut WriteTx<'_>| {
                if tx.collect_prefix(Table::AlertRules, b"")?.len() >= MAX_RULES {
                    return Err(ObserveError::BadRequest(format!("At most {MAX_RULES} alert rules.")));
                }
                Ok(save(tx, rule, secret))
            })
            .await
    }

    pub async fn update(&self, id: &str, input: RuleInput) -> Result<Saved, ObserveError> {
        check_webhook_targets(self.webhooks.policy(), &input.webhook_urls()).await?;
        let id = id.to_string();
        let targets = self.webhooks.policy().clone();
        self.store
            .write(move |tx: &mut WriteTx<'_>| {
                let base = tx
                    .get(Table::AlertRules, id.as_bytes())?
                    .as_deref()
                    .and_then(decode)
                    .ok_or_else(not_found)?;
                let (rule, secret) = apply_input(input, Some(base), &targets)?;
                Ok(save(tx, rule, secret))
            })
            .await
    }

    pub async fn delete(&self, id: &str) -> Result<(), ObserveError> {
        let id = id.to_string();
        self.store
            .write(move |tx: &mut WriteTx<'_>| {
                if tx.get(Table::AlertRules, id.as_bytes())?.is_none() {
                    return Err(not_found());
                }
                tx.delete(Table::AlertRules, id.as_bytes());
                crate::webhooks::delete_secret(tx, &secret_owner(&id));
                Ok(())
            })
            .await
    }

    /// Alert history, newest first (up to `limit`), optionally for one rule.
    pub async fn history_rows(&self, rule: Option<String>, limit: usize) -> Result<Vec<Value>, ObserveError> {
        Ok(self
            .store
            .read(move |tx| {
                let mut out = Vec::new();
                tx.scan_prefix(Table::AlertHistory, b"", true, None, |_, v| {
                    if let Ok(row) = serde_json::from_slice::<Value>(v) {
                        if rule
                            .as_deref()
                            .is_none_or(|r| row.get("ruleId").and_then(Value::as_str) == Some(r))
                        {
                            out.push(row);
                        }
                    }
                    if out.len() >= limit {
                        ScanControl::Stop
                    } else {
                        ScanControl::Continue
                    }
                })?;
                Ok::<_, StoreError>(out)
            })
            .await?)
    }

    /// Seeds the default rules once (a data file that had them keeps its own).
    pub async fn seed_defaults(&self) -> Result<(), StoreError> {
        self.store
            .write(|tx: &mut WriteTx<'_>| {
                let rules = if tx.get(Table::Meta, b"alerts_seeded")?.is_none() {
                    defaults()
                } else if tx.get(Table::Meta, SEARCH_RULE_SEEDED)?.is_none() {
                    vec![SEARCH_LAG_RULE]
                } else {
                    return Ok(());
                };
                for (name, series, op, threshold, for_secs) in rules {
                    let rule = Rule {
                        name: name.to_string(),
                        series: series.to_string(),
                        op,
                        threshold,
                        for_secs,
                        ..Rule::new()
                    };
                    tx.put(Table::AlertRules, rule.id.as_bytes(), encode(&rule));
                }
                tx.put(Table::Meta, b"alerts_seeded", vec![1]);
                tx.put(Table::Meta, SEARCH_RULE_SEEDED, vec![1]);
                Ok(())
            })
            .await
    }
}

/// Stores `rule` and its secret in `tx`: the one the body set, or a generated one when the
/// rule has webhooks and no secret yet (returned, to be shown once).
fn save(tx: &mut WriteTx<'_>, mut rule: Rule, secret: Option<String>) -> Saved {
    let mut generated_secret = None;
    let secret = match secret {
        Some(s) => Some(s),
        None if !rule.webhooks.is_empty() && rule.webhook_secret_hint.is_none() => {
            let fresh = crate::webhooks::sign::generate_secret();
            generated_secret = Some(fresh.clone());
            Some(fresh)
        }
        None => None,
    };
    if let Some(secret) = secret {
        rule.webhook_secret_hint = Some(crate::webhooks::sign::hint(&secret));
        crate::webhooks::put_secret(tx, &secret_owner(&rule.id), &secret);
    }
    tx.put(Table::AlertRules, rule.id.as_bytes(), encode(&rule));
    Saved { rule, generated_secret }
}

/// What one evaluation decided for a rule.
#[derive(Debug, Clone, PartialEq)]
enum Transition {
    None,
    Fired { notify: bool },
    Resolved { notify: bool },
}

/// Moves `rule` forward with `value` observed at `now` (ms).
fn step(rule: &mut Rule, value: f64, now: i64) -> Transition {
    rule.value = Some(value);
    if !rule.enabled {
        rule.state = State::Ok;
        rule.since = None;
        rule.firing_since = None;
        return Transition::None;
    }
    if rule.holds(value) {
        let since = *rule.since.get_or_insert(now);
        if rule.state != State::Firing {
            let held_ms = now - since;
            if held_ms >= i64::try_from(rule.for_secs.saturating_mul(1000)).unwrap_or(i64::MAX) {
                let cooled = rule.last_notified.is_none_or(|t| {
                    now - t >= i64::try_from(rule.cooldown_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
                });
                let notify = cooled && rule.has_receivers();
                rule.state = State::Firing;
                rule.notified = notify;
                rule.firing_since = Some(now);
                if notify {
                    rule.last_notified = Some(now);
                }
                return Transition::Fired { notify };
            }
            rule.state = State::Pending;
        }
        Transition::None
    } else {
        let was_firing = rule.state == State::Firing;
        let notify = was_firing && rule.notified;
        rule.state = State::Ok;
        rule.since = None;
        rule.notified = false;
        rule.firing_since = None;
        if was_firing {
            Transition::Resolved { notify }
        } else {
            Transition::None
        }
    }
}

/// The notification emails of a firing or resolve, one per recipient; `url` is the server's.
fn message(rule: &Rule, firing: bool, value: f64, url: &str) -> Vec<OutgoingMail> {
    let word = if firing { "FIRING" } else { "RESOLVED" };
    let subject = format!("[{word}] {}", rule.name);
    let text = format!(
        "Alert {word}: {name}\n\nCondition: {series} {op} {threshold} for {for_secs} s\nCurrent value: {value}\nServer: {url}\n\nHistory: {url}/api/alerts/history\n",
        name = rule.name,
        series = rule.series,
        op = rule.op,
        threshold = rule.threshold,
        for_secs = rule.for_secs,
    );
    rule.emails
        .iter()
        .filter_map(|to| {
            let mut body = Map::new();
            body.insert("to".into(), json!(to));
            body.insert("subject".into(), json!(subject));
            body.insert("text".into(), json!(text));
            OutgoingMail::from_json(&body).ok()
        })
        .collect()
}

/// Milliseconds since 1970 as RFC 3339 UTC (`2026-05-01T12:00:00.000Z`).
fn rfc3339(ms: i64) -> Option<String> {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// The webhook body of a firing or resolve (the same for every URL of the rule), as
/// documented in the README: `event`, `rule`, `value`, `at`, `firingSince`, plus an event
/// `id` shared by the deliveries of this one transition.
fn webhook_body(rule: &Rule, firing: bool, value: f64, now: i64, firing_since: Option<i64>) -> Value {
    json!({
        "id": format!("evt_{}", crate::util::id::random_string(20)),
        "event": if firing { "alert.firing" } else { "alert.resolved" },
        "rule": {
            "id": rule.id,
            "name": rule.name,
            "series": rule.series,
            "op": rule.op,
            "threshold": rule.threshold,
            "forSecs": rule.for_secs,
        },
        "value": value,
        "at": rfc3339(now),
        "firingSince": firing_since.and_then(rfc3339),
    })
}

/// One delivery per webhook URL of `rule`.
fn webhook_deliveries(
    rule: &Rule,
    firing: bool,
    value: f64,
    now: i64,
    firing_since: Option<i64>,
) -> Vec<Delivery> {
    if rule.webhooks.is_empty() {
        return Vec::new();
    }
    let body = webhook_body(rule, firing, value, now, firing_since);
    let event = if firing { "alert.firing" } else { "alert.resolved" };
    rule.webhooks
        .iter()
        .map(|url| Delivery {
            url: url.clone(),
            event: event.into(),
            body: body.clone(),
            secret_owner: secret_owner(&rule.id),
        })
        .collect()
}

impl Alerts {
    /// Evaluates every rule against the latest history sample; notifications are enqueued in
    /// the same transaction as the state change (so a crash cannot fire without recording,
    /// or record without notifying). Returns how many rules fired.
    pub async fn evaluate(&self) -> Result<usize, ObserveError> {
        let Some((at, sample)) = self.history.latest().await? else { return Ok(0) };
        let now = chrono::Utc::now().timestamp_millis();
        // A sample older than three intervals says nothing about now (the sampler is behind).
        let max_age = i64::try_from(self.history.sample_secs().saturating_mul(3000)).unwrap_or(i64::MAX);
        if now - at > max_age.max(30_000) {
            return Ok(0);
        }
        let rules = self.list().await?;
        let url = (self.public_url)();
        let mut changes = Vec::new();
        for mut rule in rules {
            let Some(value) = sample.get(&rule.series).and_then(Value::as_f64) else { continue };
            let before = rule.clone();
            let transition = step(&mut rule, value, now);
            if rule != before {
                let (mails, hooks) = match transition {
                    Transition::Fired { notify: true } => (
                        message(&rule, true, value, &url),
                        webhook_deliveries(&rule, true, value, now, rule.firing_since),
                    ),
                    Transition::Resolved { notify: true } => (
                        message(&rule, false, value, &url),
                        webhook_deliveries(&rule, false, value, now, before.firing_since),
                    ),
                    _ => (Vec::new(), Vec::new()),
                };
                changes.push((rule, transition, value, mails, hooks));
            }
        }
        let fired = changes.iter().filter(|(_, t, _, _, _)| matches!(t, Transition::Fired { .. })).count();
        if changes.is_empty() {
            return Ok(0);
        }
        let mail = self.mail.clone();
        let webhooks = self.webhooks.clone();
        self.store
            .write(move |tx: &mut WriteTx<'_>| -> Result<(), ObserveError> {
                let mut seq = 0u32;
                for (rule, transition, value, mails, hooks) in changes {
                    tx.put(Table::AlertRules, rule.id.as_bytes(), encode(&rule));
                    let (event, notified) = match transition {
                        Transition::Fired { notify } => ("firing", notify),
                        Transition::Resolved { notify } => ("resolved", notify),
                        Transition::None => continue,
                    };
                    for m in mails {
                        mail.enqueue_in(tx, m).map_err(|e| ObserveError::Internal(e.to_string()))?;
                    }
                    for hook in hooks {
                        webhooks.enqueue_in(tx, hook).map_err(|e| ObserveError::Internal(e.to_string()))?;
                    }
                    let mut key = u64::try_from(now).unwrap_or(0).to_be_bytes().to_vec();
                    key.extend_from_slice(&seq.to_be_bytes());
                    seq += 1;
                    let row = json!({
                        "ruleId": rule.id,
                        "rule": rule.name,
                        "event": event,
                        "series": rule.series,
                        "op": rule.op,
                        "threshold": rule.threshold,
                        "value": value,
                        "notified": notified,
                        "time": super::requests::format_time(now.saturating_mul(1000)),
                    });
                    tx.put(Table::AlertHistory, &key, serde_json::to_vec(&row).unwrap_or_default());
                }
                // Keep the history bounded.
                let mut count = 0usize;
                let mut doomed = Vec::new();
                tx.scan_prefix(Table::AlertHistory, b"", None, |k, _| {
                    count += 1;
                    doomed.push(k.to_vec());
                    ScanControl::Continue
                })?;
                let excess = count.saturating_sub(KEEP_HISTORY);
                for k in doomed.into_iter().take(excess) {
                    tx.delete(Table::AlertHistory, &k);
                }
                Ok(())
            })
            .await?;
        Ok(fired)
    }
}

/// Registers the `alerts.check` job kind. The job kinds are registered before the services
/// exist, so the handler finds the rules through `alerts`, set once they are built; it
/// holds them weakly, so the queue does not keep them (and the queue they hold) alive.
pub fn register(registry: &mut Registry, alerts: Arc<OnceLock<Weak<Alerts>>>) {
    registry.register(
        JOB_KIND,
        KindOptions {
            max_attempts: Some(1),
            timeout: Some(std::time::Duration::from_secs(60)),
            ..KindOptions::default()
        },
        move |_ctx: JobContext| {
            let alerts = alerts.get().and_then(Weak::upgrade);
            async move {
                let Some(alerts) = alerts else {
                    return Err(JobFailure::discard("the server is shutting down"));
                };
                match alerts.evaluate().await {
                    Ok(_) => Done::complete(),
                    Err(err) => Err(JobFailure::retry(err.to_string())),
                }
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(body: Value, targets: &TargetPolicy) -> Result<(Rule, Option<String>), ObserveError> {
        apply_input(RuleInput::parse(body)?, None, targets)
    }

    fn rule(for_secs: u64, cooldown_secs: u64) -> Rule {
        let body = json!({"name": "dead jobs", "series": "jobs_dead", "threshold": 0, "forSecs": for_secs,
                          "cooldownSecs": cooldown_secs, "emails": ["ops@example.com"]});
        create(body, &TargetPolicy::default()).expect("valid rule").0
    }

    fn input(pairs: Value, targets: &TargetPolicy) -> Result<(Rule, Option<String>), ObserveError> {
        let mut body = pairs.as_object().cloned().unwrap_or_default();
        body.entry("name").or_insert(json!("dead jobs"));
        body.entry("series").or_insert(json!("jobs_dead"));
        body.entry("threshold").or_insert(json!(0));
        create(Value::Object(body), targets)
    }

    fn field_code(result: Result<(Rule, Option<String>), ObserveError>, field: &str) -> String {
        match result {
            Err(ObserveError::Invalid(invalid)) => invalid
                .fields
                .get(field)
                .map(|e| e.code.clone())
                .unwrap_or_else(|| format!("no {field} error: {invalid:?}")),
            other => format!("not invalid: {other:?}"),
        }
    }

    #[test]
    fn a_rule_fires_after_its_duration_resolves_and_respects_its_cooldown() {
        let mut r = rule(10, 60);
        assert_eq!(step(&mut r, 1.0, 0), Transition::None);
        assert_eq!(r.state, State::Pending);
        assert_eq!(step(&mut r, 1.0, 9_999), Transition::None);
        assert_eq!(step(&mut r, 1.0, 10_000), Transition::Fired { notify: true });
        assert_eq!(step(&mut r, 1.0, 11_000), Transition::None, "fires once while it holds");
        assert_eq!(step(&mut r, 0.0, 12_000), Transition::Resolved { notify: true });
        // Within the cooldown: fires (recorded) without a notification, resolves silently.
        step(&mut r, 1.0, 20_000);
        assert_eq!(step(&mut r, 1.0, 30_000), Transition::Fired { notify: false });
        assert_eq!(step(&mut r, 0.0, 31_000), Transition::Resolved { notify: false });
        // After the cooldown: notified again.
        step(&mut r, 1.0, 70_000);
        assert_eq!(step(&mut r, 1.0, 80_000), Transition::Fired { notify: true });
    }

    #[test]
    fn a_condition_that_stops_holding_resets_the_duration() {
        let mut r = rule(10, 0);
        step(&mut r, 1.0, 0);
        step(&mut r, 0.0, 5_000);
        assert_eq!(r.state, State::Ok);
        assert_eq!(step(&mut r, 1.0, 9_000), Transition::None);
        assert_eq!(step(&mut r, 1.0, 18_999), Transition::None);
        assert_eq!(step(&mut r, 1.0, 19_000), Transition::Fired { notify: true });
    }

    #[test]
    fn bad_rule_input_names_each_field() {
        let body = json!({"series": "nope", "op": "==", "forSecs": -1, "cooldownSecs": 1.5,
                          "enabled": "yes", "emails": ["not an address"], "name": null});
        let Err(ObserveError::Invalid(invalid)) = create(body, &TargetPolicy::default()) else {
            panic!("invalid")
        };
        assert_eq!(invalid.message, "Invalid alert rule.");
        let codes: Vec<(&str, &str)> =
            invalid.fields.iter().map(|(f, e)| (f.as_str(), e.code.as_str())).collect();
        assert_eq!(
            codes,
            [
                ("cooldownSecs", "validation_invalid_number"),
                ("emails", "validation_invalid_email"),
                ("enabled", "validation_invalid_type"),
                ("forSecs", "validation_invalid_number"),
                ("name", "validation_required"),
                ("op", "validation_invalid_value"),
                ("series", "validation_unknown_series"),
                ("threshold", "validation_required"),
            ]
        );
    }

    #[test]
    fn an_unknown_field_is_refused_by_name() {
        let body = json!({"name": "x", "series": "jobs_dead", "threshold": 0, "colour": "red"});
        assert_eq!(field_code(create(body, &TargetPolicy::default()), "colour"), "validation_unknown_field");
    }

    #[test]
    fn stored_rules_keep_their_wire_names() {
        let r = rule(10, 60);
        let stored = r.to_json();
        assert_eq!((stored["op"].as_str(), stored["state"].as_str()), (Some(">"), Some("ok")));
        let old = json!({"id": "r1", "name": "n", "series": "jobs_dead", "op": "<=", "threshold": 1.0,
                         "forSecs": 0, "cooldownSecs": 0, "enabled": true, "emails": [], "state": "firing"});
        let decoded = decode(old.to_string().as_bytes()).expect("a rule stored before webhooks loads");
        assert_eq!((decoded.op, decoded.state), (Op::AtMost, State::Firing));
    }

    #[test]
    fn an_update_changes_only_what_it_names_and_starts_over() {
        let mut base = rule(10, 60);
        step(&mut base, 1.0, 0);
        assert_eq!(base.state, State::Pending);
        let input = RuleInput::parse(json!({"threshold": 5, "op": "<"})).expect("parses");
        let (updated, secret) =
            apply_input(input, Some(base.clone()), &TargetPolicy::default()).expect("valid");
        assert_eq!(
            (updated.op, updated.threshold, updated.state, updated.since),
            (Op::Below, 5.0, State::Ok, None)
        );
        assert_eq!((updated.name, updated.emails, secret), (base.name, base.emails, None));
    }

    #[test]
    fn a_rule_with_only_webhooks_notifies_and_remembers_when_its_firing_began() {
        let (mut r, _) = input(
            json!({"forSecs": 0, "webhooks": ["https://hooks.example.com/a"]}),
            &TargetPolicy::default(),
        )
        .expect("valid");
        assert_eq!(step(&mut r, 1.0, 5_000), Transition::Fired { notify: true });
        assert_eq!(r.firing_since, Some(5_000));
        assert_eq!(step(&mut r, 0.0, 9_000), Transition::Resolved { notify: true });
        assert_eq!(r.firing_since, None);
        let (mut silent, _) = input(json!({"forSecs": 0}), &TargetPolicy::default()).expect("valid");
        assert_eq!(
            step(&mut silent, 1.0, 0),
            Transition::Fired { notify: false },
            "no receivers: history only"
        );
    }

    #[test]
    fn webhook_urls_must_be_http_public_and_few() {
        let policy = TargetPolicy::default();
        assert_eq!(
            field_code(input(json!({"webhooks": ["ftp://example.com/x"]}), &policy), "webhooks"),
            "validation_invalid_url"
        );
        assert_eq!(
            field_code(input(json!({"webhooks": ["not a url"]}), &policy), "webhooks"),
            "validation_invalid_url"
        );
        assert_eq!(
            field_code(input(json!({"webhooks": [42]}), &policy), "webhooks"),
            "validation_invalid_url"
        );
        assert_eq!(
            field_code(input(json!({"webhooks": ["http://127.0.0.1:9000/hook"]}), &policy), "webhooks"),
            "validation_private_target"
        );
        assert_eq!(
            field_code(input(json!({"webhooks": ["http://169.254.169.254/latest"]}), &policy), "webhooks"),
            "validation_private_target"
        );
        let six: Vec<String> = (0..6).map(|i| format!("https://h{i}.example.com/")).collect();
        assert_eq!(
            field_code(input(json!({"webhooks": six}), &policy), "webhooks"),
            "validation_invalid_value"
        );
        assert_eq!(
            field_code(input(json!({"webhooks": "https://a.example.com/"}), &policy), "webhooks"),
            "validation_invalid_value"
        );
        // Allowed private targets pass; duplicates collapse into one delivery.
        let (r, _) = input(
            json!({"webhooks": ["http://127.0.0.1:9000/hook", "http://127.0.0.1:9000/hook"]}),
            &TargetPolicy::allow_all(),
        )
        .expect("allowed");
        assert_eq!(r.webhooks, vec!["http://127.0.0.1:9000/hook".to_string()]);
    }

    #[test]
    fn a_chosen_webhook_secret_must_be_long_and_plain() {
        let policy = TargetPolicy::default();
        for bad in [
            json!("short"),
            json!("has spaces in the secret"),
            json!(12345678901234567_u64),
            json!("x".repeat(257)),
        ] {
            assert_eq!(
                field_code(input(json!({"webhookSecret": bad}), &policy), "webhookSecret"),
                "validation_invalid_secret",
                "{bad}"
            );
        }
        let (_, secret) = input(json!({"webhookSecret": "a-long-enough-secret"}), &policy).expect("valid");
        assert_eq!(secret.as_deref(), Some("a-long-enough-secret"));
    }

    #[test]
    fn the_webhook_body_names_the_event_the_rule_the_value_and_the_times() {
        let (r, _) =
            input(json!({"name": "Dead jobs", "forSecs": 60}), &TargetPolicy::default()).expect("valid");
        let body = webhook_body(&r, false, 0.0, 1_700_000_060_000, Some(1_700_000_000_000));
        assert_eq!(body["event"], "alert.resolved");
        assert_eq!(
            body["rule"],
            json!({"id": r.id, "name": "Dead jobs", "series": "jobs_dead", "op": ">", "threshold": 0.0, "forSecs": 60})
        );
        assert_eq!(body["value"], 0.0);
        assert_eq!(body["at"], "2023-11-14T22:14:20.000Z");
        assert_eq!(body["firingSince"], "2023-11-14T22:13:20.000Z");
        assert!(body["id"].as_str().is_some_and(|id| id.starts_with("evt_")), "{body}");
        let deliveries = webhook_deliveries(&r, true, 1.0, 0, Some(0));
        assert!(deliveries.is_empty(), "no URLs, no deliveries");
    }
}

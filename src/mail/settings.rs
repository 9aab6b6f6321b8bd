//! Run-time settings of outgoing email: `GET/PATCH /api/settings`, in PocketBase's JSON
//! shape (`meta`, `smtp`) plus Backbone's `smtp.security`, `smtp.timeoutSecs` and
//! `templates`.
//!
//! The config file (`[mail]`) gives the defaults; the data file holds only what a superuser
//! changed (the overrides, in [`Table::Settings`] under `mail`), so a later config change
//! still applies to every key nobody overrode. Every write goes through [`Settings::update`]
//! inside the caller's write transaction and reports what changed ([`SettingsChange`]), the
//! one place an audit log hooks in. The SMTP password is write-only: it is never serialized.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::address::{parse_address, parse_header_text};
use super::template::{valid_locale, TemplateOverrides, TemplateText};
use super::{MailError, Template};
use crate::config::MailSection;
use crate::store::{Table, WriteTx};
use crate::util::invalid::{parse_object, present, Collector, Invalid, Summary, Typed};

/// The key of the mail section's overrides in [`Table::Settings`].
pub const SETTINGS_KEY: &[u8] = b"mail";

/// The effective settings: config defaults with the stored overrides applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub meta: Meta,
    pub smtp: Smtp,
    #[serde(default)]
    pub templates: TemplateOverrides,
}

/// PocketBase's `meta` section (the parts email uses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Meta {
    pub app_name: String,
    #[serde(rename = "appURL")]
    pub app_url: String,
    pub sender_name: String,
    pub sender_address: String,
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// TLS from the first byte (port 465).
    Tls,
    /// Plain connection upgraded with STARTTLS; refused if the server does not offer it.
    Starttls,
    /// No encryption (a relay on the same host or network).
    None,
}

impl Security {
    fn parse(value: &str) -> Option<Security> {
        match value {
            "tls" => Some(Security::Tls),
            "starttls" => Some(Security::Starttls),
            "none" => Some(Security::None),
            _ => None,
        }
    }
}

/// PocketBase's `smtp` section plus `security` and `timeoutSecs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Smtp {
    pub enabled: bool,
    pub host: String,
    pub port: u16,
    pub username: String,
    /// Write-only: skipped when serialized.
    #[serde(default, skip_serializing)]
    pub password: String,
    pub auth_method: String,
    /// PocketBase's flag: implicit TLS. Mirrors `security == tls`.
    pub tls: bool,
    pub security: Security,
    pub local_name: String,
    pub timeout_secs: u64,
}

/// What one [`Settings::update`] changed: dotted key paths (`smtp.host`,
/// `templates.otp.pt-br`). Secrets appear by name only; values are never included.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SettingsChange {
    pub changed: Vec<String>,
}

impl Settings {
    /// The config defaults as an override-shaped JSON document.
    fn defaults_json(defaults: &MailSection, public_url: &str) -> Value {
        let app_url = if defaults.app_url.is_empty() { public_url } else { defaults.app_url.as_str() };
        json!({
            "meta": {
                "appName": defaults.app_name,
                "appURL": app_url.trim_end_matches('/'),
                "senderName": defaults.sender_name,
                "senderAddress": defaults.sender_address,
            },
            "smtp": {
                "enabled": defaults.enabled,
                "host": defaults.host,
                "port": defaults.port,
                "username": defaults.username,
                "password": defaults.password,
                "authMethod": defaults.auth_method,
                "tls": defaults.security == "tls",
                "security": defaults.security,
                "localName": defaults.local_name,
                "timeoutSecs": defaults.timeout_secs,
            },
            "templates": {},
        })
    }

    /// Defaults with `overrides` applied.
    pub fn effective(
        defaults: &MailSection,
        public_url: &str,
        overrides: &Map<String, Value>,
    ) -> Result<Settings, MailError> {
        let mut merged = Settings::defaults_json(defaults, public_url);
        for (section, values) in overrides {
            if let (Some(Value::Object(target)), Value::Object(values)) = (merged.get_mut(section), values) {
                for (k, v) in values {
                    target.insert(k.clone(), v.clone());
                }
            }
        }
        let mut settings: Settings = serde_json::from_value(merged)
            .map_err(|e| MailError::Internal(format!("stored mail settings do not decode: {e}")))?;
        settings.smtp.tls = settings.smtp.security == Security::Tls;
        Ok(settings)
    }

    /// Reads the stored overrides (an empty object when none).
    pub fn read_overrides(bytes: Option<&[u8]>) -> Result<Map<String, Value>, MailError> {
        match bytes {
            None => Ok(Map::new()),
            Some(bytes) => serde_json::from_slice(bytes)
                .map_err(|e| MailError::Internal(format!("stored mail settings do not decode: {e}"))),
        }
    }

    /// The JSON served by `GET /api/settings` (no password).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Validates `patch`, applies it to the stored overrides inside `tx`, and returns the
    /// new effective settings with what changed (sorted). The only writer of mail settings.
    /// Every problem with the patch is reported at once, summarized by the first.
    pub fn update(
        tx: &mut WriteTx<'_>,
        defaults: &MailSection,
        public_url: &str,
        patch: &Map<String, Value>,
    ) -> Result<(Settings, SettingsChange), MailError> {
        let patch: SettingsPatch = parse_object(Value::Object(patch.clone()), Summary::FirstProblem)?;
        let mut overrides = Settings::read_overrides(tx.get(Table::Settings, SETTINGS_KEY)?.as_deref())?;
        let before = Settings::effective(defaults, public_url, &overrides)?;
        let mut change = SettingsChange::default();
        let mut c = Collector::new();
        let object = "Must be an object.";
        match patch.meta {
            None => {}
            Some(Typed::Wrong(_)) => c.add("meta", "validation_invalid_type", object),
            Some(Typed::Ok(meta)) => {
                for (key, value) in meta.checked(&mut c) {
                    set(&mut overrides, "meta", key, value, &mut change);
                }
            }
        }
        match patch.smtp {
            None => {}
            Some(Typed::Wrong(_)) => c.add("smtp", "validation_invalid_type", object),
            Some(Typed::Ok(smtp)) => {
                for (key, value) in smtp.checked(&mut c, before.smtp.security) {
                    set(&mut overrides, "smtp", key, value, &mut change);
                }
            }
        }
        match patch.templates {
            None => {}
            Some(Typed::Wrong(_)) => c.add("templates", "validation_invalid_type", object),
            Some(Typed::Ok(templates)) => {
                for (name, variants) in &templates {
                    apply_template(&mut overrides, name, variants, &mut change, &mut c)?;
                }
            }
        }
        for section in patch.unknown.keys() {
            c.add(
                section,
                "validation_unknown_field",
                "Unknown settings section; Backbone has meta, smtp and templates.",
            );
        }
        c.finish(Summary::FirstProblem)?;
        let after = Settings::effective(defaults, public_url, &overrides)?;
        if after.smtp.enabled && after.smtp.host.is_empty() {
            return Err(
                Invalid::of("smtp.host", "validation_required", "Required while SMTP is enabled.").into()
            );
        }
        let bytes = serde_json::to_vec(&overrides).map_err(|e| MailError::Internal(e.to_string()))?;
        tx.put(Table::Settings, SETTINGS_KEY, bytes);
        change.changed.retain(|key| key_differs(&before, &after, key));
        change.changed.sort();
        Ok((after, change))
    }
}

/// A `PATCH /api/settings` body. Every member is optional; a member sent as `null` is a
/// type problem (only template variants can be removed).
#[derive(Debug, Deserialize)]
struct SettingsPatch {
    #[serde(default, deserialize_with = "present")]
    meta: Option<Typed<MetaPatch>>,
    #[serde(default, deserialize_with = "present")]
    smtp: Option<Typed<SmtpPatch>>,
    /// `templates.<name>`: see [`apply_template`].
    #[serde(default, deserialize_with = "present")]
    templates: Option<Typed<Map<String, Value>>>,
    /// Sections Backbone does not have (PocketBase's others): refused by name.
    #[serde(flatten)]
    unknown: Map<String, Value>,
}

/// The `meta` members of a settings patch.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetaPatch {
    #[serde(default, deserialize_with = "present")]
    app_name: Option<Typed<String>>,
    #[serde(default, deserialize_with = "present", rename = "appURL")]
    app_url: Option<Typed<String>>,
    #[serde(default, deserialize_with = "present")]
    sender_name: Option<Typed<String>>,
    #[serde(default, deserialize_with = "present")]
    sender_address: Option<Typed<String>>,
    #[serde(flatten)]
    unknown: Map<String, Value>,
}

impl MetaPatch {
    /// The overrides to store, by key; problems go to `c`.
    fn checked(self, c: &mut Collector) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        let members = [
            ("appName", self.app_name),
            ("appURL", self.app_url),
            ("senderName", self.sender_name),
            ("senderAddress", self.sender_address),
        ];
        for (key, value) in members {
            let field = format!("meta.{key}");
            let Some(text) = c.typed(&field, value, "validation_invalid_type", "Must be a string.") else {
                continue;
            };
            let checked = match key {
                "senderAddress" => parse_address(&field, &text),
                "appURL" => parse_header_text(&field, &text).and_then(|url| checked_app_url(&field, url)),
                _ => parse_header_text(&field, &text),
            };
            if let Some(checked) = c.check_invalid(checked) {
                out.push((key, Value::String(checked)));
            }
        }
        unknown_members(c, "meta", &self.unknown);
        out
    }
}

/// An empty or http(s) application URL, without a trailing slash.
fn checked_app_url(field: &str, url: String) -> Result<String, Invalid> {
    if !url.is_empty()
        && url::Url::parse(&url).map(|u| !matches!(u.scheme(), "http" | "https")).unwrap_or(true)
    {
        return Err(Invalid::of(field, "validation_invalid_url", "Must be an http(s) URL."));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// The `smtp` members of a settings patch.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SmtpPatch {
    #[serde(default, deserialize_with = "present")]
    enabled: Option<Typed<bool>>,
    #[serde(default, deserialize_with = "present")]
    host: Option<Typed<String>>,
    #[serde(default, deserialize_with = "present")]
    port: Option<Typed<u64>>,
    #[serde(default, deserialize_with = "present")]
    username: Option<Typed<String>>,
    #[serde(default, deserialize_with = "present")]
    password: Option<Typed<String>>,
    #[serde(default, deserialize_with = "present")]
    auth_method: Option<Typed<String>>,
    /// PocketBase's flag (true: implicit TLS); ignored when `security` is given too.
    #[serde(default, deserialize_with = "present")]
    tls: Option<Typed<bool>>,
    #[serde(default, deserialize_with = "present")]
    security: Option<Typed<String>>,
    #[serde(default, deserialize_with = "present")]
    local_name: Option<Typed<String>>,
    #[serde(default, deserialize_with = "present")]
    timeout_secs: Option<Typed<u64>>,
    #[serde(flatten)]
    unknown: Map<String, Value>,
}

impl SmtpPatch {
    /// The overrides to store, by key; problems go to `c`. `current` is the security in
    /// effect, which PocketBase's `tls: false` keeps unless it is implicit TLS.
    fn checked(self, c: &mut Collector, current: Security) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        let bool_type = "Must be true or false.";
        let string_type = "Must be a string.";
        if let Some(enabled) = c.typed("smtp.enabled", self.enabled, "validation_invalid_type", bool_type) {
            out.push(("enabled", json!(enabled)));
        }
        let numbers = [
            ("port", self.port, 1..=65535, "Must be a port from 1 to 65535."),
            ("timeoutSecs", self.timeout_secs, 1..=600, "Must be from 1 to 600 seconds."),
        ];
        for (key, value, range, message) in numbers {
            match value {
                None => {}
                Some(Typed::Ok(n)) if range.contains(&n) => out.push((key, json!(n))),
                Some(_) => c.add(&format!("smtp.{key}"), "validation_invalid_number", message),
            }
        }
        let strings = [
            ("host", self.host),
            ("localName", self.local_name),
            ("username", self.username),
            ("password", self.password),
            ("authMethod", self.auth_method),
            ("security", self.security.clone()),
        ];
        for (key, value) in strings {
            let field = format!("smtp.{key}");
            let Some(text) = c.typed(&field, value, "validation_invalid_type", string_type) else {
                continue;
            };
            let refusal = match key {
                "host" | "localName" => {
                    (!text.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b)))
                        .then_some(("validation_invalid_host", "Must be a host name or IP address."))
                }
                "username" | "password" => text
                    .chars()
                    .any(char::is_control)
                    .then_some(("validation_header_injection", "Must not contain control characters.")),
                "authMethod" => (!matches!(text.as_str(), "PLAIN" | "LOGIN"))
                    .then_some(("validation_invalid_value", "Must be PLAIN or LOGIN.")),
                _ => Security::parse(&text)
                    .is_none()
                    .then_some(("validation_invalid_value", "Must be tls, starttls or none.")),
            };
            match refusal {
                Some((code, message)) => c.add(&field, code, message),
                None => out.push((key, Value::String(text))),
            }
        }
        if let Some(tls) = c.typed("smtp.tls", self.tls, "validation_invalid_type", bool_type) {
            if self.security.is_none() {
                // PocketBase's flag: true means implicit TLS; false leaves a plain or
                // STARTTLS choice alone and turns implicit TLS into STARTTLS.
                let security = match (tls, current) {
                    (true, _) => "tls",
                    (false, Security::Tls | Security::Starttls) => "starttls",
                    (false, Security::None) => "none",
                };
                out.push(("security", json!(security)));
            }
        }
        unknown_members(c, "smtp", &self.unknown);
        out
    }
}

/// Notes each member of `unknown` as an unknown field of `section`.
fn unknown_members(c: &mut Collector, section: &str, unknown: &Map<String, Value>) {
    for key in unknown.keys() {
        c.add(&format!("{section}.{key}"), "validation_unknown_field", "Unknown field.");
    }
}

/// Whether `key` (a dotted path) differs between two settings; secrets count as changed
/// whenever they were written.
fn key_differs(before: &Settings, after: &Settings, key: &str) -> bool {
    if key == "smtp.password" {
        return true;
    }
    let (a, b) =
        (serde_json::to_value(before).unwrap_or_default(), serde_json::to_value(after).unwrap_or_default());
    let pointer = format!("/{}", key.replace('~', "~0").replace('/', "~1").replace('.', "/"));
    a.pointer(&pointer) != b.pointer(&pointer)
}

fn set(
    overrides: &mut Map<String, Value>,
    section: &str,
    key: &str,
    value: Value,
    change: &mut SettingsChange,
) {
    let entry = overrides.entry(section.to_string()).or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(map) = entry {
        map.insert(key.to_string(), value);
    }
    change.changed.push(format!("{section}.{key}"));
}

/// `templates.<name>`: `null` removes every variant; an object sets (`{subject, text,
/// html?}`) or removes (`null`) one variant per locale.
fn apply_template(
    overrides: &mut Map<String, Value>,
    name: &str,
    variants: &Value,
    change: &mut SettingsChange,
    c: &mut Collector,
) -> Result<(), MailError> {
    let field = format!("templates.{name}");
    if Template::parse(name).is_none() {
        c.add(
            &field,
            "validation_unknown_template",
            format!("Unknown template; use one of {}.", Template::names().join(", ")),
        );
        return Ok(());
    }
    let section = overrides.entry("templates".to_string()).or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(section) = section else {
        return Err(MailError::Internal("stored templates are not an object".into()));
    };
    match variants {
        Value::Null => {
            section.remove(name);
            change.changed.push(field);
        }
        Value::Object(by_locale) => {
            let slot = section.entry(name.to_string()).or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(slot) = slot else {
                return Err(MailError::Internal("stored template variants are not an object".into()));
            };
            for (locale, variant) in by_locale {
                let locale_field = format!("{field}.{locale}");
                if !valid_locale(locale) {
                    c.add(
                        &locale_field,
                        "validation_invalid_locale",
                        "Use default or a language tag such as en or pt-BR.",
                    );
                    continue;
                }
                let key = locale.to_ascii_lowercase();
                if variant.is_null() {
                    slot.remove(&key);
                } else {
                    let text = match TemplateText::deserialize(variant) {
                        Ok(text) => text,
                        Err(e) => {
                            c.add(
                                &locale_field,
                                "validation_invalid_template",
                                format!("Must be {{subject, text, html?}}: {e}."),
                            );
                            continue;
                        }
                    };
                    let subject = parse_header_text(&format!("{locale_field}.subject"), &text.subject);
                    if c.check_invalid(subject).is_none() {
                        continue;
                    }
                    if text.subject.trim().is_empty() || text.text.trim().is_empty() {
                        c.add(&locale_field, "validation_required", "subject and text cannot be blank.");
                        continue;
                    }
                    slot.insert(
                        key.clone(),
                        serde_json::to_value(&text).map_err(|e| MailError::Internal(e.to_string()))?,
                    );
                }
                change.changed.push(format!("{field}.{key}"));
            }
        }
        _ => c.add(&field, "validation_invalid_type", "Must be an object of locale → template, or null."),
    }
    Ok(())
}

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
    /// new effective settings with what changed. The only writer of mail settings.
    pub fn update(
        tx: &mut WriteTx<'_>,
        defaults: &MailSection,
        public_url: &str,
        patch: &Map<String, Value>,
    ) -> Result<(Settings, SettingsChange), MailError> {
        let mut overrides = Settings::read_overrides(tx.get(Table::Settings, SETTINGS_KEY)?.as_deref())?;
        let before = Settings::effective(defaults, public_url, &overrides)?;
        let mut change = SettingsChange::default();
        for (section, value) in patch {
            let Value::Object(values) = value else {
                return Err(MailError::invalid(section, "validation_invalid_type", "Must be an object."));
            };
            match section.as_str() {
                "meta" => {
                    for (key, value) in values {
                        let checked = check_meta(key, value)?;
                        set(&mut overrides, "meta", key, checked, &mut change);
                    }
                }
                "smtp" => {
                    let explicit_security = values.contains_key("security");
                    for (key, value) in values {
                        if key == "tls" {
                            let Some(tls) = value.as_bool() else {
                                return Err(MailError::invalid(
                                    "smtp.tls",
                                    "validation_invalid_type",
                                    "Must be true or false.",
                                ));
                            };
                            if explicit_security {
                                continue;
                            }
                            // PocketBase's flag: true means implicit TLS; false leaves a
                            // plain or STARTTLS choice alone and turns implicit TLS into STARTTLS.
                            let security = match (tls, before.smtp.security) {
                                (true, _) => "tls",
                                (false, Security::Tls) => "starttls",
                                (false, Security::Starttls) => "starttls",
                                (false, Security::None) => "none",
                            };
                            set(&mut overrides, "smtp", "security", json!(security), &mut change);
                            continue;
                        }
                        let checked = check_smtp(key, value)?;
                        set(&mut overrides, "smtp", key, checked, &mut change);
                    }
                }
                "templates" => {
                    for (name, variants) in values {
                        apply_template(&mut overrides, name, variants, &mut change)?;
                    }
                }
                other => {
                    return Err(MailError::invalid(
                        other,
                        "validation_unknown_field",
                        "Unknown settings section; Backbone has meta, smtp and templates.",
                    ))
                }
            }
        }
        let after = Settings::effective(defaults, public_url, &overrides)?;
        if after.smtp.enabled && after.smtp.host.is_empty() {
            return Err(MailError::invalid(
                "smtp.host",
                "validation_required",
                "Required while SMTP is enabled.",
            ));
        }
        let bytes = serde_json::to_vec(&overrides).map_err(|e| MailError::Internal(e.to_string()))?;
        tx.put(Table::Settings, SETTINGS_KEY, bytes);
        change.changed.retain(|key| key_differs(&before, &after, key));
        Ok((after, change))
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

fn string_value<'a>(field: &str, value: &'a Value) -> Result<&'a str, MailError> {
    value.as_str().ok_or_else(|| MailError::invalid(field, "validation_invalid_type", "Must be a string."))
}

fn check_meta(key: &str, value: &Value) -> Result<Value, MailError> {
    let field = format!("meta.{key}");
    let text = string_value(&field, value)?;
    let checked = match key {
        "appName" | "senderName" => parse_header_text(&field, text)?,
        "senderAddress" => parse_address(&field, text)?,
        "appURL" => {
            let trimmed = parse_header_text(&field, text)?;
            if !trimmed.is_empty()
                && url::Url::parse(&trimmed).map(|u| !matches!(u.scheme(), "http" | "https")).unwrap_or(true)
            {
                return Err(MailError::invalid(&field, "validation_invalid_url", "Must be an http(s) URL."));
            }
            trimmed.trim_end_matches('/').to_string()
        }
        _ => return Err(MailError::invalid(&field, "validation_unknown_field", "Unknown field.")),
    };
    Ok(Value::String(checked))
}

fn check_smtp(key: &str, value: &Value) -> Result<Value, MailError> {
    let field = format!("smtp.{key}");
    let type_error =
        |what: &str| MailError::invalid(&field, "validation_invalid_type", format!("Must be {what}."));
    Ok(match key {
        "enabled" => Value::Bool(value.as_bool().ok_or_else(|| type_error("true or false"))?),
        "port" => match value.as_u64() {
            Some(port @ 1..=65535) => json!(port),
            _ => {
                return Err(MailError::invalid(
                    &field,
                    "validation_invalid_number",
                    "Must be a port from 1 to 65535.",
                ))
            }
        },
        "timeoutSecs" => match value.as_u64() {
            Some(secs @ 1..=600) => json!(secs),
            _ => {
                return Err(MailError::invalid(
                    &field,
                    "validation_invalid_number",
                    "Must be from 1 to 600 seconds.",
                ))
            }
        },
        "host" | "localName" => {
            let text = string_value(&field, value)?;
            let ok = text.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b));
            if !ok {
                return Err(MailError::invalid(
                    &field,
                    "validation_invalid_host",
                    "Must be a host name or IP address.",
                ));
            }
            Value::String(text.to_string())
        }
        "username" | "password" => {
            let text = string_value(&field, value)?;
            if text.chars().any(char::is_control) {
                return Err(MailError::invalid(
                    &field,
                    "validation_header_injection",
                    "Must not contain control characters.",
                ));
            }
            Value::String(text.to_string())
        }
        "authMethod" => match string_value(&field, value)? {
            m @ ("PLAIN" | "LOGIN") => Value::String(m.to_string()),
            _ => {
                return Err(MailError::invalid(&field, "validation_invalid_value", "Must be PLAIN or LOGIN."))
            }
        },
        "security" => match Security::parse(string_value(&field, value)?) {
            Some(_) => value.clone(),
            None => {
                return Err(MailError::invalid(
                    &field,
                    "validation_invalid_value",
                    "Must be tls, starttls or none.",
                ))
            }
        },
        _ => return Err(MailError::invalid(&field, "validation_unknown_field", "Unknown field.")),
    })
}

/// `templates.<name>`: `null` removes every variant; an object sets (`{subject, text,
/// html?}`) or removes (`null`) one variant per locale.
fn apply_template(
    overrides: &mut Map<String, Value>,
    name: &str,
    variants: &Value,
    change: &mut SettingsChange,
) -> Result<(), MailError> {
    let field = format!("templates.{name}");
    if Template::parse(name).is_none() {
        return Err(MailError::invalid(
            &field,
            "validation_unknown_template",
            format!("Unknown template; use one of {}.", Template::names().join(", ")),
        ));
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
                    return Err(MailError::invalid(
                        &locale_field,
                        "validation_invalid_locale",
                        "Use default or a language tag such as en or pt-BR.",
                    ));
                }
                let key = locale.to_ascii_lowercase();
                if variant.is_null() {
                    slot.remove(&key);
                } else {
                    let text: TemplateText = serde_json::from_value(variant.clone()).map_err(|e| {
                        MailError::invalid(
                            &locale_field,
                            "validation_invalid_template",
                            format!("Must be {{subject, text, html?}}: {e}."),
                        )
                    })?;
                    parse_header_text(&format!("{locale_field}.subject"), &text.subject)?;
                    if text.subject.trim().is_empty() || text.text.trim().is_empty() {
                        return Err(MailError::invalid(
                            &locale_field,
                            "validation_required",
                            "subject and text cannot be blank.",
                        ));
                    }
                    slot.insert(
                        key.clone(),
                        serde_json::to_value(&text).map_err(|e| MailError::Internal(e.to_string()))?,
                    );
                }
                change.changed.push(format!("{field}.{key}"));
            }
        }
        _ => {
            return Err(MailError::invalid(
                &field,
                "validation_invalid_type",
                "Must be an object of locale → template, or null.",
            ))
        }
    }
    Ok(())
}

//! Email templates: the built-in ones, the choice of a per-locale variant, and rendering.
//!
//! Syntax: `{{name}}` or `{{record.field}}` (spaces inside the braces allowed). PocketBase's
//! placeholders also work, so its templates carry over: `{APP_NAME}`, `{APP_URL}`, `{TOKEN}`,
//! `{OTP}`, `{ACTION_URL}`, `{RECORD:field}`. Values are HTML-escaped in the HTML part and
//! inserted as they are in the subject and the text part. A name with no value renders as
//! nothing. Rendering is one pass: a value that itself contains `{{...}}` is not expanded.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Template;

/// One variant of a template: subject, plain text, and optionally HTML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateText {
    pub subject: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

/// Per template name, per locale (lower case, or `default`): the superuser's variants.
pub type TemplateOverrides = BTreeMap<String, BTreeMap<String, TemplateText>>;

/// The variant for `locale`: the exact locale (`pt-br`), then its language (`pt`), then the
/// template's `default` override, then the built-in English text.
pub fn choose(template: Template, locale: Option<&str>, overrides: &TemplateOverrides) -> TemplateText {
    if let Some(variants) = overrides.get(template.name()) {
        let mut candidates: Vec<String> = Vec::new();
        if let Some(locale) = locale.map(|l| l.trim().to_ascii_lowercase()).filter(|l| !l.is_empty()) {
            if let Some((language, _)) = locale.split_once('-') {
                let language = language.to_string();
                candidates.push(locale);
                candidates.push(language);
            } else {
                candidates.push(locale);
            }
        }
        candidates.push("default".into());
        for candidate in candidates {
            if let Some(found) = variants.get(&candidate) {
                return found.clone();
            }
        }
    }
    builtin(template)
}

/// True for `default` or a BCP 47-looking tag (`en`, `pt-BR`, `zh-Hant-TW`).
pub fn valid_locale(locale: &str) -> bool {
    if locale == "default" {
        return true;
    }
    let mut parts = locale.split('-');
    let first_ok = parts
        .next()
        .is_some_and(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphabetic()));
    first_ok && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Renders `template` with `vars`; `html` escapes every substituted value.
pub fn render(template: &str, vars: &Map<String, Value>, html: bool) -> String {
    let template = pocketbase_placeholders(template);
    let mut out = String::with_capacity(template.len());
    let mut rest = template.as_str();
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        out.push_str(&rest[..start]);
        let name = rest[start + 2..start + 2 + len].trim();
        let value = lookup(vars, name);
        if html {
            escape_html_into(&value, &mut out);
        } else {
            out.push_str(&value);
        }
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    out
}

/// Rewrites PocketBase's `{APP_NAME}`-style placeholders into `{{appName}}` form.
fn pocketbase_placeholders(template: &str) -> String {
    if !template.contains('{') {
        return template.to_string();
    }
    let mut text = template
        .replace("{APP_NAME}", "{{appName}}")
        .replace("{APP_URL}", "{{appURL}}")
        .replace("{TOKEN}", "{{token}}")
        .replace("{OTP}", "{{otp}}")
        .replace("{ACTION_URL}", "{{actionURL}}");
    while let Some(start) = text.find("{RECORD:") {
        let after = start + "{RECORD:".len();
        let Some(len) = text[after..].find('}') else { break };
        let field = text[after..after + len].to_string();
        text.replace_range(start..after + len + 1, &format!("{{{{record.{field}}}}}"));
    }
    text
}

/// The text of a variable (`a.b.c` walks into objects); nothing when absent.
fn lookup(vars: &Map<String, Value>, path: &str) -> String {
    let mut parts = path.split('.');
    let Some(first) = parts.next() else { return String::new() };
    let mut current = match vars.get(first) {
        Some(v) => v,
        None => return String::new(),
    };
    for part in parts {
        current = match current.get(part) {
            Some(v) => v,
            None => return String::new(),
        };
    }
    match current {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn escape_html_into(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// The link a token template points at when the caller gave no `actionURL` (PocketBase's
/// admin UI routes).
pub fn default_action_url(template: Template, app_url: &str, token: &str) -> Option<String> {
    let route = match template {
        Template::Verification => "confirm-verification",
        Template::PasswordReset => "confirm-password-reset",
        Template::EmailChange => "confirm-email-change",
        Template::Otp | Template::ExportReady | Template::Alert => return None,
    };
    Some(format!("{}/_/#/auth/{route}/{token}", app_url.trim_end_matches('/')))
}

/// Wraps an HTML fragment in the shared, minimal layout.
fn layout(body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"></head>\n\
<body style=\"margin:0;padding:24px;background:#f4f5f7;font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#1f2328;\">\n\
<div style=\"max-width:520px;margin:0 auto;background:#ffffff;border-radius:8px;padding:32px;line-height:1.5;\">\n\
{body}\n\
<p style=\"margin-top:32px;color:#6e7781;font-size:13px;\">{{{{appName}}}} &middot; <a href=\"{{{{appURL}}}}\" style=\"color:#6e7781;\">{{{{appURL}}}}</a></p>\n\
</div>\n</body>\n</html>\n"
    )
}

fn button(label: &str) -> String {
    format!(
        "<p><a href=\"{{{{actionURL}}}}\" style=\"display:inline-block;background:#1f6feb;color:#ffffff;text-decoration:none;padding:10px 18px;border-radius:6px;\">{label}</a></p>\n\
<p style=\"font-size:13px;color:#6e7781;\">Or open this link: <a href=\"{{{{actionURL}}}}\">{{{{actionURL}}}}</a></p>"
    )
}

/// The built-in English text of each template.
pub fn builtin(template: Template) -> TemplateText {
    let (subject, text, html): (&str, &str, String) = match template {
        Template::Verification => (
            "Verify your {{appName}} email",
            "Hello,\n\nThank you for joining {{appName}}. Confirm your email address by opening this link:\n\n{{actionURL}}\n\nIf you did not sign up, ignore this email.\n\nThe {{appName}} team\n",
            layout(&format!(
                "<p>Hello,</p>\n<p>Thank you for joining {{{{appName}}}}. Confirm your email address:</p>\n{}\n<p>If you did not sign up, ignore this email.</p>",
                button("Verify email")
            )),
        ),
        Template::PasswordReset => (
            "Reset your {{appName}} password",
            "Hello,\n\nSomeone asked to reset the password of your {{appName}} account. Choose a new password here:\n\n{{actionURL}}\n\nIf it was not you, ignore this email; your password stays the same.\n\nThe {{appName}} team\n",
            layout(&format!(
                "<p>Hello,</p>\n<p>Someone asked to reset the password of your {{{{appName}}}} account.</p>\n{}\n<p>If it was not you, ignore this email; your password stays the same.</p>",
                button("Reset password")
            )),
        ),
        Template::EmailChange => (
            "Confirm your new {{appName}} email address",
            "Hello,\n\nConfirm {{record.newEmail}} as the new email address of your {{appName}} account:\n\n{{actionURL}}\n\nIf you did not ask for this change, ignore this email.\n\nThe {{appName}} team\n",
            layout(&format!(
                "<p>Hello,</p>\n<p>Confirm your new email address for {{{{appName}}}}:</p>\n{}\n<p>If you did not ask for this change, ignore this email.</p>",
                button("Confirm new email")
            )),
        ),
        Template::Otp => (
            "Your {{appName}} sign-in code",
            "Hello,\n\nYour one-time sign-in code for {{appName}} is:\n\n{{otp}}\n\nIf you did not try to sign in, ignore this email.\n\nThe {{appName}} team\n",
            layout(
                "<p>Hello,</p>\n<p>Your one-time sign-in code for {{appName}} is:</p>\n<p style=\"font-size:28px;font-weight:600;letter-spacing:4px;\">{{otp}}</p>\n<p>If you did not try to sign in, ignore this email.</p>",
            ),
        ),
        Template::ExportReady => (
            "Your {{appName}} export is ready",
            "Hello,\n\nThe export you asked for is ready to download:\n\n{{actionURL}}\n\nThe {{appName}} team\n",
            layout(&format!(
                "<p>Hello,</p>\n<p>The export you asked for is ready.</p>\n{}",
                button("Download export")
            )),
        ),
        Template::Alert => (
            "[{{appName}}] {{title}}",
            "{{title}}\n\n{{message}}\n\n{{actionURL}}\n",
            layout("<h2 style=\"margin-top:0;font-size:18px;\">{{title}}</h2>\n<p style=\"white-space:pre-wrap;\">{{message}}</p>\n<p><a href=\"{{actionURL}}\">{{actionURL}}</a></p>"),
        ),
    };
    TemplateText { subject: subject.into(), text: text.into(), html: Some(html) }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn vars(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn variables_and_record_fields_are_substituted_and_escaped_in_html_only() {
        let v = vars(json!({"appName": "A&B", "record": {"email": "x@y.z", "age": 3}}));
        assert_eq!(render("{{appName}} / {{ record.email }} / {{record.age}}", &v, false), "A&B / x@y.z / 3");
        assert_eq!(render("<b>{{appName}}</b>", &v, true), "<b>A&amp;B</b>");
        assert_eq!(render("[{{missing}}] [{{record.nope}}]", &v, false), "[] []");
        assert_eq!(render("unclosed {{appName", &v, false), "unclosed {{appName");
    }

    #[test]
    fn values_are_not_expanded_twice() {
        let v = vars(json!({"a": "{{b}}", "b": "no"}));
        assert_eq!(render("{{a}}", &v, false), "{{b}}");
    }

    #[test]
    fn pocketbase_placeholders_work() {
        let v =
            vars(json!({"appName": "App", "appURL": "https://x", "token": "T", "record": {"name": "Ann"}}));
        assert_eq!(render("{APP_NAME} {APP_URL}/{TOKEN} {RECORD:name}", &v, false), "App https://x/T Ann");
    }

    #[test]
    fn a_locale_falls_back_to_its_language_then_default_then_builtin() {
        let variant = |s: &str| TemplateText { subject: s.into(), text: s.into(), html: None };
        let mut overrides = TemplateOverrides::new();
        overrides.entry("otp".into()).or_default().insert("pt".into(), variant("pt"));
        overrides.entry("otp".into()).or_default().insert("pt-br".into(), variant("pt-br"));
        overrides.entry("otp".into()).or_default().insert("default".into(), variant("default"));
        assert_eq!(choose(Template::Otp, Some("pt-BR"), &overrides).subject, "pt-br");
        assert_eq!(choose(Template::Otp, Some("pt-PT"), &overrides).subject, "pt");
        assert_eq!(choose(Template::Otp, Some("de"), &overrides).subject, "default");
        assert_eq!(choose(Template::Otp, None, &overrides).subject, "default");
        assert_eq!(choose(Template::Verification, Some("pt"), &overrides), builtin(Template::Verification));
    }

    #[test]
    fn locales_are_checked() {
        for ok in ["en", "pt-BR", "zh-Hant-TW", "default"] {
            assert!(valid_locale(ok), "{ok}");
        }
        for bad in ["", "e", "en_US", "en-", "toolonglanguage", "en-\n"] {
            assert!(!valid_locale(bad), "{bad:?}");
        }
    }

    #[test]
    fn every_builtin_has_both_parts_and_renders_its_action_url() {
        for t in Template::ALL {
            let b = builtin(t);
            let v = vars(
                json!({"appName": "App", "appURL": "https://app", "actionURL": "https://app/go?a=1&b=2", "otp": "123456"}),
            );
            let html = render(b.html.as_deref().unwrap_or_default(), &v, true);
            let text = render(&b.text, &v, false);
            assert!(!render(&b.subject, &v, false).is_empty());
            if t == Template::Otp {
                assert!(text.contains("123456") && html.contains("123456"));
            } else if t != Template::Alert {
                assert!(text.contains("https://app/go?a=1&b=2"), "{t:?}: {text}");
                assert!(html.contains("https://app/go?a=1&amp;b=2"), "{t:?}: {html}");
            }
        }
    }
}

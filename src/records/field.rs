//! Field definitions (PocketBase's field JSON) and the normalization of values against them.
//!
//! `normalize` turns whatever a client sent for a field into the stored value, or a field
//! error with a PocketBase-style code. It never panics on any JSON input.

use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::FieldError;
use crate::util::time;

/// Default text limit when `max` is 0, in characters.
pub const DEFAULT_TEXT_MAX: usize = 5000;
/// Default JSON field limit when `maxSize` is 0, in bytes.
pub const DEFAULT_JSON_MAX: usize = 1 << 20;
/// Default editor field limit when `maxSize` is 0, in bytes.
pub const DEFAULT_EDITOR_MAX: usize = 5 << 20;
/// Longest accepted password, in bytes.
pub const PASSWORD_MAX: usize = 256;

/// One field of a collection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Field {
    #[serde(default)]
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub system: bool,
    #[serde(default)]
    pub hidden: bool,
    #[serde(default)]
    pub presentable: bool,
    #[serde(default)]
    pub required: bool,
    #[serde(flatten)]
    pub kind: FieldKind,
}

/// The type of a field and its type-specific options.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum FieldKind {
    Text(TextOptions),
    Number(NumberOptions),
    Bool(BoolOptions),
    Email(DomainOptions),
    Url(DomainOptions),
    Date(DateOptions),
    Autodate(AutodateOptions),
    Select(SelectOptions),
    Json(JsonOptions),
    Editor(EditorOptions),
    Password(PasswordOptions),
    Relation(RelationOptions),
    File(FileOptions),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TextOptions {
    #[serde(default)]
    pub min: usize,
    #[serde(default)]
    pub max: usize,
    #[serde(default)]
    pub pattern: String,
    #[serde(default)]
    pub autogenerate_pattern: String,
    #[serde(default)]
    pub primary_key: bool,
    #[serde(skip)]
    compiled: OnceLock<Option<Regex>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NumberOptions {
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default)]
    pub only_int: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BoolOptions {}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DomainOptions {
    #[serde(default)]
    pub except_domains: Vec<String>,
    #[serde(default)]
    pub only_domains: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DateOptions {
    #[serde(default)]
    pub min: String,
    #[serde(default)]
    pub max: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutodateOptions {
    #[serde(default)]
    pub on_create: bool,
    #[serde(default)]
    pub on_update: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SelectOptions {
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default)]
    pub max_select: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonOptions {
    #[serde(default)]
    pub max_size: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EditorOptions {
    #[serde(default)]
    pub max_size: usize,
    #[serde(default, rename = "convertURLs")]
    pub convert_urls: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelationOptions {
    /// Id of the collection the ids point into.
    #[serde(default)]
    pub collection_id: String,
    /// Deleting a referenced record deletes the records pointing at it (otherwise the delete
    /// is refused while references exist).
    #[serde(default)]
    pub cascade_delete: bool,
    #[serde(default)]
    pub min_select: usize,
    #[serde(default)]
    pub max_select: usize,
}

impl RelationOptions {
    /// True when the field stores an array of ids.
    pub fn is_multiple(&self) -> bool {
        self.max_select > 1
    }
}

/// A file field (PocketBase's shape): the value is one filename, or a list when
/// `maxSelect` > 1. The blobs live under `files/` (see `crate::files`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileOptions {
    /// Most files the field holds (0 or 1: a single filename).
    #[serde(default)]
    pub max_select: usize,
    /// Largest accepted file, in bytes (0: [`DEFAULT_FILE_MAX`]).
    #[serde(default)]
    pub max_size: u64,
    /// Accepted content types (sniffed from the bytes); empty: any.
    #[serde(default)]
    pub mime_types: Vec<String>,
    /// Image variants clients may ask for with `?thumb=` (`WxH`, `WxHt`, `WxHb`, `WxHf`,
    /// `0xH`, `Wx0`); produced by a job after each upload.
    #[serde(default)]
    pub thumbs: Vec<String>,
    /// Downloads need a file token (`POST /api/files/token`).
    #[serde(default)]
    pub protected: bool,
}

impl FileOptions {
    /// True when the field stores a list of filenames.
    pub fn is_multiple(&self) -> bool {
        self.max_select > 1
    }

    /// The size cap of one file, in bytes.
    pub fn effective_max_size(&self) -> u64 {
        if self.max_size == 0 {
            DEFAULT_FILE_MAX
        } else {
            self.max_size
        }
    }
}

/// Default size cap of one uploaded file when `maxSize` is 0, in bytes (PocketBase's 5 MiB).
pub const DEFAULT_FILE_MAX: u64 = 5 << 20;

/// True for the thumb size syntax PocketBase accepts: `WxH` with an optional `t`, `b` or
/// `f` suffix, not both sides zero.
pub fn is_valid_thumb_size(size: &str) -> bool {
    let body = size.strip_suffix(['t', 'b', 'f']).unwrap_or(size);
    let Some((w, h)) = body.split_once('x') else {
        return false;
    };
    let parse = |s: &str| {
        (!s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
    };
    matches!((parse(w), parse(h)), (Some(w), Some(h)) if w > 0 || h > 0)
}

/// True for names the server gives stored files (`[A-Za-z0-9._-]`, no leading dot).
pub fn is_valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 160
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PasswordOptions {
    #[serde(default)]
    pub min: usize,
    #[serde(default)]
    pub max: usize,
}

impl TextOptions {
    pub fn new(min: usize, max: usize, pattern: &str) -> TextOptions {
        TextOptions { min, max, pattern: pattern.to_string(), ..TextOptions::default() }
    }

    fn regex(&self) -> Option<&Regex> {
        self.compiled
            .get_or_init(|| if self.pattern.is_empty() { None } else { Regex::new(&self.pattern).ok() })
            .as_ref()
    }

    fn effective_max(&self) -> usize {
        if self.max == 0 {
            DEFAULT_TEXT_MAX
        } else {
            self.max
        }
    }
}

impl SelectOptions {
    /// True when the field stores an array rather than a single string.
    pub fn is_multiple(&self) -> bool {
        self.max_select > 1
    }
}

impl Field {
    /// The PocketBase type name (`text`, `number`, ...).
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            FieldKind::Text(_) => "text",
            FieldKind::Number(_) => "number",
            FieldKind::Bool(_) => "bool",
            FieldKind::Email(_) => "email",
            FieldKind::Url(_) => "url",
            FieldKind::Date(_) => "date",
            FieldKind::Autodate(_) => "autodate",
            FieldKind::Select(_) => "select",
            FieldKind::Json(_) => "json",
            FieldKind::Editor(_) => "editor",
            FieldKind::Password(_) => "password",
            FieldKind::Relation(_) => "relation",
            FieldKind::File(_) => "file",
        }
    }

    /// Values the server sets itself; clients may not write them.
    pub fn is_server_managed(&self) -> bool {
        matches!(self.kind, FieldKind::Autodate(_)) || (self.system && self.name == "tokenKey")
    }

    /// A value no response shows and no rule reads: password hashes and the token key.
    pub fn is_secret(&self) -> bool {
        matches!(self.kind, FieldKind::Password(_)) || (self.system && self.name == "tokenKey")
    }

    /// Never part of a response, whatever the caller's rights.
    pub fn is_never_returned(&self) -> bool {
        self.hidden || matches!(self.kind, FieldKind::Password(_))
    }

    /// The value a record has for this field when nothing was stored.
    pub fn zero_value(&self) -> Value {
        match &self.kind {
            FieldKind::Number(_) => Value::from(0),
            FieldKind::Bool(_) => Value::Bool(false),
            FieldKind::Select(o) if o.is_multiple() => Value::Array(vec![]),
            FieldKind::Relation(o) if o.is_multiple() => Value::Array(vec![]),
            FieldKind::File(o) if o.is_multiple() => Value::Array(vec![]),
            FieldKind::Json(_) => Value::Null,
            _ => Value::String(String::new()),
        }
    }

    /// Checks the definition itself (on collection create/update). Returns the problem.
    pub fn check_definition(&self) -> Result<(), String> {
        match &self.kind {
            FieldKind::Text(o) => {
                if o.max != 0 && o.min > o.max {
                    return Err("min must not be greater than max".into());
                }
                if !o.pattern.is_empty() {
                    Regex::new(&o.pattern).map_err(|e| format!("invalid pattern: {e}"))?;
                }
            }
            FieldKind::Number(o) => {
                for bound in [o.min, o.max].into_iter().flatten() {
                    if !bound.is_finite() {
                        return Err("min and max must be finite numbers".into());
                    }
                }
                if let (Some(min), Some(max)) = (o.min, o.max) {
                    if min > max {
                        return Err("min must not be greater than max".into());
                    }
                }
            }
            FieldKind::Date(o) => {
                for bound in [&o.min, &o.max] {
                    if !bound.is_empty() && time::parse(bound).is_none() {
                        return Err(format!("invalid date bound {bound:?}"));
                    }
                }
            }
            FieldKind::Select(o) => {
                if o.values.is_empty() {
                    return Err("select fields need at least one value".into());
                }
                let mut seen = std::collections::HashSet::new();
                for v in &o.values {
                    if v.is_empty() || !seen.insert(v) {
                        return Err("select values must be non-empty and unique".into());
                    }
                }
                if o.max_select > o.values.len() {
                    return Err("maxSelect must not exceed the number of values".into());
                }
            }
            FieldKind::Password(o) => {
                if o.max != 0 && o.min > o.max {
                    return Err("min must not be greater than max".into());
                }
            }
            FieldKind::Relation(o) => {
                if o.collection_id.is_empty() {
                    return Err("relation fields need a collectionId".into());
                }
                if o.max_select != 0 && o.min_select > o.max_select {
                    return Err("minSelect must not be greater than maxSelect".into());
                }
            }
            FieldKind::File(o) => {
                if let Some(bad) = o.thumbs.iter().find(|t| !is_valid_thumb_size(t)) {
                    return Err(format!(
                        "invalid thumb size {bad:?} (expected WxH, WxHt, WxHb, WxHf, 0xH or Wx0)"
                    ));
                }
                if o.mime_types.iter().any(|m| m.is_empty() || !m.contains('/')) {
                    return Err("mimeTypes must be content types such as image/png".into());
                }
            }
            FieldKind::Bool(_)
            | FieldKind::Email(_)
            | FieldKind::Url(_)
            | FieldKind::Autodate(_)
            | FieldKind::Json(_)
            | FieldKind::Editor(_) => {}
        }
        Ok(())
    }

    /// Turns a client value into the stored value, or explains why it is invalid.
    /// `Value::Null` stands for "not given" and becomes the zero value.
    pub fn normalize(&self, input: &Value) -> Result<Value, FieldError> {
        let value = match &self.kind {
            FieldKind::Text(o) => normalize_text(o, input)?,
            FieldKind::Editor(o) => {
                let s = as_text(input)?;
                let max = if o.max_size == 0 { DEFAULT_EDITOR_MAX } else { o.max_size };
                if s.len() > max {
                    return Err(FieldError::new(
                        "validation_max_text_constraint",
                        format!("Must be at most {max} bytes."),
                    ));
                }
                Value::String(s)
            }
            FieldKind::Number(o) => normalize_number(o, input)?,
            FieldKind::Bool(_) => Value::Bool(as_bool(input)?),
            FieldKind::Email(o) => {
                let s = as_text(input)?;
                if !s.is_empty() {
                    if !is_valid_email(&s) {
                        return Err(FieldError::new(
                            "validation_invalid_email",
                            "Must be a valid email address.",
                        ));
                    }
                    check_domain(o, s.rsplit('@').next().unwrap_or_default())?;
                }
                Value::String(s)
            }
            FieldKind::Url(o) => {
                let s = as_text(input)?;
                if !s.is_empty() {
                    let parsed = url::Url::parse(&s)
                        .ok()
                        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
                    let Some(parsed) = parsed else {
                        return Err(FieldError::new("validation_invalid_url", "Must be a valid url."));
                    };
                    check_domain(o, parsed.host_str().unwrap_or_default())?;
                }
                Value::String(s)
            }
            FieldKind::Date(o) => normalize_date(o, input)?,
            FieldKind::Autodate(_) => match input {
                Value::String(s) => Value::String(s.clone()),
                _ => Value::String(String::new()),
            },
            FieldKind::Select(o) => normalize_select(o, input)?,
            FieldKind::Relation(o) => normalize_relation(o, input)?,
            FieldKind::File(o) => normalize_file(o, input)?,
            FieldKind::Json(o) => {
                let max = if o.max_size == 0 { DEFAULT_JSON_MAX } else { o.max_size };
                let size = serde_json::to_vec(input).map(|v| v.len()).unwrap_or(usize::MAX);
                if size > max {
                    return Err(FieldError::new(
                        "validation_json_size_limit",
                        format!("The maximum allowed JSON size is {max} bytes."),
                    ));
                }
                input.clone()
            }
            FieldKind::Password(o) => {
                let s = as_text(input)?;
                let min = if o.min == 0 { 8 } else { o.min };
                let max = if o.max == 0 { PASSWORD_MAX } else { o.max.min(PASSWORD_MAX) };
                if !s.is_empty() && s.chars().count() < min {
                    return Err(FieldError::new(
                        "validation_min_text_constraint",
                        format!("Must be at least {min} character(s)."),
                    ));
                }
                if s.len() > max {
                    return Err(FieldError::new(
                        "validation_max_text_constraint",
                        format!("Must be at most {max} character(s)."),
                    ));
                }
                Value::String(s)
            }
        };
        if self.required && is_zero(&value) {
            return Err(FieldError::new("validation_required", "Cannot be blank."));
        }
        Ok(value)
    }
}

/// True for the values PocketBase treats as blank for `required`.
pub fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

fn invalid_type(expected: &str) -> FieldError {
    FieldError::new("validation_invalid_type", format!("Must be {expected}."))
}

/// Strings as given; numbers and booleans as their text (PocketBase casts them too).
fn as_text(input: &Value) -> Result<String, FieldError> {
    match input {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Array(_) | Value::Object(_) => Err(invalid_type("a string")),
    }
}

fn as_bool(input: &Value) -> Result<bool, FieldError> {
    match input {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(*b),
        Value::Number(n) if n.as_f64() == Some(0.0) => Ok(false),
        Value::Number(n) if n.as_f64() == Some(1.0) => Ok(true),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "" | "false" | "0" => Ok(false),
            "true" | "1" => Ok(true),
            _ => Err(invalid_type("a boolean")),
        },
        _ => Err(invalid_type("a boolean")),
    }
}

fn normalize_text(o: &TextOptions, input: &Value) -> Result<Value, FieldError> {
    let s = as_text(input)?;
    if s.is_empty() {
        return Ok(Value::String(s));
    }
    let chars = s.chars().count();
    if chars < o.min {
        return Err(FieldError::new(
            "validation_min_text_constraint",
            format!("Must be at least {} character(s).", o.min),
        ));
    }
    let max = o.effective_max();
    if chars > max {
        return Err(FieldError::new(
            "validation_max_text_constraint",
            format!("Must be at most {max} character(s)."),
        ));
    }
    if let Some(re) = o.regex() {
        if !re.is_match(&s) {
            return Err(FieldError::new("validation_invalid_format", "Invalid value format."));
        }
    }
    Ok(Value::String(s))
}

fn normalize_number(o: &NumberOptions, input: &Value) -> Result<Value, FieldError> {
    let n = match input {
        Value::Null => 0.0,
        Value::Number(n) => n.as_f64().ok_or_else(|| invalid_type("a number"))?,
        Value::String(s) if s.trim().is_empty() => 0.0,
        Value::String(s) => s.trim().parse::<f64>().map_err(|_| invalid_type("a number"))?,
        Value::Bool(b) => f64::from(u8::from(*b)),
        _ => return Err(invalid_type("a number")),
    };
    if !n.is_finite() {
        return Err(invalid_type("a finite number"));
    }
    if o.only_int && n.fract() != 0.0 {
        return Err(FieldError::new("validation_only_int_constraint", "Decimal numbers are not allowed."));
    }
    if let Some(min) = o.min {
        if n < min {
            return Err(FieldError::new(
                "validation_min_number_constraint",
                format!("Must be at least {min}."),
            ));
        }
    }
    if let Some(max) = o.max {
        if n > max {
            return Err(FieldError::new(
                "validation_max_number_constraint",
                format!("Must be at most {max}."),
            ));
        }
    }
    Ok(number_value(n))
}

/// Integers stay integers in JSON (`3`, not `3.0`).
fn number_value(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map(Value::Number).unwrap_or(Value::Null)
    }
}

fn normalize_date(o: &DateOptions, input: &Value) -> Result<Value, FieldError> {
    let s = as_text(input)?;
    if s.trim().is_empty() {
        return Ok(Value::String(String::new()));
    }
    let t =
        time::parse(&s).ok_or_else(|| FieldError::new("validation_invalid_date", "Must be a valid date."))?;
    if let Some(min) = time::parse(&o.min) {
        if t < min {
            return Err(FieldError::new(
                "validation_min_date_constraint",
                format!("Must be no earlier than {}.", time::format(min)),
            ));
        }
    }
    if let Some(max) = time::parse(&o.max) {
        if t > max {
            return Err(FieldError::new(
                "validation_max_date_constraint",
                format!("Must be no later than {}.", time::format(max)),
            ));
        }
    }
    Ok(Value::String(time::format(t)))
}

fn normalize_select(o: &SelectOptions, input: &Value) -> Result<Value, FieldError> {
    let mut picked: Vec<String> = Vec::new();
    let mut push = |v: &Value| -> Result<(), FieldError> {
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Null => return Ok(()),
            Value::Number(n) => n.to_string(),
            _ => return Err(invalid_type("a string or a list of strings")),
        };
        if s.is_empty() {
            return Ok(());
        }
        if !o.values.contains(&s) {
            return Err(FieldError::new("validation_invalid_value", format!("Invalid value {s:?}.")));
        }
        if !picked.contains(&s) {
            picked.push(s);
        }
        Ok(())
    };
    match input {
        Value::Array(items) => {
            for item in items {
                push(item)?;
            }
        }
        other => push(other)?,
    }
    if o.is_multiple() {
        if picked.len() > o.max_select {
            return Err(FieldError::new(
                "validation_too_many_values",
                format!("Select no more than {}.", o.max_select),
            ));
        }
        Ok(Value::Array(picked.into_iter().map(Value::String).collect()))
    } else {
        if picked.len() > 1 {
            return Err(FieldError::new("validation_too_many_values", "Select no more than 1."));
        }
        Ok(Value::String(picked.pop().unwrap_or_default()))
    }
}

fn normalize_relation(o: &RelationOptions, input: &Value) -> Result<Value, FieldError> {
    let mut ids: Vec<String> = Vec::new();
    collect_unique(
        input,
        &mut ids,
        crate::util::id::is_valid_record_id,
        "a record id or a list of record ids",
        |s| FieldError::new("validation_invalid_value", format!("Invalid record id {s:?}.")),
    )?;
    if !ids.is_empty() && ids.len() < o.min_select {
        return Err(FieldError::new(
            "validation_not_enough_values",
            format!("Select at least {}.", o.min_select),
        ));
    }
    if o.is_multiple() {
        if ids.len() > o.max_select {
            return Err(FieldError::new(
                "validation_too_many_values",
                format!("Select no more than {}.", o.max_select),
            ));
        }
        Ok(Value::Array(ids.into_iter().map(Value::String).collect()))
    } else {
        if ids.len() > 1 {
            return Err(FieldError::new("validation_too_many_values", "Select no more than 1."));
        }
        Ok(Value::String(ids.pop().unwrap_or_default()))
    }
}

/// Appends the distinct non-empty strings of `input` (one value or a list) to `out`, in
/// order; `null` and `""` are skipped, a string failing `valid` is `invalid(it)`, anything
/// else a type error naming `expected`.
fn collect_unique(
    input: &Value,
    out: &mut Vec<String>,
    valid: fn(&str) -> bool,
    expected: &str,
    invalid: impl Fn(&str) -> FieldError,
) -> Result<(), FieldError> {
    let items = match input {
        Value::Array(items) => items.as_slice(),
        other => std::slice::from_ref(other),
    };
    for v in items {
        match v {
            Value::Null => {}
            Value::String(s) if s.is_empty() => {}
            Value::String(s) if valid(s) => {
                if !out.contains(s) {
                    out.push(s.clone());
                }
            }
            Value::String(s) => return Err(invalid(s)),
            _ => return Err(invalid_type(expected)),
        }
    }
    Ok(())
}

fn normalize_file(o: &FileOptions, input: &Value) -> Result<Value, FieldError> {
    let mut names: Vec<String> = Vec::new();
    collect_unique(input, &mut names, is_valid_file_name, "a file name or a list of file names", |s| {
        FieldError::new("validation_invalid_file", format!("Invalid file name {s:?}."))
    })?;
    if o.is_multiple() {
        if names.len() > o.max_select {
            return Err(FieldError::new(
                "validation_too_many_files",
                format!("The maximum allowed files is {}.", o.max_select),
            ));
        }
        Ok(Value::Array(names.into_iter().map(Value::String).collect()))
    } else {
        // A single file field keeps the last one given (a new upload replaces the old file).
        Ok(Value::String(names.pop().unwrap_or_default()))
    }
}

/// The filenames a stored file value holds.
pub fn file_names(value: Option<&Value>) -> Vec<String> {
    relation_ids(value)
}

/// The ids a stored relation value holds.
pub fn relation_ids(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => vec![],
    }
}

/// A pragmatic address check: one `@`, a non-empty local part, a dotted domain, no spaces.
pub fn is_valid_email(s: &str) -> bool {
    if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && !local.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && domain.chars().all(|c| c.is_alphanumeric() || c == '.' || c == '-')
}

fn check_domain(o: &DomainOptions, domain: &str) -> Result<(), FieldError> {
    let domain = domain.to_ascii_lowercase();
    let matches = |list: &[String]| list.iter().any(|d| d.eq_ignore_ascii_case(&domain));
    if !o.only_domains.is_empty() && !matches(&o.only_domains) {
        return Err(FieldError::new("validation_email_domain_not_allowed", "Domain not allowed."));
    }
    if matches(&o.except_domains) {
        return Err(FieldError::new("validation_email_domain_not_allowed", "Domain not allowed."));
    }
    Ok(())
}

#[cfg(test)]
mod tests;

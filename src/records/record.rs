//! Records: turning client bodies into stored values and stored values into record JSON.
//!
//! Stored form: a JSON object keyed by field name holding every field's normalized value
//! (including `id`, `created`, `updated`, and for auth collections the password hash and
//! token key). Response form: PocketBase's record JSON, `collectionId` and `collectionName`
//! first, then the fields in schema order, never the hidden ones.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::collection::Collection;
use super::field::FieldKind;
use super::{FieldError, FieldErrors, RecordsError};
use crate::util::id::{self, IdGenerator};

/// A record as stored.
pub type Stored = Map<String, Value>;

/// A validated record ready for the writer.
#[derive(Debug)]
pub struct Prepared {
    pub id: String,
    pub stored: Stored,
    /// True when the client chose the id.
    pub custom_id: bool,
    /// A new plain-text password to hash before storing (auth collections).
    pub new_password: Option<String>,
    /// Files received with this write (moved into place before it commits).
    pub uploads: Vec<super::files::Upload>,
}

/// Lower-cased email of an auth record, the key of its identity entry.
pub fn identity_of(stored: &Stored) -> Option<String> {
    stored.get("email").and_then(Value::as_str).filter(|e| !e.is_empty()).map(str::to_lowercase)
}

/// Validates a create body against the collection.
pub fn prepare_create(
    collection: &Collection,
    body: &Map<String, Value>,
    ids: &IdGenerator,
    now: &str,
) -> Result<Prepared, RecordsError> {
    let mut errors = FieldErrors::new();
    let mut stored = Stored::new();
    let mut custom_id = false;
    let record_id = match body.get("id") {
        Some(Value::String(s)) if !s.is_empty() => {
            if id::is_valid_record_id(s) {
                custom_id = true;
                s.clone()
            } else {
                errors.insert(
                    "id".into(),
                    FieldError::new("validation_invalid_id", "Must be 15 characters of a-z and 0-9."),
                );
                String::new()
            }
        }
        None | Some(Value::Null) | Some(Value::String(_)) => ids.next(),
        Some(_) => {
            errors.insert("id".into(), FieldError::new("validation_invalid_type", "Must be a string."));
            String::new()
        }
    };
    let mut new_password = None;
    super::modifiers::check_keys(collection, body, &mut errors);
    for field in &collection.fields {
        let name = field.name.as_str();
        match &field.kind {
            FieldKind::Autodate(o) => {
                let value = if o.on_create { now.to_string() } else { String::new() };
                stored.insert(name.into(), Value::String(value));
                continue;
            }
            FieldKind::Password(_) => {
                let given = body.get(name).cloned().unwrap_or(Value::Null);
                match field.normalize(&given) {
                    Ok(Value::String(plain)) => {
                        check_confirmation(body, &plain, &mut errors);
                        new_password = Some(plain);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        errors.insert(name.into(), e);
                    }
                }
                continue;
            }
            _ => {}
        }
        if name == "id" {
            stored.insert("id".into(), Value::String(record_id.clone()));
            continue;
        }
        if field.is_server_managed() {
            stored.insert(name.into(), Value::String(id::random_string(50)));
            continue;
        }
        let given = body.get(name).cloned().unwrap_or(Value::Null);
        let given = match super::modifiers::apply(field, body, given) {
            Ok(v) => v,
            Err(e) => {
                errors.insert(name.into(), e);
                continue;
            }
        };
        match field.normalize(&given) {
            Ok(v) => {
                stored.insert(name.into(), v);
            }
            Err(e) => {
                errors.insert(name.into(), e);
            }
        }
    }
    if !errors.is_empty() {
        return Err(RecordsError::Validation { message: "Failed to create record.".into(), fields: errors });
    }
    Ok(Prepared { id: record_id, stored, custom_id, new_password, uploads: Vec::new() })
}

/// Validates an update body merged over the current record.
pub fn prepare_update(
    collection: &Collection,
    current: &Stored,
    body: &Map<String, Value>,
    now: &str,
) -> Result<Prepared, RecordsError> {
    let mut errors = FieldErrors::new();
    let mut stored = Stored::new();
    let mut new_password = None;
    super::modifiers::check_keys(collection, body, &mut errors);
    let record_id = current.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
    for field in &collection.fields {
        let name = field.name.as_str();
        let old = current.get(name).cloned();
        match &field.kind {
            FieldKind::Autodate(o) => {
                let value = if o.on_update {
                    Value::String(now.to_string())
                } else {
                    old.unwrap_or_else(|| Value::String(String::new()))
                };
                stored.insert(name.into(), value);
                continue;
            }
            FieldKind::Password(_) => {
                match body.get(name) {
                    Some(given) if !given.is_null() && given.as_str() != Some("") => {
                        match field.normalize(given) {
                            Ok(Value::String(plain)) => {
                                check_confirmation(body, &plain, &mut errors);
                                new_password = Some(plain);
                            }
                            Ok(_) => {}
                            Err(e) => {
                                errors.insert(name.into(), e);
                            }
                        }
                    }
                    _ => {}
                }
                if let Some(hash) = old {
                    stored.insert(name.into(), hash);
                }
                continue;
            }
            _ => {}
        }
        if name == "id" {
            stored.insert("id".into(), Value::String(record_id.clone()));
            continue;
        }
        if field.is_server_managed() {
            let key = if new_password.is_some() || old.is_none() {
                Value::String(id::random_string(50))
            } else {
                old.unwrap_or(Value::Null)
            };
            stored.insert(name.into(), key);
            continue;
        }
        let given = match body.get(name) {
            Some(v) => v.clone(),
            None => old.unwrap_or(Value::Null),
        };
        let given = match super::modifiers::apply(field, body, given) {
            Ok(v) => v,
            Err(e) => {
                errors.insert(name.into(), e);
                continue;
            }
        };
        match field.normalize(&given) {
            Ok(v) => {
                stored.insert(name.into(), v);
            }
            Err(e) => {
                errors.insert(name.into(), e);
            }
        }
    }
    // A password or email change rotates the token key, which revokes every issued token.
    if new_password.is_some() || (collection.is_auth() && identity_of(current) != identity_of(&stored)) {
        if let Some(f) =
            collection.fields.iter().find(|f| f.is_server_managed() && f.system && f.name == "tokenKey")
        {
            stored.insert(f.name.clone(), Value::String(id::random_string(50)));
        }
    }
    if !errors.is_empty() {
        return Err(RecordsError::Validation { message: "Failed to update record.".into(), fields: errors });
    }
    Ok(Prepared { id: record_id, stored, custom_id: false, new_password, uploads: Vec::new() })
}

/// Fields of auth records only managers (superusers, or callers the manage rule admits)
/// may set: `verified` (on create and update) and `email` (on update; others change it
/// through the confirmed email-change flow). A password change by a non-manager needs the
/// old password, which the caller checks (it needs the hasher).
pub fn check_protected(
    collection: &Collection,
    current: Option<&Stored>,
    new: &Stored,
    manager: bool,
) -> Result<(), RecordsError> {
    if !collection.is_auth() || manager {
        return Ok(());
    }
    let mut errors = FieldErrors::new();
    let was_verified = current.and_then(|c| c.get("verified")).and_then(Value::as_bool).unwrap_or(false);
    if new.get("verified").and_then(Value::as_bool).unwrap_or(false) != was_verified {
        errors.insert(
            "verified".into(),
            FieldError::new(
                "validation_values_mismatch",
                "Only superusers and managers can change this field.",
            ),
        );
    }
    if let Some(current) = current {
        if identity_of(current) != identity_of(new) {
            errors.insert(
                "email".into(),
                FieldError::new(
                    "validation_values_mismatch",
                    "Change the email with request-email-change (or as a manager).",
                ),
            );
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        let message = if current.is_some() { "Failed to update record." } else { "Failed to create record." };
        Err(RecordsError::Validation { message: message.into(), fields: errors })
    }
}

fn check_confirmation(body: &Map<String, Value>, plain: &str, errors: &mut FieldErrors) {
    match body.get("passwordConfirm") {
        Some(Value::String(confirm)) if confirm == plain => {}
        Some(_) => {
            errors.insert(
                "passwordConfirm".into(),
                FieldError::new("validation_values_mismatch", "Values don't match."),
            );
        }
        None => {
            errors
                .insert("passwordConfirm".into(), FieldError::new("validation_required", "Cannot be blank."));
        }
    }
}

/// What a response keeps (`fields` query parameter, PocketBase's picker): key paths with
/// dots reaching into objects and lists of objects (`id,expand.author.name`), `*` for every
/// key of a level not otherwise named, and `name:excerpt(max[,ellipsis])` shortening text to
/// a plain-text excerpt at any depth. Default: everything, unchanged.
#[derive(Debug, Clone, Default)]
pub struct FieldsFilter {
    /// `None`: no `fields` parameter.
    root: Option<Pick>,
}

/// The keys one level keeps.
#[derive(Debug, Clone, Default, PartialEq)]
struct Pick {
    /// `*`: keys not named below are kept whole.
    all: bool,
    keys: BTreeMap<String, Node>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// Kept whole, with an optional excerpt (max characters, ellipsis).
    Whole(Option<(usize, bool)>),
    /// Only the listed parts of the value are kept.
    Part(Pick),
}

/// Most dots in one `fields` path.
const MAX_FIELDS_DEPTH: usize = 8;

impl Pick {
    fn keeps(&self, key: &str) -> bool {
        self.all || self.keys.contains_key(key)
    }

    /// Applies this level to `value`: objects keep only the picked keys, lists of objects
    /// are picked item by item, anything else stays as it is.
    fn apply(&self, value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.retain(|k, _| self.keeps(k));
                for (k, v) in map.iter_mut() {
                    match self.keys.get(k) {
                        Some(Node::Whole(Some((max, ellipsis)))) => {
                            if let Value::String(s) = v {
                                *s = excerpt(s, *max, *ellipsis);
                            }
                        }
                        Some(Node::Part(p)) => p.apply(v),
                        _ => {}
                    }
                }
            }
            Value::Array(items) if items.first().is_some_and(Value::is_object) => {
                for item in items {
                    self.apply(item);
                }
            }
            _ => {}
        }
    }
}

/// Splits on commas outside parentheses.
fn split_top_level(raw: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in raw.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&raw[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&raw[start..]);
    parts
}

impl FieldsFilter {
    /// Parses `id,title,*`, `expand.author.name`, `expand.author.*` and
    /// `body:excerpt(max[,ellipsis])` (also on nested paths).
    pub fn parse(raw: Option<&str>) -> Result<FieldsFilter, RecordsError> {
        let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
            return Ok(FieldsFilter::default());
        };
        let unsupported = |part: &str| {
            RecordsError::BadRequest(format!(
                "Unsupported fields entry {part:?}: list field names or dotted paths (expand.author.name), * for the rest of a level, or name:excerpt(max[,ellipsis])."
            ))
        };
        let mut root = Pick::default();
        for part in split_top_level(raw).into_iter().map(str::trim).filter(|p| !p.is_empty()) {
            let (path, modifier) = match part.split_once(':') {
                Some((n, m)) => (n.trim(), Some(m.trim())),
                None => (part, None),
            };
            let segments: Vec<&str> = path.split('.').map(str::trim).collect();
            if segments.len() > MAX_FIELDS_DEPTH
                || segments.iter().any(|s| s.is_empty())
                || segments[..segments.len() - 1].contains(&"*")
            {
                return Err(unsupported(part));
            }
            let excerpt = match modifier {
                None => None,
                Some(m) => {
                    let args = m
                        .strip_prefix("excerpt(")
                        .and_then(|r| r.strip_suffix(')'))
                        .ok_or_else(|| unsupported(part))?;
                    let mut args = args.split(',').map(str::trim);
                    let max: usize = args
                        .next()
                        .and_then(|a| a.parse().ok())
                        .filter(|n| *n > 0)
                        .ok_or_else(|| unsupported(part))?;
                    let ellipsis = match args.next() {
                        None => false,
                        Some(a) => a.parse::<bool>().map_err(|_| unsupported(part))?,
                    };
                    if args.next().is_some() || segments.last() == Some(&"*") {
                        return Err(unsupported(part));
                    }
                    Some((max, ellipsis))
                }
            };
            let mut level = &mut root;
            for (i, segment) in segments.iter().enumerate() {
                if *segment == "*" {
                    level.all = true;
                    break;
                }
                if i + 1 == segments.len() {
                    // A whole key wins over parts of it (as PocketBase's picker does).
                    level.keys.insert(segment.to_string(), Node::Whole(excerpt));
                    break;
                }
                let node =
                    level.keys.entry(segment.to_string()).or_insert_with(|| Node::Part(Pick::default()));
                match node {
                    Node::Part(p) => level = p,
                    Node::Whole(_) => break,
                }
            }
        }
        Ok(FieldsFilter { root: Some(root) })
    }

    /// True when the top-level `key` appears in the response.
    pub fn keeps(&self, key: &str) -> bool {
        self.root.as_ref().is_none_or(|r| r.keeps(key))
    }

    /// The top-level value for `key` as the response shows it (excerpt or nested picks).
    fn shape(&self, key: &str, mut value: Value) -> Value {
        match self.root.as_ref().and_then(|r| r.keys.get(key)) {
            Some(Node::Whole(Some((max, ellipsis)))) => {
                if let Value::String(s) = &value {
                    value = Value::String(excerpt(s, *max, *ellipsis));
                }
                value
            }
            Some(Node::Part(p)) => {
                p.apply(&mut value);
                value
            }
            _ => value,
        }
    }

    /// Applies the picks under `key` (e.g. `expand`) to a value built separately.
    pub fn shape_nested(&self, key: &str, value: Value) -> Value {
        self.shape(key, value)
    }
}

/// Plain text of `html`: tags dropped, whitespace collapsed, at most `max` characters.
pub fn excerpt(html: &str, max: usize, ellipsis: bool) -> String {
    let mut text = String::with_capacity(html.len().min(max * 4));
    let mut in_tag = false;
    let mut last_space = true;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                if !last_space {
                    text.push(' ');
                    last_space = true;
                }
            }
            _ if in_tag => {}
            c if c.is_whitespace() => {
                if !last_space {
                    text.push(' ');
                    last_space = true;
                }
            }
            c => {
                text.push(c);
                last_space = false;
            }
        }
    }
    let text = text.trim();
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max).collect::<String>().trim_end().to_string();
    if ellipsis {
        cut.push_str("...");
    }
    cut
}

/// Renders a stored record as response JSON.
pub fn to_json(collection: &Collection, stored: &Stored, privileged: bool, filter: &FieldsFilter) -> Value {
    into_json(collection, stored.clone(), privileged, filter)
}

/// [`to_json`] for a record the caller no longer needs: its values (and key strings) move
/// into the response instead of being copied.
pub fn into_json(
    collection: &Collection,
    mut stored: Stored,
    privileged: bool,
    filter: &FieldsFilter,
) -> Value {
    let mut out = Map::with_capacity(collection.fields.len() + 2);
    if filter.keeps("collectionId") {
        out.insert("collectionId".into(), Value::String(collection.id.clone()));
    }
    if filter.keeps("collectionName") {
        out.insert("collectionName".into(), Value::String(collection.name.clone()));
    }
    let email_visible = privileged || stored.get("emailVisibility").and_then(Value::as_bool).unwrap_or(false);
    for field in &collection.fields {
        if field.is_never_returned() || !filter.keeps(&field.name) {
            continue;
        }
        if collection.is_auth() && field.name == "email" && !email_visible {
            continue;
        }
        let (key, value) =
            stored.remove_entry(&field.name).unwrap_or_else(|| (field.name.clone(), field.zero_value()));
        let value = filter.shape(&field.name, value);
        out.insert(key, value);
    }
    Value::Object(out)
}

/// Decodes only the top-level keys named in `keys`, for evaluating filters over many
/// records: a byte-level walk over the stored object skips the other values without
/// building (or UTF-8 checking) them and stops once every key was found; the wanted values
/// are parsed with serde. Anything unexpected (escaped keys, malformed bytes) takes the
/// general serde path, which reports real corruption.
pub fn decode_keys(bytes: &[u8], keys: &[String]) -> Result<Stored, RecordsError> {
    match scan_keys(bytes, keys) {
        Some(found) => Ok(found),
        None => decode_keys_serde(bytes, keys),
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// The index after the string starting at `i` (a `"`).
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        match b.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' => j += 2,
            _ => j += 1,
        }
    }
}

/// The index after the JSON value starting at `i`.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let (mut j, mut depth) = (i, 0usize);
            loop {
                match b.get(j)? {
                    b'"' => j = skip_string(b, j)?,
                    b'{' | b'[' => {
                        depth += 1;
                        j += 1;
                    }
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        j += 1;
                        if depth == 0 {
                            return Some(j);
                        }
                    }
                    _ => j += 1,
                }
            }
        }
        _ => {
            let mut j = i;
            while b.get(j).is_some_and(|c| !matches!(c, b',' | b'}' | b']') && !c.is_ascii_whitespace()) {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

fn scan_keys(b: &[u8], keys: &[String]) -> Option<Stored> {
    let mut out = Stored::with_capacity(keys.len());
    let mut found = vec![false; keys.len()];
    let mut missing = keys.len();
    let mut i = skip_ws(b, 0);
    if *b.get(i)? != b'{' {
        return None;
    }
    i = skip_ws(b, i + 1);
    if *b.get(i)? == b'}' {
        return Some(out);
    }
    loop {
        if *b.get(i)? != b'"' {
            return None;
        }
        let start = i + 1;
        let end = start + b.get(start..)?.iter().position(|c| *c == b'"' || *c == b'\\')?;
        if b[end] == b'\\' {
            return None;
        }
        let key = &b[start..end];
        i = skip_ws(b, end + 1);
        if *b.get(i)? != b':' {
            return None;
        }
        let value_start = skip_ws(b, i + 1);
        i = skip_value(b, value_start)?;
        if let Some(n) = keys.iter().position(|k| k.len() == key.len() && k.as_bytes() == key) {
            if !found[n] {
                found[n] = true;
                missing -= 1;
                let value: Value = serde_json::from_slice(&b[value_start..i]).ok()?;
                out.insert(keys[n].clone(), value);
                if missing == 0 {
                    return Some(out);
                }
            }
        }
        i = skip_ws(b, i);
        match b.get(i)? {
            b',' => i = skip_ws(b, i + 1),
            b'}' => return Some(out),
            _ => return None,
        }
    }
}

/// [`decode_keys`] through serde (every byte checked).
fn decode_keys_serde(bytes: &[u8], keys: &[String]) -> Result<Stored, RecordsError> {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

    /// A map key: the index of the wanted key it equals, if any.
    struct Key<'a>(&'a [String]);
    impl<'de> DeserializeSeed<'de> for Key<'_> {
        type Value = Option<usize>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
            d.deserialize_str(self)
        }
    }
    impl<'de> Visitor<'de> for Key<'_> {
        type Value = Option<usize>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a field name")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Option<usize>, E> {
            Ok(self.0.iter().position(|k| k == v))
        }
    }
    struct Record<'a>(&'a [String]);
    impl<'de> Visitor<'de> for Record<'_> {
        type Value = Stored;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a record object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Stored, A::Error> {
            let mut out = Stored::new();
            while let Some(wanted) = map.next_key_seed(Key(self.0))? {
                match wanted {
                    Some(i) => {
                        out.insert(self.0[i].clone(), map.next_value::<Value>()?);
                    }
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    de.deserialize_map(Record(keys)).map_err(|err| {
        RecordsError::Store(crate::store::StoreError::Internal(format!("record is unreadable: {err}")))
    })
}

/// Decodes stored bytes. Corrupt entries are reported, not skipped silently.
pub fn decode(bytes: &[u8]) -> Result<Stored, RecordsError> {
    serde_json::from_slice(bytes).map_err(|err| {
        RecordsError::Store(crate::store::StoreError::Internal(format!("record is unreadable: {err}")))
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    use super::{decode_keys, decode_keys_serde};

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            // Binary fractions: serde's float parsing is not round-trip exact in general.
            (-1_000_000i64..1_000_000).prop_map(|n| Value::from(n as f64 / 8.0)),
            "[a\"\\\\/{}\\[\\],: \\x00\\n\u{e9}\u{1F600}]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(("[ab\"]{1,2}", inner), 0..4)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<String, Value>>())),
            ]
        })
    }

    proptest! {
        #[test]
        fn the_fast_walk_equals_serde(
            record in prop::collection::vec(("[a-c]{1,2}|id|k\"q|k\\\\", json()), 0..8),
            wanted in prop::collection::vec("[a-c]{1,2}|id|k\"q|zz", 0..4),
            pretty in any::<bool>(),
        ) {
            let map: Map<String, Value> = record.into_iter().collect();
            let bytes = if pretty {
                serde_json::to_vec_pretty(&map).unwrap_or_default()
            } else {
                serde_json::to_vec(&map).unwrap_or_default()
            };
            let mut wanted = wanted;
            wanted.sort();
            wanted.dedup();
            let fast = decode_keys(&bytes, &wanted).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let slow = decode_keys_serde(&bytes, &wanted).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let expected: Map<String, Value> =
                map.iter().filter(|(k, _)| wanted.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
            let sorted = |m: &Map<String, Value>| {
                let mut v: Vec<(String, Value)> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                v.sort_by(|a, b| a.0.cmp(&b.0));
                v
            };
            prop_assert_eq!(sorted(&fast), sorted(&expected));
            prop_assert_eq!(sorted(&slow), sorted(&expected));
        }
    }

    #[test]
    fn malformed_bytes_are_errors_not_panics() {
        for bad in [&b""[..], b"{", b"{\"a\"", b"{\"a\":", b"{\"a\":1,", b"[1]", b"{\"a\":[1,}", b"{\"a\" 1}"]
        {
            assert!(
                decode_keys(bad, &["a".to_string(), "b".to_string()]).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}

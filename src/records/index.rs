//! Secondary indexes: PocketBase's `indexes` (`CREATE [UNIQUE] INDEX name ON coll (a, b)`),
//! kept in `Table::RecordIndex` in the same transaction as the records.
//!
//! An entry's key is `collection id` 0x00 `index name` 0x00, then each column's value in an
//! order-preserving encoding ([`encode_value`]), then the record id (15 bytes). Byte order
//! of keys is the order of the values (null < false < true < numbers < strings < arrays <
//! objects; numbers by value, strings by their UTF-8 bytes), which is the order
//! `list::compare_values` sorts by. Every encoded value is self-delimiting, so the encoded
//! values of the first columns are a key prefix finding exactly the records with those
//! values, and a range of encoded values is a range of keys. The planner in `records::plan`
//! uses that for equality, range and prefix predicates and for sort order.
//!
//! Files written before this encoding (schema version 1, canonical JSON values separated by
//! 0x00) are upgraded at open: the store drops the old entries and `Records::open` rebuilds
//! them (see [`REBUILD_FLAG`]).

use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

use super::collection::Collection;
use super::field::FieldKind;
use super::record::Stored;
use super::{FieldError, RecordsError};
use crate::store::{Table, WriteTx};

/// A parsed index definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexDef {
    pub name: String,
    pub unique: bool,
    pub columns: Vec<String>,
}

fn pattern() -> &'static Regex {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN.get_or_init(|| {
        Regex::new(
            r#"(?is)^\s*CREATE\s+(UNIQUE\s+)?INDEX\s+(?:IF\s+NOT\s+EXISTS\s+)?[`"\[]?(\w+)[`"\]]?\s+ON\s+[`"\[]?(\w+)[`"\]]?\s*\(([^)]*)\)\s*;?\s*$"#,
        )
        .expect("the index pattern is a valid regex")
    })
}

/// Parses one index definition of `collection`.
pub fn parse(sql: &str, collection: &Collection) -> Result<IndexDef, String> {
    let caps = pattern().captures(sql).ok_or_else(|| {
        "Expected CREATE [UNIQUE] INDEX name ON collection (field, ...); partial (WHERE) and expression indexes are not supported.".to_string()
    })?;
    let unique = caps.get(1).is_some();
    let name = caps.get(2).map(|m| m.as_str().to_string()).unwrap_or_default();
    let table = caps.get(3).map(|m| m.as_str()).unwrap_or_default();
    if !table.eq_ignore_ascii_case(&collection.name) {
        return Err(format!("The index is on {table:?}, not on {:?}.", collection.name));
    }
    let mut columns = Vec::new();
    for raw in caps.get(4).map(|m| m.as_str()).unwrap_or_default().split(',').filter(|c| !c.trim().is_empty())
    {
        let column = raw
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .trim_matches(|c| matches!(c, '`' | '"' | '[' | ']'))
            .to_string();
        let field =
            collection.field(&column).ok_or_else(|| format!("Unknown field {column:?} in index {name}."))?;
        if matches!(field.kind, FieldKind::Password(_)) {
            return Err(format!("Field {column:?} cannot be indexed."));
        }
        if columns.contains(&column) {
            return Err(format!("Field {column:?} appears twice in index {name}."));
        }
        columns.push(column);
    }
    if columns.is_empty() || columns.len() > 8 {
        return Err("An index needs 1 to 8 fields.".into());
    }
    Ok(IndexDef { name, unique, columns })
}

/// Parses every index of `collection`, as validation errors keyed `indexes.N`.
pub fn parse_all(collection: &Collection) -> Result<Vec<IndexDef>, Vec<(String, FieldError)>> {
    let mut defs: Vec<IndexDef> = Vec::new();
    let mut errors = Vec::new();
    for (i, sql) in collection.indexes.iter().enumerate() {
        match parse(sql, collection) {
            Ok(def) if defs.iter().any(|d| d.name.eq_ignore_ascii_case(&def.name)) => errors.push((
                format!("indexes.{i}"),
                FieldError::new(
                    "validation_duplicated_index",
                    format!("Duplicated index name {:?}.", def.name),
                ),
            )),
            Ok(def) => defs.push(def),
            Err(message) => {
                errors.push((format!("indexes.{i}"), FieldError::new("validation_invalid_index", message)))
            }
        }
    }
    if errors.is_empty() {
        Ok(defs)
    } else {
        Err(errors)
    }
}

/// Type tags of the key encoding, in sort order.
const TAG_NULL: u8 = 0x01;
const TAG_FALSE: u8 = 0x02;
const TAG_TRUE: u8 = 0x03;
const TAG_NUMBER: u8 = 0x04;
const TAG_STRING: u8 = 0x05;
const TAG_ARRAY: u8 = 0x06;
const TAG_OBJECT: u8 = 0x07;

/// The `Meta` key set while index entries must be rebuilt from the records (after an upgrade
/// from an older key encoding). `Records::open` rebuilds them and removes it.
pub const REBUILD_FLAG: &[u8] = crate::store::INDEX_REBUILD_FLAG;

/// Appends the bytes of `s` with 0x00 escaped as 0x00 0xFF, without a terminator, so that
/// the result is a byte prefix of the encoding of every string starting with `s`.
fn escape_into(out: &mut Vec<u8>, s: &[u8]) {
    for &b in s {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
}

/// The 8 bytes of `n` that sort like the number (negative zero is zero).
fn number_bytes(n: f64) -> [u8; 8] {
    let n = if n == 0.0 { 0.0 } else { n };
    let bits = n.to_bits();
    let ordered = if bits >> 63 == 1 { !bits } else { bits ^ (1 << 63) };
    ordered.to_be_bytes()
}

/// Appends the order-preserving, self-delimiting encoding of `value`.
pub fn encode_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.push(TAG_NULL),
        Value::Bool(false) => out.push(TAG_FALSE),
        Value::Bool(true) => out.push(TAG_TRUE),
        Value::Number(n) => {
            out.push(TAG_NUMBER);
            out.extend_from_slice(&number_bytes(n.as_f64().unwrap_or(0.0)));
        }
        Value::String(s) => {
            out.push(TAG_STRING);
            escape_into(out, s.as_bytes());
            out.extend_from_slice(&[0x00, 0x01]);
        }
        Value::Array(items) => {
            out.push(TAG_ARRAY);
            for item in items {
                encode_value(out, item);
            }
            out.push(0x00);
        }
        Value::Object(_) => {
            // Not ordered like `compare_values` (objects are never range- or sort-planned);
            // equal objects get equal bytes.
            out.push(TAG_OBJECT);
            escape_into(out, value.to_string().as_bytes());
            out.extend_from_slice(&[0x00, 0x01]);
        }
    }
}

/// The first key byte strings of a type (`number`/`string`) take, for ranges bounded only
/// on one side: `[start, end)` covers every value of that type and nothing else.
pub fn type_span(number: bool) -> (u8, u8) {
    if number {
        (TAG_NUMBER, TAG_STRING)
    } else {
        (TAG_STRING, TAG_ARRAY)
    }
}

/// The encoding of a string prefix: a byte prefix of the key of every string starting with
/// `prefix`.
pub fn encode_string_prefix(out: &mut Vec<u8>, prefix: &str) {
    out.push(TAG_STRING);
    escape_into(out, prefix.as_bytes());
}

/// The smallest byte string greater than every string starting with `prefix`, if any.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The unique index on exactly `column`, if there is one.
pub fn unique_on<'a>(defs: &'a [IndexDef], column: &str) -> Option<&'a IndexDef> {
    defs.iter().find(|d| d.unique && d.columns.len() == 1 && d.columns[0] == column)
}

/// `collection id` 0x00 `index name` 0x00: the prefix of every entry of one index.
pub fn index_prefix(collection_id: &str, index: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(64);
    key.extend_from_slice(collection_id.as_bytes());
    key.push(0);
    key.extend_from_slice(index.as_bytes());
    key.push(0);
    key
}

/// The key prefix of an index, followed by the encoded values of `values`.
pub fn prefix(collection_id: &str, index: &str, values: &[&Value]) -> Vec<u8> {
    let mut key = index_prefix(collection_id, index);
    for value in values {
        encode_value(&mut key, value);
    }
    key
}

/// The value a record has in an index column (the field's zero value when absent, as the
/// in-memory sort sees it).
pub fn column_value(collection: &Collection, record: &Stored, column: &str) -> Value {
    record
        .get(column)
        .cloned()
        .unwrap_or_else(|| collection.field(column).map(|f| f.zero_value()).unwrap_or(Value::Null))
}

/// The record id at the end of an entry key.
pub fn entry_id(key: &[u8]) -> Option<&str> {
    let start = key.len().checked_sub(crate::util::id::ID_LENGTH)?;
    std::str::from_utf8(&key[start..]).ok()
}

/// The entry key of one record in one index.
pub fn entry_key(collection: &Collection, def: &IndexDef, record: &Stored, id: &str) -> Vec<u8> {
    let mut key = index_prefix(&collection.id, &def.name);
    for column in &def.columns {
        encode_value(&mut key, &column_value(collection, record, column));
    }
    key.extend_from_slice(id.as_bytes());
    key
}

/// Brings the index entries of one record from `old` to `new` (either may be absent),
/// refusing a duplicate in a unique index.
pub fn sync(
    tx: &mut WriteTx<'_>,
    collection: &Collection,
    defs: &[IndexDef],
    id: &str,
    old: Option<&Stored>,
    new: Option<&Stored>,
) -> Result<(), RecordsError> {
    for def in defs {
        let old_key = old.map(|r| entry_key(collection, def, r, id));
        let new_key = new.map(|r| entry_key(collection, def, r, id));
        if old_key == new_key {
            continue;
        }
        if let Some(k) = &old_key {
            tx.delete(Table::RecordIndex, k);
        }
        if let Some(k) = new_key {
            if def.unique {
                let value_prefix = &k[..k.len() - id.len()];
                let taken = tx
                    .collect_prefix(Table::RecordIndex, value_prefix)?
                    .into_iter()
                    .any(|(other, _)| other != k);
                if taken {
                    let field = def.columns.first().cloned().unwrap_or_default();
                    return Err(RecordsError::field(
                        "Failed to save record.",
                        &field,
                        FieldError::new("validation_not_unique", "Value must be unique."),
                    ));
                }
            }
            tx.put(Table::RecordIndex, &k, vec![]);
        }
    }
    Ok(())
}

/// Drops every entry of `collection`'s indexes.
pub fn clear(tx: &mut WriteTx<'_>, collection_id: &str) -> Result<(), RecordsError> {
    let mut p = collection_id.as_bytes().to_vec();
    p.push(0);
    for (key, _) in tx.collect_prefix(Table::RecordIndex, &p)? {
        tx.delete(Table::RecordIndex, &key);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;
    use crate::records::list::compare_values;

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            (-1.0e6f64..1.0e6).prop_map(|n| json!(n)),
            prop::sample::select(vec![0.0f64, -0.0, 1.0, -1.0, 1.5]).prop_map(|n| json!(n)),
            "[a\\x00\\xffé\\u{1F600}]{0,4}".prop_map(Value::String),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![scalar(), prop::collection::vec(scalar(), 0..3).prop_map(Value::Array)]
    }

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_value(&mut out, v);
        out
    }

    proptest! {
        #[test]
        fn byte_order_is_value_order(a in value(), b in value()) {
            prop_assert_eq!(enc(&a).cmp(&enc(&b)), compare_values(&a, &b), "{} vs {}", a, b);
        }

        #[test]
        fn encodings_are_prefix_free(a in value(), b in value()) {
            // Self-delimiting: one value's encoding never extends another's.
            let (ea, eb) = (enc(&a), enc(&b));
            prop_assert!(ea == eb || !(eb.starts_with(&ea) || ea.starts_with(&eb)), "{} vs {}", a, b);
        }

        #[test]
        fn string_prefixes_are_key_prefixes(s in "[ab\\x00]{0,4}", rest in "[ab\\x00]{0,3}") {
            let mut p = Vec::new();
            encode_string_prefix(&mut p, &s);
            let whole = Value::String(format!("{s}{rest}"));
            prop_assert!(enc(&whole).starts_with(&p));
        }
    }

    #[test]
    fn integers_and_floats_of_the_same_value_encode_alike() {
        assert_eq!(enc(&json!(1)), enc(&json!(1.0)));
        assert_eq!(enc(&json!(0)), enc(&json!(-0.0)));
        assert!(enc(&json!(-2)) < enc(&json!(-1.5)));
        assert!(enc(&json!(true)) < enc(&json!(-1e300)));
        assert!(enc(&json!(1e300)) < enc(&json!("")));
    }
}

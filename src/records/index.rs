//! Secondary indexes: PocketBase's `indexes` (`CREATE [UNIQUE] INDEX name ON coll (a, b)`),
//! kept in `Table::RecordIndex` in the same transaction as the records.
//!
//! An entry's key is `collection id` 0x00 `index name` 0x00 then, per column, the canonical
//! JSON of the value followed by 0x00, then the record id. Canonical JSON never contains a
//! 0x00 byte, so a prefix made of the first columns' values finds exactly the records with
//! those values. Entries serve uniqueness and equality lookups; range predicates and sort
//! order still scan (values are not order-encoded yet).

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

/// The key prefix of an index, followed by the encoded values of `values`.
pub fn prefix(collection_id: &str, index: &str, values: &[&Value]) -> Vec<u8> {
    let mut key = Vec::with_capacity(64);
    key.extend_from_slice(collection_id.as_bytes());
    key.push(0);
    key.extend_from_slice(index.as_bytes());
    key.push(0);
    for value in values {
        key.extend_from_slice(serde_json::to_string(value).unwrap_or_default().as_bytes());
        key.push(0);
    }
    key
}

fn entry_key(collection: &Collection, def: &IndexDef, record: &Stored, id: &str) -> Vec<u8> {
    let values: Vec<Value> = def
        .columns
        .iter()
        .map(|c| {
            record
                .get(c)
                .cloned()
                .unwrap_or_else(|| collection.field(c).map(|f| f.zero_value()).unwrap_or(Value::Null))
        })
        .collect();
    let refs: Vec<&Value> = values.iter().collect();
    let mut key = prefix(&collection.id, &def.name, &refs);
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

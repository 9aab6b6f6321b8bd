//! Schema changes on collections that already hold records.
//!
//! A change either rewrites every record in the same transaction as the new definition
//! (removed fields dropped, renamed fields moved, changed fields re-normalized, e.g. a
//! single select becoming a multiple one) or is refused with a 409 naming the first record
//! that does not fit. Nothing is ever half-migrated: it all happens in one write.

use std::collections::HashMap;

use serde_json::Value;

use super::collection::Collection;
use super::field::{relation_ids, Field, FieldKind};
use super::record::{decode, Stored};
use super::stats::CollectionStats;
use super::write::ref_key;
use super::{collection_prefix, RecordsError};
use crate::store::{Table, WriteTx};

/// The definition parts that affect stored values.
fn storage_shape(field: &Field) -> Value {
    let mut v = serde_json::to_value(field).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.remove("hidden");
        map.remove("presentable");
    }
    v
}

/// Applies the record side of a schema change from `old` to `new`. Returns how many
/// records were rewritten.
pub fn migrate(tx: &mut WriteTx<'_>, old: &Collection, new: &Collection) -> Result<u64, RecordsError> {
    let stats = CollectionStats::load(tx, &old.id)?;
    if stats.count == 0 {
        return Ok(0);
    }
    let old_by_id: HashMap<&str, &Field> = old.fields.iter().map(|f| (f.id.as_str(), f)).collect();
    for field in &new.fields {
        if let Some(previous) = old_by_id.get(field.id.as_str()) {
            if let (FieldKind::Relation(a), FieldKind::Relation(b)) = (&previous.kind, &field.kind) {
                if a.collection_id != b.collection_id {
                    return Err(RecordsError::Conflict(format!(
                        "Relation field {:?} cannot point to another collection while the collection has {} record(s); add a new field instead.",
                        field.name, stats.count
                    )));
                }
            }
            if previous.type_name() != field.type_name() {
                return Err(RecordsError::Conflict(format!(
                    "Field {:?} cannot change type from {} to {} while the collection has {} record(s); add a new field instead.",
                    field.name,
                    previous.type_name(),
                    field.type_name(),
                    stats.count
                )));
            }
        }
    }
    let removed: Vec<&Field> =
        old.fields.iter().filter(|o| !new.fields.iter().any(|n| n.id == o.id)).collect();
    // Fields whose stored values must be recomputed: new ones and changed ones.
    let changed: Vec<(&Field, Option<&Field>)> = new
        .fields
        .iter()
        .filter_map(|n| match old_by_id.get(n.id.as_str()) {
            None => Some((n, None)),
            Some(o) if storage_shape(o) != storage_shape(n) => Some((n, Some(*o))),
            Some(_) => None,
        })
        .collect();
    if removed.is_empty() && changed.is_empty() {
        return Ok(0);
    }
    let prefix = collection_prefix(&old.id);
    let mut rewritten = 0u64;
    for (key, bytes) in tx.collect_prefix(Table::Records, &prefix)? {
        let current = decode(&bytes)?;
        let mut next: Stored = current.clone();
        let record_id = current.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
        for field in &removed {
            if let FieldKind::Relation(o) = &field.kind {
                for id in relation_ids(current.get(&field.name)) {
                    tx.delete(
                        Table::RecordRefs,
                        &ref_key(&o.collection_id, &id, &old.id, &record_id, &field.id),
                    );
                }
            }
            next.remove(&field.name);
        }
        for (field, previous) in &changed {
            let old_value = previous.and_then(|p| current.get(&p.name)).cloned().unwrap_or(Value::Null);
            if let Some(p) = previous {
                if p.name != field.name {
                    next.remove(&p.name);
                }
            }
            let keeps_raw = matches!(field.kind, FieldKind::Autodate(_) | FieldKind::Password(_))
                || field.is_server_managed()
                || field.name == "id";
            let value = if keeps_raw {
                old_value
            } else {
                field.normalize(&old_value).map_err(|err| {
                    let id = current.get("id").and_then(Value::as_str).unwrap_or("?");
                    let action = if previous.is_some() { "changed" } else { "new" };
                    RecordsError::Conflict(format!(
                        "Existing records do not fit the {action} field {:?}: record {id}: {} Change the records first or relax the field.",
                        field.name, err.message
                    ))
                })?
            };
            next.insert(field.name.clone(), value);
        }
        if next != current {
            let bytes = serde_json::to_vec(&next)
                .map_err(|e| RecordsError::Internal(format!("cannot encode record: {e}")))?;
            tx.put(Table::Records, &key, bytes);
            rewritten += 1;
        }
    }
    Ok(rewritten)
}

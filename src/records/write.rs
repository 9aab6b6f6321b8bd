//! The writer-side halves of record writes: what runs inside the group-commit transaction
//! once a record has been validated. Shared by single writes and `/api/batch`.

use std::collections::HashSet;

use super::catalog::{Catalog, CatalogEntry};
use super::collection::{Collection, SUPERUSERS_ID};
use super::field::{relation_ids, FieldKind};
use super::files::sync_files;
use super::filter::{Env, Filter, Now, RequestInfo};
use super::hooks::{Action, Hooks, RecordChange};
use super::record::{decode, identity_of, Prepared, Stored};
use super::stats::CollectionStats;
use super::{collection_prefix, index, record_key, FieldError, RecordsError};
use crate::store::{Table, WriteTx};

pub(crate) fn identity_key(collection_id: &str, email_lower: &str) -> Vec<u8> {
    let mut key = collection_prefix(collection_id);
    key.extend_from_slice(email_lower.as_bytes());
    key
}

pub(crate) fn not_found() -> RecordsError {
    RecordsError::NotFound("The requested resource wasn't found.".into())
}

pub(crate) fn not_unique(field: &str) -> RecordsError {
    RecordsError::field(
        "Failed to save record.",
        field,
        FieldError::new("validation_not_unique", "Value must be unique."),
    )
}

/// Key of a relation reference in `Table::RecordRefs`.
pub(crate) fn ref_key(
    target_collection: &str,
    target_id: &str,
    source_collection: &str,
    source_id: &str,
    field_id: &str,
) -> Vec<u8> {
    let mut key = ref_prefix(target_collection, target_id);
    for part in [source_collection, source_id, field_id] {
        key.extend_from_slice(part.as_bytes());
        key.push(0);
    }
    key.pop();
    key
}

/// Prefix of every reference pointing at one record.
pub(crate) fn ref_prefix(target_collection: &str, target_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(64);
    key.extend_from_slice(target_collection.as_bytes());
    key.push(0);
    key.extend_from_slice(target_id.as_bytes());
    key.push(0);
    key
}

/// A reference read back from its key: (source collection id, source record id, field id).
pub(crate) fn parse_ref(key: &[u8], prefix_len: usize) -> Option<(String, String, String)> {
    let rest = std::str::from_utf8(key.get(prefix_len..)?).ok()?;
    let mut parts = rest.split('\0');
    Some((parts.next()?.to_string(), parts.next()?.to_string(), parts.next()?.to_string()))
}

/// Brings the references of `record_id`'s relation fields from `old` to `new`, checking
/// that every newly referenced record exists.
fn sync_refs(
    tx: &mut WriteTx<'_>,
    collection: &Collection,
    record_id: &str,
    old: Option<&Stored>,
    new: Option<&Stored>,
) -> Result<(), RecordsError> {
    for field in &collection.fields {
        let FieldKind::Relation(options) = &field.kind else {
            continue;
        };
        let before: HashSet<String> =
            relation_ids(old.and_then(|o| o.get(&field.name))).into_iter().collect();
        let after: HashSet<String> = relation_ids(new.and_then(|n| n.get(&field.name))).into_iter().collect();
        for id in after.difference(&before) {
            if tx.get(Table::Records, &record_key(&options.collection_id, id))?.is_none() {
                return Err(RecordsError::field(
                    "Failed to save record.",
                    &field.name,
                    FieldError::new(
                        "validation_missing_rel_records",
                        format!("Failed to find all relation records with the provided ids ({id})."),
                    ),
                ));
            }
            tx.put(
                Table::RecordRefs,
                &ref_key(&options.collection_id, id, &collection.id, record_id, &field.id),
                vec![],
            );
        }
        for id in before.difference(&after) {
            tx.delete(
                Table::RecordRefs,
                &ref_key(&options.collection_id, id, &collection.id, record_id, &field.id),
            );
        }
    }
    Ok(())
}

/// Checks that the record was validated against the current schema; returns the counters.
pub(crate) fn check_generation(
    tx: &WriteTx<'_>,
    entry: &CatalogEntry,
) -> Result<CollectionStats, RecordsError> {
    let stats = CollectionStats::load(tx, &entry.collection.id)?;
    if tx.get(Table::Collections, entry.collection.id.as_bytes())?.is_none() {
        return Err(not_found());
    }
    if stats.schema_generation != entry.schema_generation {
        return Err(RecordsError::Conflict(
            "The collection's schema changed while the record was being saved; retry.".into(),
        ));
    }
    Ok(stats)
}

/// Stages a new record (`bytes` is its encoded stored form).
pub(crate) fn apply_create(
    tx: &mut WriteTx<'_>,
    hooks: &Hooks,
    entry: &CatalogEntry,
    prepared: &Prepared,
    bytes: Vec<u8>,
) -> Result<(), RecordsError> {
    let mut stats = check_generation(tx, entry)?;
    let key = record_key(&entry.collection.id, &prepared.id);
    if tx.get(Table::Records, &key)?.is_some() {
        return Err(not_unique("id"));
    }
    if entry.collection.is_auth() {
        if let Some(email) = identity_of(&prepared.stored) {
            let ikey = identity_key(&entry.collection.id, &email);
            if tx.get(Table::AuthIdentities, &ikey)?.is_some() {
                return Err(not_unique("email"));
            }
            tx.put(Table::AuthIdentities, &ikey, prepared.id.as_bytes().to_vec());
        }
    }
    sync_refs(tx, &entry.collection, &prepared.id, None, Some(&prepared.stored))?;
    sync_files(
        tx,
        &hooks.files,
        &entry.collection,
        &prepared.id,
        None,
        Some(&prepared.stored),
        &prepared.uploads,
    )?;
    index::sync(tx, &entry.collection, &entry.indexes, &prepared.id, None, Some(&prepared.stored))?;
    tx.put(Table::Records, &key, bytes);
    let change = RecordChange { action: Action::Create, record_id: &prepared.id, stored: &prepared.stored };
    hooks.record_changed(tx, &entry.collection, change)?;
    stats.count += 1;
    if prepared.custom_id {
        stats.custom_ids += 1;
    }
    stats.save(tx, &entry.collection.id);
    Ok(())
}

/// Stages an update of `current` to `prepared`.
pub(crate) fn apply_update(
    tx: &mut WriteTx<'_>,
    hooks: &Hooks,
    entry: &CatalogEntry,
    current: &Stored,
    prepared: &Prepared,
    bytes: Vec<u8>,
) -> Result<(), RecordsError> {
    check_generation(tx, entry)?;
    let key = record_key(&entry.collection.id, &prepared.id);
    if entry.collection.is_auth() {
        let (old, new) = (identity_of(current), identity_of(&prepared.stored));
        if old != new {
            if let Some(email) = &new {
                let ikey = identity_key(&entry.collection.id, email);
                if tx.get(Table::AuthIdentities, &ikey)?.is_some() {
                    return Err(not_unique("email"));
                }
                tx.put(Table::AuthIdentities, &ikey, prepared.id.as_bytes().to_vec());
            }
            if let Some(email) = &old {
                tx.delete(Table::AuthIdentities, &identity_key(&entry.collection.id, email));
            }
        }
    }
    sync_refs(tx, &entry.collection, &prepared.id, Some(current), Some(&prepared.stored))?;
    sync_files(
        tx,
        &hooks.files,
        &entry.collection,
        &prepared.id,
        Some(current),
        Some(&prepared.stored),
        &prepared.uploads,
    )?;
    index::sync(tx, &entry.collection, &entry.indexes, &prepared.id, Some(current), Some(&prepared.stored))?;
    tx.put(Table::Records, &key, bytes);
    let change = RecordChange { action: Action::Update, record_id: &prepared.id, stored: &prepared.stored };
    hooks.record_changed(tx, &entry.collection, change)?;
    Ok(())
}

/// Stages the deletion of a record, if the delete rule (when given) lets the caller see it.
/// Records pointing at it through a `cascadeDelete` relation are deleted too (recursively);
/// any other reference refuses the delete with a 400 naming the referencing collection.
pub(crate) fn apply_delete(
    tx: &mut WriteTx<'_>,
    hooks: &Hooks,
    catalog: &Catalog,
    entry: &CatalogEntry,
    record_id: &str,
    rule: Option<&Filter>,
    request: &RequestInfo,
) -> Result<(), RecordsError> {
    let key = record_key(&entry.collection.id, record_id);
    let bytes = tx.get(Table::Records, &key)?.ok_or_else(not_found)?;
    let stored = decode(&bytes)?;
    if let Some(rule) = rule {
        let env = Env { catalog, source: &*tx };
        if !rule.matches(&entry.collection, &stored, request, &Now::current(), Some(&env)) {
            return Err(not_found());
        }
    }
    let mut visited = HashSet::new();
    delete_cascading(tx, hooks, catalog, entry, record_id, stored, &mut visited)
}

fn delete_cascading(
    tx: &mut WriteTx<'_>,
    hooks: &Hooks,
    catalog: &Catalog,
    entry: &CatalogEntry,
    record_id: &str,
    stored: Stored,
    visited: &mut HashSet<(String, String)>,
) -> Result<(), RecordsError> {
    let collection = &entry.collection;
    if !visited.insert((collection.id.clone(), record_id.to_string())) {
        return Ok(());
    }
    let mut stats = CollectionStats::load(tx, &collection.id)?;
    if collection.id == SUPERUSERS_ID && stats.count <= 1 {
        return Err(RecordsError::Conflict("The only superuser cannot be deleted.".into()));
    }
    // Who points at this record?
    let prefix = ref_prefix(&collection.id, record_id);
    for (ref_key_bytes, _) in tx.collect_prefix(Table::RecordRefs, &prefix)? {
        let Some((source_collection, source_id, field_id)) = parse_ref(&ref_key_bytes, prefix.len()) else {
            continue;
        };
        tx.delete(Table::RecordRefs, &ref_key_bytes);
        if source_collection == collection.id && source_id == record_id {
            continue;
        }
        let Some(source) = catalog.get(&source_collection) else {
            continue;
        };
        let field = source.collection.fields.iter().find(|f| f.id == field_id);
        let cascade = matches!(field.map(|f| &f.kind), Some(FieldKind::Relation(o)) if o.cascade_delete);
        if !cascade {
            let field_name = field.map(|f| f.name.as_str()).unwrap_or("?");
            return Err(RecordsError::BadRequest(format!(
                "The record is referenced by {}.{field_name} (record {source_id}); change or delete those records first, or set cascadeDelete on that field.",
                source.collection.name
            )));
        }
        let source_key = record_key(&source.collection.id, &source_id);
        if let Some(source_bytes) = tx.get(Table::Records, &source_key)? {
            let source_stored = decode(&source_bytes)?;
            delete_cascading(tx, hooks, catalog, source, &source_id, source_stored, visited)?;
        }
    }
    // Drop this record's own outgoing references and index entries.
    sync_refs(tx, collection, record_id, Some(&stored), None)?;
    sync_files(tx, &hooks.files, collection, record_id, Some(&stored), None, &[])?;
    index::sync(tx, collection, &entry.indexes, record_id, Some(&stored), None)?;
    if collection.is_auth() {
        if let Some(email) = identity_of(&stored) {
            tx.delete(Table::AuthIdentities, &identity_key(&collection.id, &email));
        }
    }
    tx.delete(Table::Records, &record_key(&collection.id, record_id));
    hooks.record_changed(
        tx,
        collection,
        RecordChange { action: Action::Delete, record_id, stored: &stored },
    )?;
    stats = CollectionStats::load(tx, &collection.id).unwrap_or(stats);
    stats.count = stats.count.saturating_sub(1);
    stats.save(tx, &collection.id);
    Ok(())
}

//! The writer-side halves of record writes: what runs inside the group-commit transaction
//! once a record has been validated. Shared by single writes and `/api/batch`.

use super::catalog::CatalogEntry;
use super::collection::SUPERUSERS_ID;
use super::filter::{Filter, Now, RequestInfo};
use super::record::{decode, identity_of, Prepared, Stored};
use super::stats::CollectionStats;
use super::{collection_prefix, record_key, FieldError, RecordsError};
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
    tx.put(Table::Records, &key, bytes);
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
    tx.put(Table::Records, &key, bytes);
    Ok(())
}

/// Stages the deletion of a record, if the delete rule (when given) lets the caller see it.
pub(crate) fn apply_delete(
    tx: &mut WriteTx<'_>,
    entry: &CatalogEntry,
    record_id: &str,
    rule: Option<&Filter>,
    request: &RequestInfo,
) -> Result<(), RecordsError> {
    let key = record_key(&entry.collection.id, record_id);
    let mut stats = CollectionStats::load(tx, &entry.collection.id)?;
    let bytes = tx.get(Table::Records, &key)?.ok_or_else(not_found)?;
    let stored = decode(&bytes)?;
    if let Some(rule) = rule {
        if !rule.matches(&entry.collection, &stored, request, &Now::current()) {
            return Err(not_found());
        }
    }
    if entry.collection.id == SUPERUSERS_ID && stats.count <= 1 {
        return Err(RecordsError::Conflict("The only superuser cannot be deleted.".into()));
    }
    if entry.collection.is_auth() {
        if let Some(email) = identity_of(&stored) {
            tx.delete(Table::AuthIdentities, &identity_key(&entry.collection.id, &email));
        }
    }
    tx.delete(Table::Records, &key);
    stats.count = stats.count.saturating_sub(1);
    stats.save(tx, &entry.collection.id);
    Ok(())
}

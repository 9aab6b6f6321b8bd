//! The search outbox: changes the index must catch up with, written in the same write
//! transaction as the change itself, so the index can never miss one.
//!
//! Each entry gets the next sequence number (`Meta` key `search_outbox_seq`); its key in
//! `Table::SearchOutbox` is that number as u64 big-endian, so key order is sequence order.
//! An entry names *what* changed, never the new content: the indexer reads the current state
//! when it applies the entry, which makes applying an entry twice harmless.

use crate::records::catalog::Catalog;
use crate::records::collection::Collection;
use crate::records::field::FieldKind;
use crate::records::hooks::{ChangeHooks, RecordChange};
use crate::store::{ReadTx, ScanControl, StoreError, Table, WriteTx};

/// The `Meta` key holding the last sequence number handed out.
pub const META_OUTBOX_SEQ: &[u8] = b"search_outbox_seq";

/// One change to bring into the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The record was created, updated or deleted: index its current state (or drop it).
    Record { collection_id: String, record_id: String },
    /// The collection was deleted, or its schema or search settings changed: its documents
    /// must be rebuilt from the data (by a `search.reindex` job).
    Collection { collection_id: String },
}

impl Change {
    fn encode(&self) -> Vec<u8> {
        match self {
            Change::Record { collection_id, record_id } => {
                let mut v = Vec::with_capacity(2 + collection_id.len() + record_id.len());
                v.push(b'r');
                v.extend_from_slice(collection_id.as_bytes());
                v.push(0);
                v.extend_from_slice(record_id.as_bytes());
                v
            }
            Change::Collection { collection_id } => {
                let mut v = Vec::with_capacity(1 + collection_id.len());
                v.push(b'c');
                v.extend_from_slice(collection_id.as_bytes());
                v
            }
        }
    }

    fn decode(bytes: &[u8]) -> Option<Change> {
        let (&tag, rest) = bytes.split_first()?;
        let text = std::str::from_utf8(rest).ok()?;
        match tag {
            b'r' => {
                let (collection_id, record_id) = text.split_once('\0')?;
                Some(Change::Record { collection_id: collection_id.into(), record_id: record_id.into() })
            }
            b'c' => Some(Change::Collection { collection_id: text.into() }),
            _ => None,
        }
    }
}

fn read_seq(bytes: Option<Vec<u8>>) -> u64 {
    bytes.and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok()).map(u64::from_be_bytes).unwrap_or(0)
}

/// Appends `change` to the outbox inside the caller's write; returns its sequence number.
pub fn push(tx: &mut WriteTx<'_>, change: &Change) -> Result<u64, StoreError> {
    let seq = read_seq(tx.get(Table::Meta, META_OUTBOX_SEQ)?) + 1;
    tx.put(Table::Meta, META_OUTBOX_SEQ, seq.to_be_bytes().to_vec());
    tx.put(Table::SearchOutbox, &seq.to_be_bytes(), change.encode());
    Ok(seq)
}

/// Records that a record changed.
pub fn record_changed(tx: &mut WriteTx<'_>, collection_id: &str, record_id: &str) -> Result<u64, StoreError> {
    push(tx, &Change::Record { collection_id: collection_id.into(), record_id: record_id.into() })
}

/// Records that a whole collection must be re-read (deleted, or its schema changed).
pub fn collection_changed(tx: &mut WriteTx<'_>, collection_id: &str) -> Result<u64, StoreError> {
    push(tx, &Change::Collection { collection_id: collection_id.into() })
}

/// The last sequence number handed out (0 before the first change).
pub fn last_seq(tx: &ReadTx) -> Result<u64, StoreError> {
    Ok(read_seq(tx.get(Table::Meta, META_OUTBOX_SEQ)?))
}

/// Up to `limit` entries with a sequence number above `after`, in order. Entries that do
/// not decode (written by a newer build) are skipped with a warning.
pub fn read_after(tx: &ReadTx, after: u64, limit: usize) -> Result<Vec<(u64, Change)>, StoreError> {
    let mut out = Vec::new();
    let start = after.saturating_add(1).to_be_bytes();
    tx.scan_range(
        Table::SearchOutbox,
        std::ops::Bound::Included(start.to_vec()),
        std::ops::Bound::Unbounded,
        false,
        |key, value| {
            let seq = read_seq(Some(key.to_vec()));
            match Change::decode(value) {
                Some(change) => out.push((seq, change)),
                None => tracing::warn!(seq, "unreadable search outbox entry skipped"),
            }
            if out.len() >= limit {
                ScanControl::Stop
            } else {
                ScanControl::Continue
            }
        },
    )?;
    Ok(out)
}

/// Deletes up to `limit` entries with a sequence number up to `upto` (they are in the
/// index); returns how many were deleted.
pub fn prune(tx: &mut WriteTx<'_>, upto: u64, limit: usize) -> Result<usize, StoreError> {
    let mut deleted = 0;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let mut keys = Vec::new();
        tx.scan_prefix(Table::SearchOutbox, b"", after.as_deref(), |key, _| {
            if read_seq(Some(key.to_vec())) > upto || keys.len() >= 256 {
                return ScanControl::Stop;
            }
            keys.push(key.to_vec());
            ScanControl::Continue
        })?;
        if keys.is_empty() {
            return Ok(deleted);
        }
        after = keys.last().cloned();
        for key in keys {
            tx.delete(Table::SearchOutbox, &key);
            deleted += 1;
            if deleted >= limit {
                return Ok(deleted);
            }
        }
    }
}

/// Keeps the outbox in step with every change to a searched collection (given to
/// `Records::open`, so no write path can skip it).
#[derive(Debug, Default)]
pub struct OutboxHooks;

impl ChangeHooks for OutboxHooks {
    fn record_changed(
        &self,
        tx: &mut WriteTx<'_>,
        collection: &Collection,
        change: RecordChange<'_>,
    ) -> Result<(), StoreError> {
        if collection.search.enabled {
            record_changed(tx, &collection.id, change.record_id)?;
        }
        Ok(())
    }

    fn collection_updated(
        &self,
        tx: &mut WriteTx<'_>,
        catalog: &Catalog,
        before: &Collection,
        after: &Collection,
    ) -> Result<(), StoreError> {
        let searched = before.search.enabled || after.search.enabled;
        if searched && (before.fields_differ(after) || before.search != after.search) {
            // The index is rebuilt from the migrated records by a reindex job.
            collection_changed(tx, &after.id)?;
        }
        // Searched collections index the text of related records only while the target's
        // view rule is public: when it changes, their documents are rebuilt.
        if before.view_rule != after.view_rule {
            let indexes_relation_to = |c: &Collection| {
                c.search.fields.iter().any(|w| {
                    matches!(c.field(&w.name).map(|f| &f.kind),
                        Some(FieldKind::Relation(o)) if o.collection_id == after.id)
                })
            };
            for related in catalog.all().map(|e| &e.collection) {
                if related.search.enabled && related.id != after.id && indexes_relation_to(related) {
                    collection_changed(tx, &related.id)?;
                }
            }
        }
        Ok(())
    }

    fn collection_deleted(&self, tx: &mut WriteTx<'_>, collection: &Collection) -> Result<(), StoreError> {
        if collection.search.enabled {
            collection_changed(tx, &collection.id)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Change;

    #[test]
    fn changes_round_trip_through_their_encoding() {
        for change in [
            Change::Record { collection_id: "pbc_1".into(), record_id: "abc".into() },
            Change::Collection { collection_id: "pbc_2".into() },
        ] {
            assert_eq!(Change::decode(&change.encode()), Some(change));
        }
        assert_eq!(Change::decode(b"x"), None);
    }
}

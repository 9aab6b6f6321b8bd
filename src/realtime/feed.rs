//! The change feed: every committed record change, numbered, written in the transaction of
//! the change itself (a [`ChangeHooks`] given to `Records::open`), so it can never miss a
//! change nor hold one that did not commit.
//!
//! Each entry gets the next sequence number (`Meta` key `change_feed_seq`); its key in
//! `Table::ChangeFeed` is that number as u64 big-endian, so key order is commit order. The
//! value holds the record as the change left it (as it was, for a delete), without the
//! values no response ever shows (password hashes, token keys): realtime renders events from
//! it, and a client that reconnects reads what it missed from here. Entries are pruned by
//! age and count ([`prune`]); `change_feed_pruned` remembers the newest pruned sequence, so
//! a resume from before it is known to have a gap.

use std::ops::Bound;

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::records::catalog::Catalog;
use crate::records::collection::Collection;
use crate::records::hooks::{Action, ChangeHooks, RecordChange};
use crate::records::record::Stored;
use crate::store::{ReadTx, ScanControl, StoreError, Table, WriteTx};

/// The `Meta` key holding the last sequence number handed out.
pub const META_FEED_SEQ: &[u8] = b"change_feed_seq";
/// The `Meta` key holding the newest sequence number pruned (0: none).
pub const META_FEED_PRUNED: &[u8] = b"change_feed_pruned";

/// One committed record change.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub seq: u64,
    /// Commit time, ms since 1970.
    pub time_ms: i64,
    pub action: Action,
    pub collection_id: String,
    pub record_id: String,
    /// The stored values (JSON object), decoded only for entries someone is subscribed to.
    pub record: Vec<u8>,
}

impl Entry {
    /// The record's stored values.
    pub fn stored(&self) -> Result<Stored, StoreError> {
        serde_json::from_slice(&self.record).map_err(|err| {
            StoreError::Internal(format!("change feed entry {} is unreadable: {err}", self.seq))
        })
    }
}

fn action_code(action: Action) -> u8 {
    match action {
        Action::Create => b'c',
        Action::Update => b'u',
        Action::Delete => b'd',
    }
}

fn action_of(code: u8) -> Option<Action> {
    match code {
        b'c' => Some(Action::Create),
        b'u' => Some(Action::Update),
        b'd' => Some(Action::Delete),
        _ => None,
    }
}

/// The stored values minus those never returned, serialized without copying the record.
struct Shown<'a> {
    collection: &'a Collection,
    stored: &'a Stored,
}

impl Serialize for Shown<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Hidden fields stay: access rules may read them. Secrets never do.
        let hidden = |name: &str| self.collection.fields.iter().any(|f| f.name == name && f.is_secret());
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in self.stored {
            if !hidden(key) {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

/// Encoding: time (i64 BE), action (u8), collection id length (u16 BE), collection id,
/// record id length (u16 BE), record id, the stored values (JSON).
fn encode(time_ms: i64, collection: &Collection, change: &RecordChange<'_>) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(64 + collection.id.len() + change.record_id.len());
    out.extend_from_slice(&time_ms.to_be_bytes());
    out.push(action_code(change.action));
    for part in [collection.id.as_str(), change.record_id] {
        let len = u16::try_from(part.len())
            .map_err(|_| StoreError::Internal("an id longer than 65535 bytes".into()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    serde_json::to_writer(&mut out, &Shown { collection, stored: change.stored })
        .map_err(|err| StoreError::Internal(format!("cannot encode a change: {err}")))?;
    Ok(out)
}

fn decode(seq: u64, bytes: &[u8]) -> Option<Entry> {
    let time_ms = i64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
    let action = action_of(*bytes.get(8)?)?;
    let mut rest = bytes.get(9..)?;
    let mut parts = Vec::with_capacity(2);
    for _ in 0..2 {
        let len = usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
        parts.push(std::str::from_utf8(rest.get(2..2 + len)?).ok()?.to_string());
        rest = rest.get(2 + len..)?;
    }
    let record_id = parts.pop()?;
    let collection_id = parts.pop()?;
    Some(Entry { seq, time_ms, action, collection_id, record_id, record: rest.to_vec() })
}

fn read_u64(bytes: Option<Vec<u8>>) -> u64 {
    bytes.and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok()).map(u64::from_be_bytes).unwrap_or(0)
}

/// Appends a change to the feed inside the caller's write; returns its sequence number.
pub fn push(
    tx: &mut WriteTx<'_>,
    collection: &Collection,
    change: &RecordChange<'_>,
) -> Result<u64, StoreError> {
    let seq = read_u64(tx.get(Table::Meta, META_FEED_SEQ)?) + 1;
    let value = encode(chrono::Utc::now().timestamp_millis(), collection, change)?;
    tx.put(Table::Meta, META_FEED_SEQ, seq.to_be_bytes().to_vec());
    tx.put(Table::ChangeFeed, &seq.to_be_bytes(), value);
    Ok(seq)
}

/// The last sequence number handed out (0 before the first change).
pub fn last_seq(tx: &ReadTx) -> Result<u64, StoreError> {
    Ok(read_u64(tx.get(Table::Meta, META_FEED_SEQ)?))
}

/// The newest sequence number pruned (0 when nothing was).
pub fn pruned_through(tx: &ReadTx) -> Result<u64, StoreError> {
    Ok(read_u64(tx.get(Table::Meta, META_FEED_PRUNED)?))
}

/// Up to `limit` entries with a sequence number in `(after, upto]`, in order. Entries that
/// do not decode (written by a newer build) are skipped with a warning.
pub fn read_range(tx: &ReadTx, after: u64, upto: u64, limit: usize) -> Result<Vec<Entry>, StoreError> {
    let mut out = Vec::new();
    if upto <= after {
        return Ok(out);
    }
    tx.scan_range(
        Table::ChangeFeed,
        Bound::Excluded(after.to_be_bytes().to_vec()),
        Bound::Included(upto.to_be_bytes().to_vec()),
        false,
        |key, value| {
            let seq = read_u64(Some(key.to_vec()));
            match decode(seq, value) {
                Some(entry) => out.push(entry),
                None => tracing::warn!(seq, "unreadable change feed entry skipped"),
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

/// Whether [`prune`] would delete anything now: the oldest entry is older than
/// `older_than_ms` or not among the newest `keep`. Lets the pruner skip its write (an idle
/// server, or a full disk, sees no periodic commits from it).
pub fn prune_due(tx: &ReadTx, older_than_ms: i64, keep: u64) -> Result<bool, StoreError> {
    let head = last_seq(tx)?;
    let keep_from = head.saturating_sub(keep);
    let mut due = false;
    tx.scan_prefix(Table::ChangeFeed, b"", false, None, |key, value| {
        let seq = read_u64(Some(key.to_vec()));
        let time_ms = value.get(..8).and_then(|b| b.try_into().ok()).map(i64::from_be_bytes).unwrap_or(0);
        due = seq <= keep_from || time_ms < older_than_ms;
        ScanControl::Stop
    })?;
    Ok(due)
}

/// Deletes up to `limit` of the oldest entries that are older than `older_than_ms` or not
/// among the newest `keep` sequence numbers; returns how many were deleted.
pub fn prune(tx: &mut WriteTx<'_>, older_than_ms: i64, keep: u64, limit: usize) -> Result<usize, StoreError> {
    let head = read_u64(tx.get(Table::Meta, META_FEED_SEQ)?);
    let keep_from = head.saturating_sub(keep);
    let mut doomed = Vec::new();
    let mut newest = 0;
    tx.scan_prefix(Table::ChangeFeed, b"", None, |key, value| {
        let seq = read_u64(Some(key.to_vec()));
        let time_ms = value.get(..8).and_then(|b| b.try_into().ok()).map(i64::from_be_bytes).unwrap_or(0);
        if doomed.len() >= limit || (seq > keep_from && time_ms >= older_than_ms) {
            return ScanControl::Stop;
        }
        doomed.push(key.to_vec());
        newest = seq;
        ScanControl::Continue
    })?;
    for key in &doomed {
        tx.delete(Table::ChangeFeed, key);
    }
    if newest > 0 {
        tx.put(Table::Meta, META_FEED_PRUNED, newest.to_be_bytes().to_vec());
    }
    Ok(doomed.len())
}

/// Writes every record change into the feed (given to `Records::open`, so no write path can
/// skip it). Schema changes and collection deletes send no events, as in PocketBase.
#[derive(Debug, Default)]
pub struct FeedHooks;

impl ChangeHooks for FeedHooks {
    fn record_changed(
        &self,
        tx: &mut WriteTx<'_>,
        collection: &Collection,
        change: RecordChange<'_>,
    ) -> Result<(), StoreError> {
        push(tx, collection, &change).map(|_| ())
    }

    fn collection_updated(
        &self,
        _tx: &mut WriteTx<'_>,
        _catalog: &Catalog,
        _before: &Collection,
        _after: &Collection,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    fn collection_deleted(&self, _tx: &mut WriteTx<'_>, _collection: &Collection) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::collection::{self, CollectionInput};

    #[test]
    fn entries_decode_to_what_was_encoded() {
        let input = CollectionInput::parse(serde_json::json!({
            "name": "posts",
            "fields": [{"name": "title", "type": "text"}]
        }))
        .expect("input");
        let collection =
            collection::build(input, None, "pbc_posts".into(), "2024-01-01 00:00:00.000Z", &|_| None)
                .expect("collection");
        let stored: Stored =
            serde_json::from_value(serde_json::json!({"id": "r1", "title": "héllo"})).expect("map");
        let change = RecordChange { action: Action::Update, record_id: "r1", stored: &stored };
        let bytes = encode(1234, &collection, &change).expect("encode");
        let entry = decode(7, &bytes).expect("decode");
        assert_eq!(entry.seq, 7);
        assert_eq!(entry.time_ms, 1234);
        assert_eq!(entry.action, Action::Update);
        assert_eq!(entry.collection_id, "pbc_posts");
        assert_eq!(entry.record_id, "r1");
        assert_eq!(entry.stored().expect("stored"), stored);
        assert!(decode(7, &bytes[..5]).is_none());
        assert!(decode(7, &bytes[..12]).is_none());
    }

    #[test]
    fn secrets_never_reach_the_feed() {
        let input = CollectionInput::parse(serde_json::json!({
            "name": "members", "type": "auth",
            "fields": [{"name": "note", "type": "text", "hidden": true}]
        }))
        .expect("input");
        let collection =
            collection::build(input, None, "pbc_posts".into(), "2024-01-01 00:00:00.000Z", &|_| None)
                .expect("collection");
        let stored: Stored = serde_json::from_value(
            serde_json::json!({"id": "r1", "email": "a@b.c", "password": "$argon2id$x", "tokenKey": "k", "note": "n"}),
        )
        .expect("map");
        let change = RecordChange { action: Action::Create, record_id: "r1", stored: &stored };
        let entry = decode(1, &encode(1, &collection, &change).expect("encode")).expect("decode");
        let kept = entry.stored().expect("stored");
        assert_eq!(kept.get("password"), None);
        assert_eq!(kept.get("tokenKey"), None);
        assert_eq!(kept.get("email"), Some(&serde_json::json!("a@b.c")));
        assert_eq!(kept.get("note"), Some(&serde_json::json!("n")), "rules may read hidden fields");
    }
}

//! Record lookups for relation paths and `@collection` joins in filters, over a read or a
//! write transaction.

use serde_json::{Map, Value};

use super::filter::RecordSource;
use super::record::decode;
use super::write::{parse_ref, ref_prefix};
use super::{collection_prefix, record_key};
use crate::store::{ReadTx, ScanControl, Table, WriteTx};

fn decoded(bytes: Option<Vec<u8>>) -> Option<Map<String, Value>> {
    bytes.and_then(|b| decode(&b).ok())
}

/// The keys of the references to one record from one source collection: reference keys
/// continue the record's prefix with the source collection id and a 0x00, so the scan skips
/// the references from every other collection (a room referenced by thousands of messages,
/// asked for its members).
fn source_prefix(prefix: &[u8], source_collection: &str) -> Vec<u8> {
    let mut narrow = Vec::with_capacity(prefix.len() + source_collection.len() + 1);
    narrow.extend_from_slice(prefix);
    narrow.extend_from_slice(source_collection.as_bytes());
    narrow.push(0);
    narrow
}

fn matching_refs(
    entries: impl Iterator<Item = Vec<u8>>,
    prefix_len: usize,
    source: &str,
    field_id: &str,
) -> Vec<String> {
    entries
        .filter_map(|key| parse_ref(&key, prefix_len))
        .filter(|(c, _, f)| c == source && f == field_id)
        .map(|(_, id, _)| id)
        .collect()
}

impl RecordSource for ReadTx {
    fn record(&self, collection_id: &str, id: &str) -> Option<Map<String, Value>> {
        decoded(self.get(Table::Records, &record_key(collection_id, id)).ok().flatten())
    }

    fn referrers(
        &self,
        collection_id: &str,
        id: &str,
        source_collection: &str,
        field_id: &str,
    ) -> Vec<String> {
        let prefix = ref_prefix(collection_id, id);
        let mut keys = Vec::new();
        let _ = self.scan_prefix(
            Table::RecordRefs,
            &source_prefix(&prefix, source_collection),
            false,
            None,
            |k, _| {
                keys.push(k.to_vec());
                ScanControl::Continue
            },
        );
        matching_refs(keys.into_iter(), prefix.len(), source_collection, field_id)
    }

    fn all(&self, collection_id: &str, limit: usize) -> Vec<Map<String, Value>> {
        let mut out = Vec::new();
        let _ = self.scan_prefix(Table::Records, &collection_prefix(collection_id), false, None, |_, v| {
            if let Ok(r) = decode(v) {
                out.push(r);
            }
            if out.len() >= limit {
                ScanControl::Stop
            } else {
                ScanControl::Continue
            }
        });
        out
    }
}

impl RecordSource for WriteTx<'_> {
    fn record(&self, collection_id: &str, id: &str) -> Option<Map<String, Value>> {
        decoded(self.get(Table::Records, &record_key(collection_id, id)).ok().flatten())
    }

    fn referrers(
        &self,
        collection_id: &str,
        id: &str,
        source_collection: &str,
        field_id: &str,
    ) -> Vec<String> {
        let prefix = ref_prefix(collection_id, id);
        let keys = self
            .collect_prefix(Table::RecordRefs, &source_prefix(&prefix, source_collection))
            .unwrap_or_default();
        matching_refs(keys.into_iter().map(|(k, _)| k), prefix.len(), source_collection, field_id)
    }

    fn all(&self, collection_id: &str, limit: usize) -> Vec<Map<String, Value>> {
        self.collect_prefix(Table::Records, &collection_prefix(collection_id))
            .unwrap_or_default()
            .into_iter()
            .take(limit)
            .filter_map(|(_, v)| decode(&v).ok())
            .collect()
    }
}

/// A record source that shows a caller only the records it may see: a related record (or a
/// back-relation's source) only if the caller passes its collection's view rule, a joined
/// `@collection` row only if it passes the list rule. Client filters and sorts resolve
/// relation paths, back-relations and joins through it, so they cannot be used to learn
/// about records the caller cannot see. (Access rules themselves resolve against the raw
/// source: they are written by superusers and see everything.)
pub struct VisibleSource<'a> {
    pub inner: &'a dyn RecordSource,
    pub catalog: &'a super::catalog::Catalog,
    pub principal: &'a crate::auth::Principal,
    pub request: &'a super::filter::RequestInfo,
    pub now: super::filter::Now,
}

impl VisibleSource<'_> {
    /// Whether the caller may see `record` of `collection_id` under the rule of `op`.
    pub fn visible(&self, op: crate::auth::Op, collection_id: &str, record: &Map<String, Value>) -> bool {
        let Some(entry) = self.catalog.get(collection_id) else {
            return false;
        };
        match super::rules::access(op, self.principal, &entry.collection, self.catalog) {
            super::rules::Access::Allow => true,
            super::rules::Access::Deny => false,
            super::rules::Access::Filter(rule) => {
                let env = super::filter::Env { catalog: self.catalog, source: self.inner };
                rule.matches(&entry.collection, record, self.request, &self.now, Some(&env))
            }
        }
    }
}

impl RecordSource for VisibleSource<'_> {
    fn record(&self, collection_id: &str, id: &str) -> Option<Map<String, Value>> {
        let record = self.inner.record(collection_id, id)?;
        self.visible(crate::auth::Op::View, collection_id, &record).then_some(record)
    }

    fn referrers(
        &self,
        collection_id: &str,
        id: &str,
        source_collection: &str,
        field_id: &str,
    ) -> Vec<String> {
        self.inner
            .referrers(collection_id, id, source_collection, field_id)
            .into_iter()
            .filter(|source_id| self.record(source_collection, source_id).is_some())
            .collect()
    }

    fn all(&self, collection_id: &str, limit: usize) -> Vec<Map<String, Value>> {
        self.inner
            .all(collection_id, limit)
            .into_iter()
            .filter(|r| self.visible(crate::auth::Op::List, collection_id, r))
            .collect()
    }
}

//! `backbone check`: verifies that the record tables agree with each other.
//!
//! Every record decodes and sits under its own id; per-collection counters equal the
//! records; auth identities, relation references and index entries exist exactly for the
//! records that imply them, in both directions. Reads one snapshot; changes nothing.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use super::catalog::Catalog;
use super::field::{relation_ids, FieldKind};
use super::index;
use super::record::{decode, identity_of};
use super::stats::CollectionStats;
use super::write::{identity_key, ref_key};
use super::{collection_prefix, record_key, RecordsError};
use crate::store::{ReadTx, ScanControl, Table};

/// What a check found.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub collections: usize,
    pub records: u64,
    pub problems: Vec<String>,
}

fn keys_of(tx: &ReadTx, table: Table) -> Result<BTreeSet<Vec<u8>>, RecordsError> {
    let mut keys = BTreeSet::new();
    tx.scan_prefix(table, b"", false, None, |k, _| {
        keys.insert(k.to_vec());
        ScanControl::Continue
    })?;
    Ok(keys)
}

/// Runs every check on one snapshot.
pub fn check(tx: &ReadTx) -> Result<CheckReport, RecordsError> {
    let mut report = CheckReport::default();
    let catalog = match Catalog::load(tx) {
        Ok(c) => c,
        Err(err) => {
            report.problems.push(format!("collections do not load: {err}"));
            return Ok(report);
        }
    };
    let mut expected_identities = BTreeSet::new();
    let mut expected_refs = BTreeSet::new();
    let mut expected_index = BTreeSet::new();
    let mut known_prefixes: HashMap<Vec<u8>, String> = HashMap::new();
    for entry in catalog.all() {
        let c = &entry.collection;
        report.collections += 1;
        known_prefixes.insert(collection_prefix(&c.id), c.name.clone());
        match tx.get(Table::CollectionNames, c.name.to_lowercase().as_bytes())? {
            Some(id) if id == c.id.as_bytes() => {}
            _ => report.problems.push(format!("collection {}: its name entry is missing or wrong", c.name)),
        }
        let prefix = collection_prefix(&c.id);
        let mut count = 0u64;
        let mut problems = Vec::new();
        let mut rows = Vec::new();
        tx.scan_prefix(Table::Records, &prefix, false, None, |key, value| {
            count += 1;
            let id = String::from_utf8_lossy(&key[prefix.len()..]).to_string();
            match decode(value) {
                Ok(stored) => rows.push((id, stored)),
                Err(err) => problems.push(format!("{}/{id}: does not decode: {err}", c.name)),
            }
            ScanControl::Continue
        })?;
        report.problems.extend(problems);
        report.records += count;
        let stats = CollectionStats::read(tx, &c.id)?;
        if stats.count != count {
            report
                .problems
                .push(format!("collection {}: counter says {} records, found {count}", c.name, stats.count));
        }
        for (id, stored) in rows {
            if stored.get("id").and_then(Value::as_str) != Some(id.as_str()) {
                report.problems.push(format!("{}/{id}: stored id differs from its key", c.name));
            }
            if c.is_auth() {
                if let Some(email) = identity_of(&stored) {
                    expected_identities.insert(identity_key(&c.id, &email));
                }
            }
            for field in &c.fields {
                if let FieldKind::Relation(o) = &field.kind {
                    for target in relation_ids(stored.get(&field.name)) {
                        expected_refs.insert(ref_key(&o.collection_id, &target, &c.id, &id, &field.id));
                        if tx.get(Table::Records, &record_key(&o.collection_id, &target))?.is_none() {
                            report.problems.push(format!(
                                "{}/{id}: {} points at missing record {target}",
                                c.name, field.name
                            ));
                        }
                    }
                }
            }
            for def in &entry.indexes {
                let values: Vec<Value> =
                    def.columns
                        .iter()
                        .map(|col| {
                            stored.get(col).cloned().unwrap_or_else(|| {
                                c.field(col).map(|f| f.zero_value()).unwrap_or(Value::Null)
                            })
                        })
                        .collect();
                let refs: Vec<&Value> = values.iter().collect();
                let mut key = index::prefix(&c.id, &def.name, &refs);
                key.extend_from_slice(id.as_bytes());
                expected_index.insert(key);
            }
        }
    }
    let compare =
        |what: &str, expected: BTreeSet<Vec<u8>>, found: BTreeSet<Vec<u8>>, problems: &mut Vec<String>| {
            for missing in expected.difference(&found).take(20) {
                problems.push(format!("{what}: missing entry {:?}", String::from_utf8_lossy(missing)));
            }
            for extra in found.difference(&expected).take(20) {
                problems.push(format!("{what}: entry without a record {:?}", String::from_utf8_lossy(extra)));
            }
        };
    compare(
        "auth identities",
        expected_identities,
        keys_of(tx, Table::AuthIdentities)?,
        &mut report.problems,
    );
    compare("relation references", expected_refs, keys_of(tx, Table::RecordRefs)?, &mut report.problems);
    compare("index entries", expected_index, keys_of(tx, Table::RecordIndex)?, &mut report.problems);
    // Records of collections that no longer exist.
    let mut orphans = 0u64;
    tx.scan_prefix(Table::Records, b"", false, None, |key, _| {
        let known = key.iter().position(|b| *b == 0).is_some_and(|i| known_prefixes.contains_key(&key[..=i]));
        if !known {
            orphans += 1;
        }
        ScanControl::Continue
    })?;
    if orphans > 0 {
        report.problems.push(format!("{orphans} record(s) belong to no collection"));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Map};

    use super::*;
    use crate::auth::password::PasswordHasher;
    use crate::records::filter::RequestInfo;
    use crate::records::rules::Principal;
    use crate::records::Records;
    use crate::store::{Store, StoreError, StoreOptions, WriteTx};

    #[test]
    fn a_consistent_store_passes_and_each_kind_of_damage_is_reported() {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
        runtime.block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Store::open(&dir.path().join("data.redb"), &StoreOptions::default()).expect("store");
            let records = Records::open(store.clone(), PasswordHasher::new(1)).await.expect("records");
            let su = Principal::Superuser { id: "t".into() };
            records
                .create_collection(&su, json!({"name": "a", "fields": [{"name": "name", "type": "text"}], "indexes": ["CREATE UNIQUE INDEX u ON a (name)"]}), "")
                .await
                .expect("a");
            records
                .create_collection(&su, json!({"name": "b", "fields": [{"name": "to", "type": "relation", "collectionId": "a", "maxSelect": 1}]}), "")
                .await
                .expect("b");
            let mut body = Map::new();
            body.insert("name".into(), json!("x"));
            let a = records.create_record(&su, "a", body, &RequestInfo::default()).await.expect("record a");
            let a_id = a["id"].as_str().expect("id").to_string();
            let mut body = Map::new();
            body.insert("to".into(), json!(a_id));
            records.create_record(&su, "b", body, &RequestInfo::default()).await.expect("record b");
            let report = store.read_blocking(check).expect("check");
            assert!(report.problems.is_empty(), "{:?}", report.problems);
            assert_eq!(report.records, 2);

            // Damage: drop every reference and index entry behind the service's back.
            store
                .write(|tx: &mut WriteTx<'_>| -> Result<(), StoreError> {
                    for table in [Table::RecordRefs, Table::RecordIndex] {
                        for (k, _) in tx.collect_prefix(table, b"")? {
                            tx.delete(table, &k);
                        }
                    }
                    Ok(())
                })
                .await
                .expect("damage");
            let report = store.read_blocking(check).expect("check");
            let text = report.problems.join("\n");
            assert!(text.contains("relation references: missing entry"), "{text}");
            assert!(text.contains("index entries: missing entry"), "{text}");
            store.shutdown();
        });
    }
}

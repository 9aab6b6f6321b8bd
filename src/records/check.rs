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
    /// Things worth saying that are not problems.
    pub notes: Vec<String>,
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
                expected_index.insert(index::entry_key(c, def, &stored, &id));
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
    // A file from before the order-preserving key encoding (or one whose rebuild has not
    // run yet) gets its entries rebuilt when the server next opens it.
    let rebuild_pending = crate::store::stored_schema_version(tx)?.is_some_and(|v| v < 2)
        || tx.get(Table::Meta, index::REBUILD_FLAG)?.is_some();
    if rebuild_pending {
        report.notes.push("index entries: rebuild pending (runs when the server next opens the file)".into());
    } else {
        compare("index entries", expected_index, keys_of(tx, Table::RecordIndex)?, &mut report.problems);
    }
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
    use crate::auth::Principal;
    use crate::records::filter::RequestInfo;
    use crate::records::{RecordWrite, Records};
    use crate::store::{Store, StoreError, StoreOptions, WriteTx};

    #[test]
    fn a_consistent_store_passes_and_each_kind_of_damage_is_reported() {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
        runtime.block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Store::open(&dir.path().join("data.redb"), &StoreOptions::default()).expect("store");
            let records = Records::open(store.clone(), PasswordHasher::new(1), Vec::new()).await.expect("records");
            let su = Principal::Superuser { id: "t".into() };
            records
                .collections().create(&su, json!({"name": "a", "fields": [{"name": "name", "type": "text"}], "indexes": ["CREATE UNIQUE INDEX u ON a (name)"]}), "")
                .await
                .expect("a");
            records
                .collections().create(&su, json!({"name": "b", "fields": [{"name": "to", "type": "relation", "collectionId": "a", "maxSelect": 1}]}), "")
                .await
                .expect("b");
            let mut body = Map::new();
            body.insert("name".into(), json!("x"));
            let a = records.create_record(&su, "a", RecordWrite::body(body), &RequestInfo::default()).await.expect("record a");
            let a_id = a["id"].as_str().expect("id").to_string();
            let mut body = Map::new();
            body.insert("to".into(), json!(a_id));
            records.create_record(&su, "b", RecordWrite::body(body), &RequestInfo::default()).await.expect("record b");
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

    #[test]
    fn a_version_1_file_gets_its_index_entries_rebuilt_on_open() {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
        runtime.block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("data.redb");
            let su = Principal::Superuser { id: "t".into() };
            let store = Store::open(&path, &StoreOptions::default()).expect("store");
            let records = Records::open(store.clone(), PasswordHasher::new(1), Vec::new()).await.expect("records");
            records
                .collections().create(&su, json!({"name": "a", "fields": [{"name": "name", "type": "text"}, {"name": "n", "type": "number"}], "indexes": ["CREATE INDEX i_n ON a (n)"]}), "")
                .await
                .expect("a");
            for n in [3, 1, 2] {
                let mut body = Map::new();
                body.insert("n".into(), json!(n));
                records.create_record(&su, "a", RecordWrite::body(body), &RequestInfo::default()).await.expect("record");
            }
            // Turn the file into a version 1 file: old-style entries (canonical JSON values
            // separated by 0x00) and version 1 in the meta table.
            store
                .write(|tx: &mut WriteTx<'_>| -> Result<(), StoreError> {
                    for (k, _) in tx.collect_prefix(Table::RecordIndex, b"")? {
                        tx.delete(Table::RecordIndex, &k);
                        let id = index::entry_id(&k).unwrap_or_default().to_string();
                        let mut old = k[..k.iter().position(|b| *b == 0).unwrap_or(0) + 1].to_vec();
                        old.extend_from_slice(b"i_n\0");
                        old.extend_from_slice(b"1\0");
                        old.extend_from_slice(id.as_bytes());
                        tx.put(Table::RecordIndex, &old, vec![]);
                    }
                    tx.put(Table::Meta, b"schema_version", 1u32.to_le_bytes().to_vec());
                    Ok(())
                })
                .await
                .expect("downgrade");
            store.shutdown();
            drop(records);

            let before = crate::store::ReadOnlyStore::open(&path).expect("read-only").read(check).expect("check");
            assert!(before.problems.is_empty(), "{:?}", before.problems);
            assert!(before.notes.iter().any(|n| n.contains("rebuild pending")), "{:?}", before.notes);

            let store = Store::open(&path, &StoreOptions::default()).expect("reopen");
            let records = Records::open(store.clone(), PasswordHasher::new(1), Vec::new()).await.expect("records");
            let report = store.read_blocking(check).expect("check");
            assert!(report.problems.is_empty(), "{:?}", report.problems);
            assert!(report.notes.is_empty(), "{:?}", report.notes);
            let (version, flag) = store
                .read_blocking(|tx| {
                    Ok::<_, StoreError>((crate::store::stored_schema_version(tx)?, tx.get(Table::Meta, index::REBUILD_FLAG)?))
                })
                .expect("meta");
            assert_eq!(version, Some(crate::store::SCHEMA_VERSION));
            assert!(flag.is_none());
            let params = crate::records::list::ListParams {
                filter: Some("n >= 2".into()),
                sort: Some("-n".into()),
                explain: Some("1".into()),
                ..Default::default()
            };
            let page = records.list_records(&su, "a", params, &RequestInfo::default()).await.expect("list");
            let ns: Vec<Value> = page.items.iter().map(|r| r["n"].clone()).collect();
            assert_eq!(ns, vec![json!(3), json!(2)]);
            let plan = page.explain.expect("explain");
            assert_eq!(plan["index"], "i_n", "{plan}");
            assert_eq!(plan["sortByIndex"], true, "{plan}");
            store.shutdown();
        });
    }
}

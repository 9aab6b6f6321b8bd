//! The in-memory catalog: every collection definition, loaded from the store at startup
//! and reloaded after each committed schema change. Reads of the record API use it instead
//! of decoding definitions on every request.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use super::collection::Collection;
use super::filter::{Filter, FilterError};
use super::index::IndexDef;
use super::stats::CollectionStats;
use crate::auth::Op;
use crate::store::{ReadPlacement, ReadTx, ScanControl, StoreError, Table};

/// A collection with the schema generation it was loaded at.
#[derive(Debug)]
pub struct CatalogEntry {
    pub collection: Collection,
    pub schema_generation: u64,
    /// The collection's parsed secondary indexes.
    pub indexes: Vec<IndexDef>,
    /// Where the create rule's snapshot check runs (see [`ReadPlacement`]).
    pub create_reads: ReadPlacement,
    /// Where single-record views run.
    pub view_reads: ReadPlacement,
    /// The collection's rules, compiled on first use (index: `Op as usize`). The whole
    /// catalog is rebuilt on every schema change, so a rule is never compiled against a
    /// stale schema of a collection it joins.
    rules: [OnceLock<Result<Arc<Filter>, FilterError>>; 5],
}

impl CatalogEntry {
    pub fn new(collection: Collection, schema_generation: u64) -> CatalogEntry {
        // Stored definitions were validated when saved; an unreadable one is skipped (logged).
        let indexes = match super::index::parse_all(&collection) {
            Ok(defs) => defs,
            Err(problems) => {
                tracing::error!(collection = %collection.name, ?problems, "stored index definitions do not parse");
                Vec::new()
            }
        };
        CatalogEntry {
            collection,
            schema_generation,
            indexes,
            create_reads: ReadPlacement::default(),
            view_reads: ReadPlacement::default(),
            rules: Default::default(),
        }
    }
}

/// An immutable snapshot of all collections.
#[derive(Debug, Default)]
pub struct Catalog {
    by_id: HashMap<String, Arc<CatalogEntry>>,
    by_name: HashMap<String, Arc<CatalogEntry>>,
    ordered: Vec<Arc<CatalogEntry>>,
}

impl Catalog {
    /// Loads every collection from a read snapshot.
    pub fn load(tx: &ReadTx) -> Result<Catalog, StoreError> {
        let mut decoded: Vec<Collection> = Vec::new();
        let mut failure: Option<StoreError> = None;
        tx.scan_prefix(Table::Collections, b"", false, None, |key, value| {
            match serde_json::from_slice::<Collection>(value) {
                Ok(c) => decoded.push(c),
                Err(err) => {
                    failure = Some(StoreError::Internal(format!(
                        "collection {} is unreadable: {err}",
                        String::from_utf8_lossy(key)
                    )));
                    return ScanControl::Stop;
                }
            }
            ScanControl::Continue
        })?;
        if let Some(err) = failure {
            return Err(err);
        }
        let mut catalog = Catalog::default();
        decoded.sort_by(|a, b| (a.created.as_str(), a.id.as_str()).cmp(&(b.created.as_str(), b.id.as_str())));
        for collection in decoded {
            let stats = CollectionStats::read(tx, &collection.id)?;
            let entry = Arc::new(CatalogEntry::new(collection, stats.schema_generation));
            catalog.by_id.insert(entry.collection.id.clone(), entry.clone());
            catalog.by_name.insert(entry.collection.name.to_lowercase(), entry.clone());
            catalog.ordered.push(entry);
        }
        Ok(catalog)
    }

    /// Finds a collection by id or (case-insensitive) name.
    pub fn get(&self, id_or_name: &str) -> Option<&Arc<CatalogEntry>> {
        self.by_id.get(id_or_name).or_else(|| self.by_name.get(&id_or_name.to_lowercase()))
    }

    /// The compiled rule guarding `op` on `collection`, from the cache when `collection`
    /// is this catalog's own definition (not a candidate being validated).
    pub fn compiled_rule(
        &self,
        collection: &Collection,
        op: Op,
        compile: impl FnOnce() -> Result<Filter, FilterError>,
    ) -> Result<Arc<Filter>, FilterError> {
        match self.by_id.get(&collection.id).filter(|e| std::ptr::eq(&e.collection, collection)) {
            Some(entry) => entry.rules[op as usize].get_or_init(|| compile().map(Arc::new)).clone(),
            None => compile().map(Arc::new),
        }
    }

    /// All collections, oldest first.
    pub fn all(&self) -> impl Iterator<Item = &Arc<CatalogEntry>> {
        self.ordered.iter()
    }
}

//! `expand`: embedding related records (`author`, `comments_via_post`, up to 6 levels).
//!
//! A path segment is either a relation field of the current collection or a back-relation
//! `<collection>_via_<field>` (records of `<collection>` whose relation `<field>` points at
//! the current record). Each expanded record passes its own collection's view rule for the
//! caller; records the caller may not view are left out, as PocketBase does.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::catalog::{Catalog, CatalogEntry};
use super::field::{relation_ids, FieldKind};
use super::filter::{Env, Now, RequestInfo};
use super::record::{decode, to_json, FieldsFilter, Stored};
use super::rules::{self, Access};
use super::write::{parse_ref, ref_prefix};
use super::{record_key, RecordsError};
use crate::auth::{Op, Principal};
use crate::store::{ReadTx, ScanControl, Table};

/// Deepest expand path.
pub const MAX_DEPTH: usize = 6;
/// Most expand paths in one request.
pub const MAX_PATHS: usize = 32;
/// Most back-related records embedded per record and path.
pub const MAX_BACK_RELATIONS: usize = 1000;

/// The requested expand paths as a tree.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExpandTree {
    pub children: BTreeMap<String, ExpandTree>,
}

impl ExpandTree {
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// Parses `author,comments_via_post.author`.
    pub fn parse(raw: Option<&str>) -> Result<ExpandTree, RecordsError> {
        let mut tree = ExpandTree::default();
        let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
            return Ok(tree);
        };
        let paths: Vec<&str> = raw.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
        if paths.len() > MAX_PATHS {
            return Err(RecordsError::BadRequest(format!("At most {MAX_PATHS} expand paths.")));
        }
        for path in paths {
            let segments: Vec<&str> = path.split('.').collect();
            if segments.len() > MAX_DEPTH {
                return Err(RecordsError::BadRequest(format!(
                    "Expand {path:?} is deeper than {MAX_DEPTH} levels."
                )));
            }
            let mut node = &mut tree;
            for segment in segments {
                if segment.is_empty() || !segment.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(RecordsError::BadRequest(format!("Invalid expand path {path:?}.")));
                }
                node = node.children.entry(segment.to_string()).or_default();
            }
        }
        Ok(tree)
    }
}

/// How one expand name resolves from a collection.
enum Step {
    Forward { field: String, target: Arc<CatalogEntry>, multiple: bool },
    Back { source: Arc<CatalogEntry>, field_id: String },
}

fn resolve(
    catalog: &Catalog,
    from: &CatalogEntry,
    name: &str,
    privileged: bool,
) -> Result<Step, RecordsError> {
    let collection = &from.collection;
    if let Some(field) = collection.field(name) {
        if let FieldKind::Relation(o) = &field.kind {
            if field.is_never_returned() && !privileged {
                return Err(RecordsError::BadRequest(format!("Cannot expand the hidden field {name:?}.")));
            }
            let target = catalog.get(&o.collection_id).cloned().ok_or_else(|| {
                RecordsError::BadRequest(format!("The target of {name:?} no longer exists."))
            })?;
            return Ok(Step::Forward { field: field.name.clone(), target, multiple: o.is_multiple() });
        }
        return Err(RecordsError::BadRequest(format!("Cannot expand {name:?}: it is not a relation field.")));
    }
    if let Some((source_name, field_name)) = name.split_once("_via_") {
        if let Some(source) = catalog.get(source_name) {
            if let Some(field) = source.collection.field(field_name) {
                if matches!(&field.kind, FieldKind::Relation(o) if o.collection_id == collection.id) {
                    if field.is_never_returned() && !privileged {
                        return Err(RecordsError::BadRequest(format!(
                            "Cannot expand through the hidden field {name:?}."
                        )));
                    }
                    return Ok(Step::Back { source: source.clone(), field_id: field.id.clone() });
                }
            }
        }
    }
    Err(RecordsError::BadRequest(format!("Cannot expand {name:?}: no such relation in {}.", collection.name)))
}

/// Checks every path of `tree` against the schema before any record is read.
pub fn check(
    catalog: &Catalog,
    from: &CatalogEntry,
    tree: &ExpandTree,
    privileged: bool,
) -> Result<(), RecordsError> {
    for (name, child) in &tree.children {
        let next = match resolve(catalog, from, name, privileged)? {
            Step::Forward { target, .. } => target,
            Step::Back { source, .. } => source,
        };
        check(catalog, &next, child, privileged)?;
    }
    Ok(())
}

/// Everything expansion needs to read and to check view rules.
pub struct Expander<'a> {
    pub tx: &'a ReadTx,
    pub catalog: &'a Catalog,
    pub principal: &'a Principal,
    pub request: &'a RequestInfo,
    pub now: Now,
}

impl<'a> Expander<'a> {
    /// An expander reading `tx`, checking view rules for `principal` as of now.
    pub fn new(
        tx: &'a ReadTx,
        catalog: &'a Catalog,
        principal: &'a Principal,
        request: &'a RequestInfo,
    ) -> Expander<'a> {
        Expander { tx, catalog, principal, request, now: Now::current() }
    }

    fn visible(&self, entry: &CatalogEntry, stored: &Stored) -> bool {
        match rules::access(Op::View, self.principal, &entry.collection, self.catalog) {
            Access::Allow => true,
            Access::Deny => false,
            Access::Filter(f) => {
                let env = Env { catalog: self.catalog, source: self.tx };
                f.matches(&entry.collection, stored, self.request, &self.now, Some(&env))
            }
        }
    }

    fn load(&self, entry: &CatalogEntry, id: &str) -> Result<Option<Stored>, RecordsError> {
        match self.tx.get(Table::Records, &record_key(&entry.collection.id, id))? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }

    fn render(
        &self,
        entry: &CatalogEntry,
        stored: &Stored,
        tree: &ExpandTree,
    ) -> Result<Value, RecordsError> {
        // The one rule of email visibility: superusers, the record's owner, or its flag.
        let sees_email =
            self.principal.sees_email_of(&entry.collection.id, stored.get("id").and_then(Value::as_str));
        let mut json = to_json(&entry.collection, stored, sees_email, &FieldsFilter::default());
        if !tree.is_empty() {
            if let (Value::Object(map), Some(expand)) = (&mut json, self.expand(entry, stored, tree)?) {
                map.insert("expand".into(), Value::Object(expand));
            }
        }
        Ok(json)
    }

    /// The `expand` object of one record, or `None` when nothing was expanded.
    pub fn expand(
        &self,
        entry: &CatalogEntry,
        stored: &Stored,
        tree: &ExpandTree,
    ) -> Result<Option<Map<String, Value>>, RecordsError> {
        let mut out = Map::new();
        let privileged = self.principal.is_superuser();
        for (name, child) in &tree.children {
            match resolve(self.catalog, entry, name, privileged)? {
                Step::Forward { field, target, multiple } => {
                    let mut items = Vec::new();
                    for id in relation_ids(stored.get(&field)) {
                        if let Some(related) = self.load(&target, &id)? {
                            if self.visible(&target, &related) {
                                items.push(self.render(&target, &related, child)?);
                            }
                        }
                    }
                    if multiple {
                        if !items.is_empty() {
                            out.insert(name.clone(), Value::Array(items));
                        }
                    } else if let Some(item) = items.pop() {
                        out.insert(name.clone(), item);
                    }
                }
                Step::Back { source, field_id } => {
                    let record_id = stored.get("id").and_then(Value::as_str).unwrap_or_default();
                    let prefix = ref_prefix(&entry.collection.id, record_id);
                    let mut ids = Vec::new();
                    self.tx.scan_prefix(Table::RecordRefs, &prefix, false, None, |key, _| {
                        if let Some((source_collection, source_id, field)) = parse_ref(key, prefix.len()) {
                            if source_collection == source.collection.id && field == field_id {
                                ids.push(source_id);
                            }
                        }
                        if ids.len() >= MAX_BACK_RELATIONS {
                            ScanControl::Stop
                        } else {
                            ScanControl::Continue
                        }
                    })?;
                    ids.sort();
                    let mut items = Vec::new();
                    for id in ids {
                        if let Some(related) = self.load(&source, &id)? {
                            if self.visible(&source, &related) {
                                items.push(self.render(&source, &related, child)?);
                            }
                        }
                    }
                    if !items.is_empty() {
                        out.insert(name.clone(), Value::Array(items));
                    }
                }
            }
        }
        Ok(if out.is_empty() { None } else { Some(out) })
    }
}

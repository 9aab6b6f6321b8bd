//! The collections service: creating, changing and deleting collection definitions, with
//! the migration of their records and indexes. Superusers only.
//!
//! Schema changes are serialized by one lock; each commits the definition, its migrated
//! records and indexes, an audit entry and the change hooks' entries in one transaction,
//! then replaces the shared [`Catalog`] snapshot that record operations read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde_json::{json, Value};

use super::catalog::{Catalog, CatalogEntry};
use super::collection::{self, Collection, CollectionInput};
use super::field::{relation_ids, FieldKind};
use super::hooks::Hooks;
use super::index;
use super::migrate;
use super::record::decode;
use super::rules;
use super::stats::CollectionStats;
use super::write;
use super::{collection_prefix, FieldError, FieldErrors, RecordsError};
use crate::audit::{self, Actor, Event};
use crate::auth::{Op, Principal};
use crate::store::{Store, Table, WriteTx};
use crate::util::{id, time};

/// The current catalog, shared by the services that read it; replaced whole after every
/// committed schema change.
#[derive(Clone)]
pub struct SharedCatalog(Arc<RwLock<Arc<Catalog>>>);

impl SharedCatalog {
    pub fn new(catalog: Catalog) -> SharedCatalog {
        SharedCatalog(Arc::new(RwLock::new(Arc::new(catalog))))
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<Catalog> {
        match self.0.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// A collection of the current snapshot, by id or name.
    pub fn entry(&self, id_or_name: &str) -> Result<Arc<CatalogEntry>, RecordsError> {
        self.current()
            .get(id_or_name)
            .cloned()
            .ok_or_else(|| RecordsError::NotFound(format!("Missing collection {id_or_name:?}.")))
    }

    fn replace(&self, fresh: Catalog) {
        match self.0.write() {
            Ok(mut guard) => *guard = Arc::new(fresh),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(fresh),
        }
    }
}

/// Collection definitions.
#[derive(Clone)]
pub struct Collections {
    store: Store,
    catalog: SharedCatalog,
    schema_lock: Arc<tokio::sync::Mutex<()>>,
    hooks: Hooks,
    /// Bumped on every schema change (see `Records::auth_generation`).
    auth_generation: Arc<AtomicU64>,
}

impl Collections {
    pub(crate) fn new(
        store: Store,
        catalog: SharedCatalog,
        hooks: Hooks,
        auth_generation: Arc<AtomicU64>,
    ) -> Collections {
        Collections {
            store,
            catalog,
            schema_lock: Arc::new(tokio::sync::Mutex::new(())),
            hooks,
            auth_generation,
        }
    }

    /// All collections (superusers only), oldest first.
    pub fn list(&self, principal: &Principal) -> Result<Vec<Collection>, RecordsError> {
        if !principal.is_superuser() {
            return Err(superusers_only());
        }
        Ok(self.catalog.current().all().map(|e| e.collection.clone()).collect())
    }

    /// One collection (superusers only).
    pub fn get(&self, principal: &Principal, id_or_name: &str) -> Result<Collection, RecordsError> {
        if !principal.is_superuser() {
            return Err(superusers_only());
        }
        Ok(self.catalog.entry(id_or_name)?.collection.clone())
    }

    /// Creates a collection.
    pub async fn create(
        &self,
        principal: &Principal,
        body: Value,
        ip: &str,
    ) -> Result<Collection, RecordsError> {
        if !principal.is_superuser() {
            return Err(superusers_only());
        }
        let input = CollectionInput::parse(body)?;
        let requested_id = input.id.clone().filter(|s| !s.is_empty());
        if let Some(id) = &requested_id {
            if id.len() > 100 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(RecordsError::field(
                    "Failed to create the collection.",
                    "id",
                    FieldError::new("validation_invalid_id", "Use letters, digits and underscores."),
                ));
            }
        }
        let new_id = requested_id.unwrap_or_else(|| format!("pbc_{}", id::random_string(11)));
        let catalog = self.catalog.current();
        let resolve = |wanted: &str| catalog.get(wanted).map(|e| e.collection.id.clone());
        let built = collection::build(input, None, new_id, &time::now(), &resolve)?;
        rules::validate(&built, &catalog, "Failed to create the collection.")?;
        let _guard = self.schema_lock.lock().await;
        let to_store = built.clone();
        let event = Event::new("collection.create", Actor::of(principal), ip, built.id.clone())
            .detail(json!({"name": built.name, "type": built.kind}));
        self.store
            .write(move |tx: &mut WriteTx<'_>| -> Result<(), RecordsError> {
                audit::append(tx, event)?;
                let name_key = to_store.name.to_lowercase();
                if tx.get(Table::CollectionNames, name_key.as_bytes())?.is_some() {
                    return Err(RecordsError::field(
                        "Failed to create the collection.",
                        "name",
                        FieldError::new(
                            "validation_collection_name_exists",
                            "Collection name must be unique (case insensitive).",
                        ),
                    ));
                }
                if tx.get(Table::Collections, to_store.id.as_bytes())?.is_some() {
                    return Err(RecordsError::field(
                        "Failed to create the collection.",
                        "id",
                        FieldError::new("validation_not_unique", "Value must be unique."),
                    ));
                }
                put_definition(tx, &to_store)?;
                tx.put(Table::CollectionNames, name_key.as_bytes(), to_store.id.as_bytes().to_vec());
                CollectionStats::default().save(tx, &to_store.id);
                Ok(())
            })
            .await?;
        self.reload().await?;
        Ok(built)
    }

    /// Updates a collection, migrating its records or refusing the change.
    pub async fn update(
        &self,
        principal: &Principal,
        id_or_name: &str,
        body: Value,
        ip: &str,
    ) -> Result<Collection, RecordsError> {
        if !principal.is_superuser() {
            return Err(superusers_only());
        }
        let input = CollectionInput::parse(body)?;
        let _guard = self.schema_lock.lock().await;
        let current = self.catalog.entry(id_or_name)?.collection.clone();
        if let Some(id) = input.id.as_deref().filter(|id| !id.is_empty()) {
            if id != current.id {
                return Err(RecordsError::field(
                    "Failed to update the collection.",
                    "id",
                    FieldError::new("validation_id_change", "The id cannot be changed."),
                ));
            }
        }
        let catalog = self.catalog.current();
        let resolve = |wanted: &str| catalog.get(wanted).map(|e| e.collection.id.clone());
        let built = collection::build(input, Some(&current), current.id.clone(), &time::now(), &resolve)?;
        rules::validate(&built, &catalog, "Failed to update the collection.")?;
        if current.system {
            check_system_rules_unchanged(&current, &built)?;
        }
        let to_store = built.clone();
        let hooks = self.hooks.clone();
        let event = Event::new("collection.update", Actor::of(principal), ip, built.id.clone())
            .detail(json!({"name": built.name, "before": current, "after": built}));
        self.store
            .write(move |tx: &mut WriteTx<'_>| -> Result<(), RecordsError> {
                audit::append(tx, event)?;
                let old_key = current.name.to_lowercase();
                let new_key = to_store.name.to_lowercase();
                if old_key != new_key {
                    if tx.get(Table::CollectionNames, new_key.as_bytes())?.is_some() {
                        return Err(RecordsError::field(
                            "Failed to update the collection.",
                            "name",
                            FieldError::new(
                                "validation_collection_name_exists",
                                "Collection name must be unique (case insensitive).",
                            ),
                        ));
                    }
                    tx.delete(Table::CollectionNames, old_key.as_bytes());
                    tx.put(Table::CollectionNames, new_key.as_bytes(), to_store.id.as_bytes().to_vec());
                }
                migrate::migrate(tx, &current, &to_store)?;
                if current.fields_differ(&to_store) || current.indexes != to_store.indexes {
                    rebuild_indexes(tx, &to_store)?;
                }
                hooks.collection_updated(tx, &catalog, &current, &to_store)?;
                put_definition(tx, &to_store)?;
                let mut stats = CollectionStats::load(tx, &to_store.id)?;
                stats.schema_generation += 1;
                stats.save(tx, &to_store.id);
                Ok(())
            })
            .await?;
        self.reload().await?;
        Ok(built)
    }

    /// Deletes a collection and all of its records.
    pub async fn delete(
        &self,
        principal: &Principal,
        id_or_name: &str,
        ip: &str,
    ) -> Result<(), RecordsError> {
        if !principal.is_superuser() {
            return Err(superusers_only());
        }
        let _guard = self.schema_lock.lock().await;
        let current = self.catalog.entry(id_or_name)?.collection.clone();
        if current.system {
            return Err(RecordsError::BadRequest("System collections cannot be deleted.".into()));
        }
        for other in self.catalog.current().all() {
            if other.collection.id == current.id {
                continue;
            }
            for field in &other.collection.fields {
                if matches!(&field.kind, FieldKind::Relation(o) if o.collection_id == current.id) {
                    return Err(RecordsError::BadRequest(format!(
                        "The collection is referenced by the relation field {}.{}; remove that field first.",
                        other.collection.name, field.name
                    )));
                }
            }
        }
        let hooks = self.hooks.clone();
        let event = Event::new("collection.delete", Actor::of(principal), ip, current.id.clone())
            .detail(json!({"name": current.name}));
        self.store
            .write(move |tx: &mut WriteTx<'_>| -> Result<(), RecordsError> {
                audit::append(tx, event)?;
                let prefix = collection_prefix(&current.id);
                for (key, bytes) in tx.collect_prefix(Table::Records, &prefix)? {
                    // Its records' references (all within this collection or to others).
                    let stored = decode(&bytes)?;
                    let record_id = String::from_utf8_lossy(&key[prefix.len()..]).to_string();
                    for field in &current.fields {
                        if let FieldKind::Relation(o) = &field.kind {
                            for id in relation_ids(stored.get(&field.name)) {
                                tx.delete(
                                    Table::RecordRefs,
                                    &write::ref_key(
                                        &o.collection_id,
                                        &id,
                                        &current.id,
                                        &record_id,
                                        &field.id,
                                    ),
                                );
                            }
                        }
                    }
                    tx.delete(Table::Records, &key);
                }
                for (key, _) in tx.collect_prefix(Table::AuthIdentities, &prefix)? {
                    tx.delete(Table::AuthIdentities, &key);
                }
                index::clear(tx, &current.id)?;
                hooks.collection_deleted(tx, &current)?;
                tx.delete(Table::Collections, current.id.as_bytes());
                tx.delete(Table::CollectionNames, current.name.to_lowercase().as_bytes());
                tx.delete(Table::CollectionStats, current.id.as_bytes());
                Ok(())
            })
            .await?;
        self.reload().await
    }

    /// Loads the committed definitions into a fresh catalog snapshot.
    async fn reload(&self) -> Result<(), RecordsError> {
        self.auth_generation.fetch_add(1, Ordering::AcqRel);
        let fresh = self.store.read(|tx| Catalog::load(tx).map_err(RecordsError::from)).await?;
        self.catalog.replace(fresh);
        Ok(())
    }
}

/// Stages `collection`'s definition in `Table::Collections`.
pub(crate) fn put_definition(tx: &mut WriteTx<'_>, collection: &Collection) -> Result<(), RecordsError> {
    let bytes = serde_json::to_vec(collection).map_err(|e| RecordsError::Internal(e.to_string()))?;
    tx.put(Table::Collections, collection.id.as_bytes(), bytes);
    Ok(())
}

pub(crate) fn superusers_only() -> RecordsError {
    RecordsError::Forbidden("Only superusers can perform this action.".into())
}

/// System collections (`_superusers`) keep their rules: superusers only, as PocketBase
/// locks them (a rule that let anyone list, create or update superusers would hand out
/// the server).
fn check_system_rules_unchanged(current: &Collection, built: &Collection) -> Result<(), RecordsError> {
    let auth_rule = |c: &Collection| c.auth.as_ref().map(|a| a.auth_rule.clone());
    let mut errors = FieldErrors::new();
    for op in Op::ALL {
        if current.rule(op) != built.rule(op) {
            errors.insert(
                format!("{}Rule", op.as_str()),
                FieldError::new("validation_system_rule", "The rules of system collections cannot change."),
            );
        }
    }
    if auth_rule(current) != auth_rule(built) {
        errors.insert(
            "authRule".into(),
            FieldError::new("validation_system_rule", "The rules of system collections cannot change."),
        );
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(RecordsError::Validation { message: "Failed to update the collection.".into(), fields: errors })
    }
}

/// Drops and rebuilds every index entry of `collection` from its (possibly just migrated)
/// records; a unique index that existing records violate refuses the change.
fn rebuild_indexes(tx: &mut WriteTx<'_>, collection: &Collection) -> Result<(), RecordsError> {
    index::clear(tx, &collection.id)?;
    let defs = index::parse_all(collection).map_err(|problems| RecordsError::Validation {
        message: "Failed to update the collection.".into(),
        fields: problems.into_iter().collect(),
    })?;
    if defs.is_empty() {
        return Ok(());
    }
    let prefix = collection_prefix(&collection.id);
    for (key, bytes) in tx.collect_prefix(Table::Records, &prefix)? {
        let stored = decode(&bytes)?;
        let id = String::from_utf8_lossy(&key[prefix.len()..]).to_string();
        index::sync(tx, collection, &defs, &id, None, Some(&stored)).map_err(|err| match err {
            RecordsError::Validation { .. } => RecordsError::Conflict(format!(
                "Existing records of {} share values that a unique index forbids (record {id}); fix them first.",
                collection.name
            )),
            other => other,
        })?;
    }
    Ok(())
}

/// Rebuilds the index entries of every collection (after an upgrade changed their
/// encoding). Stored records already satisfied their unique indexes, so nothing is refused.
pub(crate) fn rebuild_all_indexes(tx: &mut WriteTx<'_>) -> Result<(), RecordsError> {
    let mut rebuilt = 0usize;
    for (_, bytes) in tx.collect_prefix(Table::Collections, b"")? {
        let collection: Collection = serde_json::from_slice(&bytes).map_err(|e| {
            RecordsError::Store(crate::store::StoreError::Internal(format!("unreadable collection: {e}")))
        })?;
        if !collection.indexes.is_empty() {
            rebuild_indexes(tx, &collection)?;
            rebuilt += 1;
        }
    }
    tracing::info!(collections = rebuilt, "rebuilt index entries in the current key encoding");
    Ok(())
}

/// The members of a collection a list's `filter` and `sort` may name (PocketBase's), with
/// the field type each is compared as.
const LISTED: [(&str, &str); 11] = [
    ("id", "text"),
    ("name", "text"),
    ("type", "text"),
    ("system", "bool"),
    ("created", "text"),
    ("updated", "text"),
    ("listRule", "text"),
    ("viewRule", "text"),
    ("createRule", "text"),
    ("updateRule", "text"),
    ("deleteRule", "text"),
];

/// A pseudo-collection whose fields are [`LISTED`], for compiling a collection filter.
fn listed_shape() -> Result<Collection, RecordsError> {
    let fields: Vec<Value> = LISTED.iter().map(|(name, kind)| json!({"name": name, "type": kind})).collect();
    serde_json::from_value(json!({
        "id": "_collections", "name": "_collections", "type": "base", "system": true,
        "fields": fields, "indexes": [], "listRule": null, "viewRule": null, "createRule": null,
        "updateRule": null, "deleteRule": null, "created": "", "updated": ""
    }))
    .map_err(|e| RecordsError::Internal(format!("collection filter shape: {e}")))
}

/// The [`LISTED`] members of `c`.
fn listed_values(c: &Collection) -> serde_json::Map<String, Value> {
    let rule = |r: &Option<String>| r.clone().map(Value::String).unwrap_or(Value::Null);
    let kind = if c.is_auth() { "auth" } else { "base" };
    let mut m = serde_json::Map::new();
    m.insert("id".into(), json!(c.id));
    m.insert("name".into(), json!(c.name));
    m.insert("type".into(), json!(kind));
    m.insert("system".into(), json!(c.system));
    m.insert("created".into(), json!(c.created));
    m.insert("updated".into(), json!(c.updated));
    m.insert("listRule".into(), rule(&c.list_rule));
    m.insert("viewRule".into(), rule(&c.view_rule));
    m.insert("createRule".into(), rule(&c.create_rule));
    m.insert("updateRule".into(), rule(&c.update_rule));
    m.insert("deleteRule".into(), rule(&c.delete_rule));
    m
}

/// Orders two listed values: null first, then by type (false < true, strings bytewise).
fn order(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => std::cmp::Ordering::Equal,
        (Value::Null, _) => std::cmp::Ordering::Less,
        (_, Value::Null) => std::cmp::Ordering::Greater,
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => std::cmp::Ordering::Equal,
    }
}

impl Collections {
    /// The collections (superusers only) matching `filter`, ordered by `sort` (both in
    /// PocketBase's syntax over [`LISTED`]; oldest first without a sort). A filter or sort
    /// naming anything else is a 400.
    pub fn list_matching(
        &self,
        principal: &Principal,
        filter: Option<&str>,
        sort: Option<&str>,
    ) -> Result<Vec<Collection>, RecordsError> {
        let all = self.list(principal)?;
        let shape = listed_shape()?;
        let catalog = self.catalog.current();
        let filter = match filter.map(str::trim).filter(|f| !f.is_empty()) {
            None => None,
            Some(src) => Some(
                super::filter::Filter::compile(src, &shape, &catalog, true)
                    .map_err(|e| RecordsError::BadRequest(format!("Invalid filter {e}.")))?,
            ),
        };
        let mut keys: Vec<(&'static str, bool)> = Vec::new();
        for part in sort.unwrap_or_default().split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, descending) = match part.strip_prefix('-') {
                Some(rest) => (rest, true),
                None => (part.strip_prefix('+').unwrap_or(part), false),
            };
            let Some((known, _)) = LISTED.iter().find(|(n, _)| *n == name) else {
                return Err(RecordsError::BadRequest(format!(
                    "Invalid sort field {name:?}: collections sort by {}.",
                    LISTED.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                )));
            };
            keys.push((known, descending));
        }
        let request = super::filter::RequestInfo::default();
        let now = super::filter::Now::current();
        let mut rows: Vec<(serde_json::Map<String, Value>, Collection)> = all
            .into_iter()
            .map(|c| (listed_values(&c), c))
            .filter(|(values, _)| {
                filter.as_ref().is_none_or(|f| f.matches(&shape, values, &request, &now, None))
            })
            .collect();
        rows.sort_by(|(a, _), (b, _)| {
            for (key, descending) in &keys {
                let o = order(&a[*key], &b[*key]);
                let o = if *descending { o.reverse() } else { o };
                if o != std::cmp::Ordering::Equal {
                    return o;
                }
            }
            std::cmp::Ordering::Equal
        });
        Ok(rows.into_iter().map(|(_, c)| c).collect())
    }

    /// PocketBase's collection scaffolds: the shape of a new `auth`, `base` and `view`
    /// collection (blank name and id, the system fields each type starts with). Backbone
    /// has no view collections; the `view` scaffold is PocketBase's empty one.
    pub fn scaffolds(&self, principal: &Principal) -> Result<Value, RecordsError> {
        if !principal.is_superuser() {
            return Err(superusers_only());
        }
        let mut out = serde_json::Map::new();
        for kind in ["auth", "base"] {
            let input = CollectionInput::parse(json!({"name": "scaffold", "type": kind}))?;
            let mut c = collection::build(input, None, String::new(), "", &|_| None)?;
            c.name = String::new();
            c.created = String::new();
            c.updated = String::new();
            let mut v = serde_json::to_value(&c)
                .map_err(|e| RecordsError::Internal(format!("cannot encode a scaffold: {e}")))?;
            if let Some(obj) = v.as_object_mut() {
                obj.remove("created");
                obj.remove("updated");
            }
            out.insert(kind.into(), v);
        }
        out.insert(
            "view".into(),
            json!({
                "id": "", "name": "", "type": "view", "system": false, "fields": [], "indexes": [],
                "listRule": null, "viewRule": null, "createRule": null, "updateRule": null,
                "deleteRule": null, "viewQuery": ""
            }),
        );
        Ok(Value::Object(out))
    }
}

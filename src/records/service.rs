//! The records service: collection and record operations with their access checks.
//!
//! Validation, rule checks, password hashing and JSON encoding happen on the caller's task;
//! the writer closure only re-checks what must be checked atomically (schema generation,
//! id and email uniqueness, optimistic concurrency on updates) and stages the changes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::catalog::{Catalog, CatalogEntry};
use super::collection::{self, Collection, CollectionInput, SUPERUSERS_ID};
use super::expand::{self, ExpandTree, Expander};
use super::field::{relation_ids, FieldKind};
use super::files::{self, FileSync, Upload};
use super::filter::{Env, Filter, Now, RequestInfo};
use super::hooks::{ChangeHooks, Hooks};
use super::index;
use super::list::{self, ListContext, ListParams, ListQuery};
use super::migrate;
use super::record::{self, decode, FieldsFilter, Prepared, Stored};
use super::rules;
use super::stats::CollectionStats;
use super::write::{self, identity_key, not_found};
use super::{collection_prefix, record_key, FieldError, FieldErrors, RecordsError};
use crate::audit::{self, Actor, Event};
use crate::auth::password::PasswordHasher;
use crate::auth::{Op, Principal};
use crate::store::{ReadTx, Store, Table, WriteTx};
use crate::util::id::{self, IdGenerator};
use crate::util::time;

/// How often an update retries when the record changed between its read and its write.
const UPDATE_RETRIES: usize = 8;

/// A page of rendered records.
#[derive(Debug)]
pub struct RecordPage {
    pub page: usize,
    pub per_page: usize,
    pub total_items: Option<u64>,
    pub items: Vec<Value>,
    /// In cursor mode, the next page's cursor (`None` inside: the last page).
    pub next_cursor: Option<Option<String>>,
    /// With `explain=1`: how the page was found.
    pub explain: Option<Value>,
}

/// Collections and records.
#[derive(Clone)]
pub struct Records {
    store: Store,
    catalog: Arc<RwLock<Arc<Catalog>>>,
    schema_lock: Arc<tokio::sync::Mutex<()>>,
    ids: Arc<IdGenerator>,
    hasher: PasswordHasher,
    /// Bumped after every write that may change who a token belongs to (auth records,
    /// deletes, batches, schema changes); caches of verified tokens compare it.
    auth_generation: Arc<AtomicU64>,
    /// What other modules do around writes: file placement, change consumers.
    hooks: Hooks,
    /// The time one list or search may spend evaluating filters and rules.
    query_budget: Duration,
}

fn encode(stored: &Stored) -> Result<Vec<u8>, RecordsError> {
    serde_json::to_vec(stored).map_err(|e| RecordsError::Internal(format!("cannot encode record: {e}")))
}

fn superusers_only() -> RecordsError {
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
fn rebuild_all_indexes(tx: &mut WriteTx<'_>) -> Result<(), RecordsError> {
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

/// Record JSON plus its `expand` object (when requested and kept by `fields`).
pub(crate) fn render(
    expander: &Expander<'_>,
    entry: &CatalogEntry,
    stored: Stored,
    fields: &FieldsFilter,
    tree: &ExpandTree,
) -> Result<Value, RecordsError> {
    let sees_email =
        expander.principal.sees_email_of(&entry.collection.id, stored.get("id").and_then(Value::as_str));
    let expanded = if !tree.is_empty() && fields.keeps("expand") {
        expander.expand(entry, &stored, tree)?
    } else {
        None
    };
    // The stored values move into the response (no copies).
    let mut json = record::into_json(&entry.collection, stored, sees_email, fields);
    if let (Value::Object(map), Some(e)) = (&mut json, expanded) {
        map.insert("expand".into(), fields.shape_nested("expand", Value::Object(e)));
    }
    Ok(json)
}

impl Records {
    /// Creates the built-in collections if missing and loads the catalog.
    /// Opens the records of `store`; `changes` are called inside every change's transaction.
    pub async fn open(
        store: Store,
        hasher: PasswordHasher,
        changes: Vec<Arc<dyn ChangeHooks>>,
    ) -> Result<Records, RecordsError> {
        let now = time::now();
        store
            .write(move |tx: &mut WriteTx<'_>| -> Result<(), RecordsError> {
                if tx.get(Table::Collections, SUPERUSERS_ID.as_bytes())?.is_none() {
                    let c = Collection::superusers(&now);
                    let bytes = serde_json::to_vec(&c).map_err(|e| RecordsError::Internal(e.to_string()))?;
                    tx.put(Table::Collections, c.id.as_bytes(), bytes);
                    tx.put(
                        Table::CollectionNames,
                        c.name.to_lowercase().as_bytes(),
                        c.id.as_bytes().to_vec(),
                    );
                }
                if tx.get(Table::Meta, index::REBUILD_FLAG)?.is_some() {
                    rebuild_all_indexes(tx)?;
                    tx.delete(Table::Meta, index::REBUILD_FLAG);
                }
                Ok(())
            })
            .await?;
        let catalog = store.read(|tx| Catalog::load(tx).map_err(RecordsError::from)).await?;
        Ok(Records {
            store,
            catalog: Arc::new(RwLock::new(Arc::new(catalog))),
            schema_lock: Arc::new(tokio::sync::Mutex::new(())),
            ids: Arc::new(IdGenerator::default()),
            auth_generation: Arc::new(AtomicU64::new(0)),
            hasher,
            hooks: Hooks::new(changes),
            query_budget: list::Budget::DEFAULT,
        })
    }

    /// Sets the time one list or search may spend evaluating filters and rules.
    pub fn set_query_budget(&mut self, budget: Duration) {
        self.query_budget = budget.max(Duration::from_millis(1));
    }

    /// The time one list or search may spend evaluating filters and rules.
    pub fn query_budget(&self) -> Duration {
        self.query_budget
    }

    /// The hooks of file fields (attached by the `files` module once the queue exists).
    pub fn file_sync(&self) -> &FileSync {
        &self.hooks.files
    }

    /// Every hook around writes.
    pub(crate) fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    /// The store these records live in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The password hasher shared with the auth module.
    pub fn hasher(&self) -> &PasswordHasher {
        &self.hasher
    }

    /// The current catalog snapshot.
    pub fn catalog(&self) -> Arc<Catalog> {
        match self.catalog.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Looks a collection up by id or name.
    pub fn collection(&self, id_or_name: &str) -> Result<Arc<CatalogEntry>, RecordsError> {
        self.catalog()
            .get(id_or_name)
            .cloned()
            .ok_or_else(|| RecordsError::NotFound(format!("Missing collection {id_or_name:?}.")))
    }

    /// The current auth generation (see the field's doc).
    pub fn auth_generation(&self) -> u64 {
        self.auth_generation.load(Ordering::Acquire)
    }

    /// A batch may have changed auth records.
    pub(crate) fn note_batch_written(&self) {
        self.bump_auth_generation();
    }

    /// A token was revoked (sign-out): verified-token caches filled before the revocation
    /// was committed, even by a request racing it, stop answering.
    pub(crate) fn note_token_revoked(&self) {
        self.bump_auth_generation();
    }

    fn bump_auth_generation(&self) {
        self.auth_generation.fetch_add(1, Ordering::AcqRel);
    }

    async fn reload_catalog(&self) -> Result<(), RecordsError> {
        self.bump_auth_generation();
        let fresh = self.store.read(|tx| Catalog::load(tx).map_err(RecordsError::from)).await?;
        match self.catalog.write() {
            Ok(mut guard) => *guard = Arc::new(fresh),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(fresh),
        }
        Ok(())
    }

    // ----- collections -----

    /// All collections (superusers only), oldest first.
    pub fn list_collections(&self, principal: &Principal) -> Result<Vec<Collection>, RecordsError> {
        if !principal.is_superuser() {
            return Err(superusers_only());
        }
        Ok(self.catalog().all().map(|e| e.collection.clone()).collect())
    }

    /// One collection (superusers only).
    pub fn get_collection(
        &self,
        principal: &Principal,
        id_or_name: &str,
    ) -> Result<Collection, RecordsError> {
        if !principal.is_superuser() {
            return Err(superusers_only());
        }
        Ok(self.collection(id_or_name)?.collection.clone())
    }

    /// Creates a collection.
    pub async fn create_collection(
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
        let catalog = self.catalog();
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
                let bytes =
                    serde_json::to_vec(&to_store).map_err(|e| RecordsError::Internal(e.to_string()))?;
                tx.put(Table::Collections, to_store.id.as_bytes(), bytes);
                tx.put(Table::CollectionNames, name_key.as_bytes(), to_store.id.as_bytes().to_vec());
                CollectionStats::default().save(tx, &to_store.id);
                Ok(())
            })
            .await?;
        self.reload_catalog().await?;
        Ok(built)
    }

    /// Updates a collection, migrating its records or refusing the change.
    pub async fn update_collection(
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
        let current = self.collection(id_or_name)?.collection.clone();
        if let Some(id) = input.id.as_deref().filter(|id| !id.is_empty()) {
            if id != current.id {
                return Err(RecordsError::field(
                    "Failed to update the collection.",
                    "id",
                    FieldError::new("validation_id_change", "The id cannot be changed."),
                ));
            }
        }
        let catalog = self.catalog();
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
                let fields_changed =
                    serde_json::to_value(&current.fields).ok() != serde_json::to_value(&to_store.fields).ok();
                if fields_changed || current.indexes != to_store.indexes {
                    rebuild_indexes(tx, &to_store)?;
                }
                hooks.collection_updated(tx, &catalog, &current, &to_store)?;
                let bytes =
                    serde_json::to_vec(&to_store).map_err(|e| RecordsError::Internal(e.to_string()))?;
                tx.put(Table::Collections, to_store.id.as_bytes(), bytes);
                let mut stats = CollectionStats::load(tx, &to_store.id)?;
                stats.schema_generation += 1;
                stats.save(tx, &to_store.id);
                Ok(())
            })
            .await?;
        self.reload_catalog().await?;
        Ok(built)
    }

    /// Deletes a collection and all of its records.
    pub async fn delete_collection(
        &self,
        principal: &Principal,
        id_or_name: &str,
        ip: &str,
    ) -> Result<(), RecordsError> {
        if !principal.is_superuser() {
            return Err(superusers_only());
        }
        let _guard = self.schema_lock.lock().await;
        let current = self.collection(id_or_name)?.collection.clone();
        if current.system {
            return Err(RecordsError::BadRequest("System collections cannot be deleted.".into()));
        }
        for other in self.catalog().all() {
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
        self.reload_catalog().await
    }

    // ----- records -----

    /// A page of records.
    pub async fn list_records(
        &self,
        principal: &Principal,
        collection: &str,
        params: ListParams,
        request: &RequestInfo,
    ) -> Result<RecordPage, RecordsError> {
        let entry = self.collection(collection)?;
        let rule = rules::required(Op::List, principal, &entry.collection, &self.catalog())?;
        let privileged = principal.is_superuser();
        let explain = matches!(params.explain.as_deref().map(str::trim), Some("1" | "true"));
        if explain && !privileged {
            return Err(superusers_only());
        }
        let catalog = self.catalog();
        let query = ListQuery::parse(&entry.collection, &catalog, &params, privileged)?;
        expand::check(&catalog, &entry, &query.expand, privileged)?;
        let (page, per_page) = (query.page, query.per_page);
        let request = request.clone();
        let principal = principal.clone();
        let budget = self.query_budget;
        self.store
            .read(move |tx| {
                let budget = list::Budget::new(budget);
                let ctx = ListContext {
                    catalog: &catalog,
                    principal: &principal,
                    indexes: &entry.indexes,
                    rule: rule.as_deref(),
                    request: &request,
                    now: Now::current(),
                    budget: &budget,
                };
                let result = list::run(tx, &entry.collection, &query, &ctx)?;
                let expander = Expander::new(tx, &catalog, &principal, &request);
                let mut items = Vec::with_capacity(result.items.len());
                for stored in result.items {
                    items.push(render(&expander, &entry, stored, &query.fields, &query.expand)?);
                }
                Ok(RecordPage {
                    page,
                    per_page,
                    total_items: result.total,
                    items,
                    next_cursor: result.next_cursor,
                    explain: explain.then_some(result.plan),
                })
            })
            .await
    }

    /// Checks an `expand` parameter before a write, so a bad one fails before anything is saved.
    pub fn check_expand(
        &self,
        principal: &Principal,
        collection: &str,
        expand: Option<&str>,
    ) -> Result<(), RecordsError> {
        let tree = ExpandTree::parse(expand)?;
        if tree.is_empty() {
            return Ok(());
        }
        let entry = self.collection(collection)?;
        expand::check(&self.catalog(), &entry, &tree, principal.is_superuser())
    }

    /// Adds `expand` to a record returned by a create or update (read after the write).
    pub async fn expand_response(
        &self,
        principal: &Principal,
        collection: &str,
        mut record: Value,
        expand: Option<&str>,
        request: &RequestInfo,
    ) -> Result<Value, RecordsError> {
        let tree = ExpandTree::parse(expand)?;
        if tree.is_empty() {
            return Ok(record);
        }
        let entry = self.collection(collection)?;
        let catalog = self.catalog();
        expand::check(&catalog, &entry, &tree, principal.is_superuser())?;
        let id = record.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
        let key = record_key(&entry.collection.id, &id);
        let (principal, request) = (principal.clone(), request.clone());
        let expanded = self
            .store
            .read(move |tx| {
                let Some(bytes) = tx.get(Table::Records, &key)? else {
                    return Ok(None);
                };
                let stored = decode(&bytes)?;
                let expander = Expander::new(tx, &catalog, &principal, &request);
                expander.expand(&entry, &stored, &tree)
            })
            .await?;
        if let (Value::Object(map), Some(e)) = (&mut record, expanded) {
            map.insert("expand".into(), Value::Object(e));
        }
        Ok(record)
    }

    /// One record.
    pub async fn get_record(
        &self,
        principal: &Principal,
        collection: &str,
        record_id: &str,
        fields: Option<&str>,
        expand: Option<&str>,
        request: &RequestInfo,
    ) -> Result<Value, RecordsError> {
        let entry = self.collection(collection)?;
        let rule = rules::required(Op::View, principal, &entry.collection, &self.catalog())?;
        let request = request.clone();
        if !id::is_valid_record_id(record_id) {
            return Err(not_found());
        }
        let filter = FieldsFilter::parse(fields)?;
        let tree = ExpandTree::parse(expand)?;
        let catalog = self.catalog();
        expand::check(&catalog, &entry, &tree, principal.is_superuser())?;
        let key = record_key(&entry.collection.id, record_id);
        if entry.view_reads.inline() {
            let view = View {
                catalog: &catalog,
                entry: &entry,
                rule: rule.as_deref(),
                principal,
                request: &request,
            };
            return self.store.read_now(&entry.view_reads, |tx| view.one(tx, &key, &filter, &tree));
        }
        let principal = principal.clone();
        self.store
            .read(move |tx| {
                let view = View {
                    catalog: &catalog,
                    entry: &entry,
                    rule: rule.as_deref(),
                    principal: &principal,
                    request: &request,
                };
                view.one(tx, &key, &filter, &tree)
            })
            .await
    }

    /// A non-manager changing their password must give the current one as `oldPassword`.
    async fn check_old_password(
        &self,
        current: &Stored,
        body: &Map<String, Value>,
    ) -> Result<(), RecordsError> {
        let given = body.get("oldPassword").and_then(Value::as_str).unwrap_or_default().to_string();
        let hash = current.get("password").and_then(Value::as_str).map(String::from);
        if given.is_empty() || !self.hasher.verify(given, hash).await {
            return Err(RecordsError::field(
                "Failed to update record.",
                "oldPassword",
                FieldError::new("validation_invalid_old_password", "Missing or invalid old password."),
            ));
        }
        Ok(())
    }

    async fn hash_new_password(&self, prepared: &mut Prepared) -> Result<(), RecordsError> {
        if let Some(plain) = prepared.new_password.take() {
            let hash = self.hasher.hash(plain).await.map_err(RecordsError::Internal)?;
            prepared.stored.insert("password".into(), Value::String(hash));
        }
        Ok(())
    }

    /// Creates a record.
    pub async fn create_record(
        &self,
        principal: &Principal,
        collection: &str,
        body: Map<String, Value>,
        request: &RequestInfo,
    ) -> Result<Value, RecordsError> {
        self.create_record_with_files(principal, collection, body, Vec::new(), request).await
    }

    /// Creates a record with uploaded files: the blobs the record references are moved into
    /// place (durably) before the write is queued, and removed again if it does not commit.
    pub async fn create_record_with_files(
        &self,
        principal: &Principal,
        collection: &str,
        body: Map<String, Value>,
        uploads: Vec<Upload>,
        request: &RequestInfo,
    ) -> Result<Value, RecordsError> {
        let entry = self.collection(collection)?;
        let rule = rules::required(Op::Create, principal, &entry.collection, &self.catalog())?;
        let is_auth = entry.collection.is_auth();
        let principal = principal.clone();
        let mut prepared = record::prepare_create(&entry.collection, &body, &self.ids, &time::now())?;
        prepared.uploads = files::referenced_uploads(&entry.collection, &prepared.stored, uploads);
        let mut request = request.clone();
        request.body = body;
        let catalog = self.catalog();
        // Rules are checked against the record as it would be stored, before hashing.
        let rule_view = prepared.stored.clone();
        self.hash_new_password(&mut prepared).await?;
        let response = record::to_json(
            &entry.collection,
            &prepared.stored,
            principal.is_superuser(),
            &FieldsFilter::default(),
        );
        let bytes = encode(&prepared.stored)?;
        // A rule that reads other records (`@collection`, relation paths) is evaluated on a
        // read snapshot here, in parallel with other requests, instead of on the single
        // writer. The writer re-evaluates it only if a write to a collection it reads was
        // applied since the generations were noted (before the snapshot).
        let mut checked_on_snapshot: Option<Vec<(String, u64)>> = None;
        if let Some(rule) = rule.as_ref().filter(|r| !r.reads_collections().is_empty()) {
            let noted: Vec<(String, u64)> = rule
                .reads_collections()
                .into_iter()
                .map(|id| {
                    let generation = self.store.generation(Table::Records, id.as_bytes());
                    (id, generation)
                })
                .collect();
            let allowed = if entry.create_reads.inline() {
                self.store.read_now(&entry.create_reads, |tx| {
                    Ok::<_, RecordsError>(rule_allows(tx, &catalog, rule, &entry, &rule_view, &request))
                })?
            } else {
                let (rule, entry, view, request, catalog) =
                    (rule.clone(), entry.clone(), rule_view.clone(), request.clone(), catalog.clone());
                self.store
                    .read(move |tx| {
                        Ok::<_, RecordsError>(rule_allows(tx, &catalog, &rule, &entry, &view, &request))
                    })
                    .await?
            };
            if !allowed {
                return Err(RecordsError::BadRequest("Failed to create record.".into()));
            }
            checked_on_snapshot = Some(noted);
        }
        let store = self.store.clone();
        let (collection_id, record_id) = (entry.collection.id.clone(), prepared.id.clone());
        files::place(&self.hooks.files, &collection_id, &record_id, &prepared.uploads).await?;
        let placed = prepared.uploads.clone();
        let hooks = self.hooks.clone();
        let written = self
            .store
            .write(move |tx: &mut WriteTx<'_>| -> Result<(), RecordsError> {
                let still_valid = checked_on_snapshot.as_ref().is_some_and(|noted| {
                    noted.iter().all(|(id, generation)| {
                        store.generation(Table::Records, id.as_bytes()) == *generation
                    })
                });
                if let (Some(rule), false) = (&rule, still_valid) {
                    let env = Env { catalog: &catalog, source: &*tx };
                    if !rule.matches(&entry.collection, &rule_view, &request, &Now::current(), Some(&env)) {
                        return Err(RecordsError::BadRequest("Failed to create record.".into()));
                    }
                }
                if is_auth {
                    let env = Env { catalog: &catalog, source: &*tx };
                    let manager = rules::can_manage(
                        &principal,
                        &entry.collection,
                        &catalog,
                        &rule_view,
                        &request,
                        Some(&env),
                    );
                    record::check_protected(&entry.collection, None, &rule_view, manager)?;
                }
                write::apply_create(tx, &hooks, &entry, &prepared, bytes)
            })
            .await;
        if let Err(err) = written {
            files::unplace(&self.hooks.files, &collection_id, &record_id, &placed).await;
            return Err(err);
        }
        if is_auth {
            self.bump_auth_generation();
        }
        Ok(response)
    }

    /// Updates a record (a partial body: absent fields keep their values).
    pub async fn update_record(
        &self,
        principal: &Principal,
        collection: &str,
        record_id: &str,
        body: Map<String, Value>,
        request: &RequestInfo,
    ) -> Result<Value, RecordsError> {
        self.update_record_guarded(principal, collection, record_id, body, request, None).await
    }

    /// Updates a record with uploaded files (see [`Records::create_record_with_files`]).
    pub async fn update_record_with_files(
        &self,
        principal: &Principal,
        collection: &str,
        record_id: &str,
        body: Map<String, Value>,
        uploads: Vec<Upload>,
        request: &RequestInfo,
    ) -> Result<Value, RecordsError> {
        self.update_record_inner(principal, collection, record_id, body, uploads, request, None).await
    }

    /// Like [`Records::update_record`], with `guard` checked against the record as it is
    /// updated: the write commits only if the record is still exactly what the guard saw
    /// (so a one-time token checked by the guard can be used once, even under races).
    pub async fn update_record_guarded(
        &self,
        principal: &Principal,
        collection: &str,
        record_id: &str,
        body: Map<String, Value>,
        request: &RequestInfo,
        guard: Option<RecordGuard>,
    ) -> Result<Value, RecordsError> {
        self.update_record_inner(principal, collection, record_id, body, Vec::new(), request, guard).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn update_record_inner(
        &self,
        principal: &Principal,
        collection: &str,
        record_id: &str,
        body: Map<String, Value>,
        uploads: Vec<Upload>,
        request: &RequestInfo,
        guard: Option<RecordGuard>,
    ) -> Result<Value, RecordsError> {
        let entry = self.collection(collection)?;
        let rule = rules::required(Op::Update, principal, &entry.collection, &self.catalog())?;
        let mut placed: Vec<Upload> = Vec::new();
        let result = self
            .update_attempts(principal, &entry, rule, record_id, &body, &uploads, &mut placed, request, guard)
            .await;
        if result.is_err() {
            files::unplace(&self.hooks.files, &entry.collection.id, record_id, &placed).await;
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn update_attempts(
        &self,
        principal: &Principal,
        entry: &Arc<CatalogEntry>,
        rule: Option<Arc<Filter>>,
        record_id: &str,
        body: &Map<String, Value>,
        uploads: &[Upload],
        placed: &mut Vec<Upload>,
        request: &RequestInfo,
        guard: Option<RecordGuard>,
    ) -> Result<Value, RecordsError> {
        let entry = entry.clone();
        let body = body.clone();
        let mut request = request.clone();
        request.body = body.clone();
        if !id::is_valid_record_id(record_id) {
            return Err(not_found());
        }
        let key = record_key(&entry.collection.id, record_id);
        let is_auth = entry.collection.is_auth();
        for _ in 0..UPDATE_RETRIES {
            let read_key = key.clone();
            let (rule_for_read, request_for_read, entry_for_read, principal_for_read, guard_for_read) =
                (rule.clone(), request.clone(), entry.clone(), principal.clone(), guard.clone());
            let catalog = self.catalog();
            let current_bytes = self
                .store
                .read(move |tx| {
                    let bytes = tx.get(Table::Records, &read_key)?.ok_or_else(not_found)?;
                    let current = decode(&bytes)?;
                    if let Some(guard) = &guard_for_read {
                        guard(&current)?;
                    }
                    let env = Env { catalog: &catalog, source: tx };
                    if let Some(rule) = &rule_for_read {
                        let now = Now::current();
                        if !rule.matches(
                            &entry_for_read.collection,
                            &current,
                            &request_for_read,
                            &now,
                            Some(&env),
                        ) {
                            return Err(not_found());
                        }
                    }
                    let manager = entry_for_read.collection.is_auth()
                        && rules::can_manage(
                            &principal_for_read,
                            &entry_for_read.collection,
                            &catalog,
                            &current,
                            &request_for_read,
                            Some(&env),
                        );
                    Ok((bytes, manager))
                })
                .await?;
            let (current_bytes, manager) = current_bytes;
            let current = decode(&current_bytes)?;
            let mut prepared = record::prepare_update(&entry.collection, &current, &body, &time::now())?;
            prepared.uploads =
                files::referenced_uploads(&entry.collection, &prepared.stored, uploads.to_vec());
            let fresh: Vec<Upload> = prepared
                .uploads
                .iter()
                .filter(|u| !placed.iter().any(|p| p.name == u.name))
                .cloned()
                .collect();
            files::place(&self.hooks.files, &entry.collection.id, record_id, &fresh).await?;
            placed.extend(fresh);
            if is_auth {
                record::check_protected(&entry.collection, Some(&current), &prepared.stored, manager)?;
                if !manager && prepared.new_password.is_some() {
                    self.check_old_password(&current, &body).await?;
                }
            }
            self.hash_new_password(&mut prepared).await?;
            let response = record::to_json(
                &entry.collection,
                &prepared.stored,
                principal
                    .sees_email_of(&entry.collection.id, prepared.stored.get("id").and_then(Value::as_str)),
                &FieldsFilter::default(),
            );
            let bytes = encode(&prepared.stored)?;
            let entry = entry.clone();
            let key = key.clone();
            let hooks = self.hooks.clone();
            let outcome = self
                .store
                .write(move |tx: &mut WriteTx<'_>| -> Result<bool, RecordsError> {
                    match tx.get(Table::Records, &key)? {
                        None => return Err(not_found()),
                        // Changed since it was read: retry with the new state.
                        Some(now) if now != current_bytes => return Ok(false),
                        Some(_) => {}
                    }
                    write::apply_update(tx, &hooks, &entry, &current, &prepared, bytes)?;
                    Ok(true)
                })
                .await?;
            if outcome {
                if is_auth {
                    self.bump_auth_generation();
                }
                return Ok(response);
            }
        }
        Err(RecordsError::Conflict("The record is being changed concurrently; retry.".into()))
    }

    /// Deletes a record.
    pub async fn delete_record(
        &self,
        principal: &Principal,
        collection: &str,
        record_id: &str,
        request: &RequestInfo,
    ) -> Result<(), RecordsError> {
        let entry = self.collection(collection)?;
        let rule = rules::required(Op::Delete, principal, &entry.collection, &self.catalog())?;
        let request = request.clone();
        if !id::is_valid_record_id(record_id) {
            return Err(not_found());
        }
        let record_id = record_id.to_string();
        let catalog = self.catalog();
        let hooks = self.hooks.clone();
        self.store
            .write(move |tx: &mut WriteTx<'_>| -> Result<(), RecordsError> {
                write::apply_delete(tx, &hooks, &catalog, &entry, &record_id, rule.as_deref(), &request)
            })
            .await?;
        self.bump_auth_generation();
        Ok(())
    }

    /// Gives an auth record a new token key, which revokes every token issued to it; the
    /// audit `event` (if any) commits with it.
    pub async fn rotate_token_key(
        &self,
        collection_id: &str,
        record_id: &str,
        event: Option<crate::audit::Event>,
    ) -> Result<(), RecordsError> {
        let entry = self.collection(collection_id)?;
        if !id::is_valid_record_id(record_id) {
            return Err(not_found());
        }
        let key = record_key(&entry.collection.id, record_id);
        let hooks = self.hooks.clone();
        self.store
            .write(move |tx: &mut WriteTx<'_>| -> Result<(), RecordsError> {
                let current = decode(&tx.get(Table::Records, &key)?.ok_or_else(not_found)?)?;
                let mut stored = current.clone();
                stored.insert("tokenKey".into(), Value::String(id::random_string(50)));
                let prepared = Prepared {
                    id: record_id_of(&current),
                    stored,
                    custom_id: false,
                    new_password: None,
                    uploads: Vec::new(),
                };
                let bytes = encode(&prepared.stored)?;
                write::apply_update(tx, &hooks, &entry, &current, &prepared, bytes)?;
                if let Some(event) = event {
                    crate::audit::append(tx, event)?;
                }
                Ok(())
            })
            .await?;
        self.bump_auth_generation();
        Ok(())
    }

    /// Finds an auth record by collection and email (for sign-in).
    pub async fn find_auth_record(
        &self,
        collection_id: &str,
        email: &str,
    ) -> Result<Option<Stored>, RecordsError> {
        let ikey = identity_key(collection_id, &email.to_lowercase());
        let collection_id = collection_id.to_string();
        self.store
            .read(move |tx| {
                let Some(id) = tx.get(Table::AuthIdentities, &ikey)? else {
                    return Ok(None);
                };
                let id = String::from_utf8_lossy(&id).to_string();
                match tx.get(Table::Records, &record_key(&collection_id, &id))? {
                    Some(bytes) => Ok(Some(decode(&bytes)?)),
                    None => Ok(None),
                }
            })
            .await
    }

    /// Loads one stored record regardless of rules (for token checks).
    pub async fn load_stored(
        &self,
        collection_id: &str,
        record_id: &str,
    ) -> Result<Option<Stored>, RecordsError> {
        if !id::is_valid_record_id(record_id) {
            return Ok(None);
        }
        let key = record_key(collection_id, record_id);
        self.store
            .read(move |tx| match tx.get(Table::Records, &key)? {
                Some(bytes) => Ok(Some(decode(&bytes)?)),
                None => Ok(None),
            })
            .await
    }

    /// Number of records in a collection.
    pub async fn count(&self, collection_id: &str) -> Result<u64, RecordsError> {
        let id = collection_id.to_string();
        self.store.read(move |tx| Ok(CollectionStats::read(tx, &id)?.count)).await
    }

    /// The shared id generator (ids stay strictly increasing across all writers).
    pub fn id_generator(&self) -> Arc<IdGenerator> {
        self.ids.clone()
    }
}

/// A check on the current state of a record, run where an update reads it.
pub type RecordGuard = Arc<dyn Fn(&Stored) -> Result<(), RecordsError> + Send + Sync>;

fn record_id_of(stored: &Stored) -> String {
    stored.get("id").and_then(Value::as_str).unwrap_or_default().to_string()
}

/// What a single-record view needs besides the snapshot.
struct View<'a> {
    catalog: &'a Catalog,
    entry: &'a CatalogEntry,
    rule: Option<&'a Filter>,
    principal: &'a Principal,
    request: &'a RequestInfo,
}

impl View<'_> {
    /// The record under `key` rendered for the caller, or not found (also when the view
    /// rule refuses it).
    fn one(
        &self,
        tx: &ReadTx,
        key: &[u8],
        filter: &FieldsFilter,
        tree: &ExpandTree,
    ) -> Result<Value, RecordsError> {
        let bytes = tx.get(Table::Records, key)?.ok_or_else(not_found)?;
        let stored = decode(&bytes)?;
        if let Some(rule) = self.rule {
            if !rule_allows(tx, self.catalog, rule, self.entry, &stored, self.request) {
                return Err(not_found());
            }
        }
        let expander = Expander::new(tx, self.catalog, self.principal, self.request);
        render(&expander, self.entry, stored, filter, tree)
    }
}

/// Whether `rule` admits `view` (a record as it would be stored) on the snapshot `tx`.
fn rule_allows(
    tx: &ReadTx,
    catalog: &Catalog,
    rule: &Filter,
    entry: &CatalogEntry,
    view: &Stored,
    request: &RequestInfo,
) -> bool {
    let env = Env { catalog, source: tx };
    rule.matches(&entry.collection, view, request, &Now::current(), Some(&env))
}

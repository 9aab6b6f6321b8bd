//! The records service: record operations with their access checks (collection
//! definitions are [`Collections`]).
//!
//! Validation, rule checks, password hashing and JSON encoding happen on the caller's task;
//! the writer closure only re-checks what must be checked atomically (schema generation,
//! id and email uniqueness, optimistic concurrency on updates) and stages the changes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::catalog::{Catalog, CatalogEntry};
use super::collection::{Collection, SUPERUSERS_ID};
use super::collections::{put_definition, rebuild_all_indexes, superusers_only, Collections, SharedCatalog};
use super::expand::{self, ExpandTree, Expander};
use super::files::{self, FileSync, Upload};
use super::filter::{Env, Filter, Now, RequestInfo};
use super::hooks::{ChangeHooks, Hooks};
use super::index;
use super::list::{self, ListContext, ListParams, ListQuery};
use super::record::{self, decode, FieldsFilter, Prepared, Stored};
use super::rules;
use super::stats::CollectionStats;
use super::write::{self, identity_key, not_found};
use super::{record_key, FieldError, RecordsError};
use crate::auth::password::PasswordHasher;
use crate::auth::{Op, Principal};
use crate::store::{ReadTx, Store, Table, WriteTx};
use crate::util::id::{self, IdGenerator};
use crate::util::time;

/// How often an update retries when the record changed between its read and its write.
const UPDATE_RETRIES: usize = 8;
/// The same for an update with modifiers (`n+`, `tags-`, ...): concurrent increments of one
/// record are expected to collide (each group commit lets one of them through), and each
/// retry recomputes the modifiers from the new stored value, so none is lost.
const MODIFIER_RETRIES: usize = 64;

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

/// What a record create or update writes: the fields of the body (an update's body is
/// partial: absent fields keep their values) and the uploaded files it may reference.
#[derive(Debug, Default)]
pub struct RecordWrite {
    pub body: Map<String, Value>,
    pub uploads: Vec<Upload>,
}

impl RecordWrite {
    /// A write of `body` alone.
    pub fn body(body: Map<String, Value>) -> RecordWrite {
        RecordWrite { body, ..RecordWrite::default() }
    }
}

/// One update being attempted (see [`Records::update_record`]).
struct Update<'a> {
    principal: &'a Principal,
    entry: &'a Arc<CatalogEntry>,
    rule: Option<Arc<Filter>>,
    record_id: &'a str,
    write: &'a RecordWrite,
    request: &'a RequestInfo,
    guard: Option<RecordGuard>,
}

/// Record operations.
#[derive(Clone)]
pub struct Records {
    store: Store,
    catalog: SharedCatalog,
    /// Collection definitions (sharing this catalog, hooks and auth generation).
    collections: Collections,
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
                    put_definition(tx, &c)?;
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
        let catalog =
            SharedCatalog::new(store.read(|tx| Catalog::load(tx).map_err(RecordsError::from)).await?);
        let hooks = Hooks::new(changes);
        let auth_generation = Arc::new(AtomicU64::new(0));
        let collections =
            Collections::new(store.clone(), catalog.clone(), hooks.clone(), auth_generation.clone());
        Ok(Records {
            store,
            catalog,
            collections,
            ids: Arc::new(IdGenerator::default()),
            auth_generation,
            hasher,
            hooks,
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

    /// The collections service (schema changes).
    pub fn collections(&self) -> &Collections {
        &self.collections
    }

    /// The current catalog snapshot.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.current()
    }

    /// Looks a collection up by id or name.
    pub fn collection(&self, id_or_name: &str) -> Result<Arc<CatalogEntry>, RecordsError> {
        self.catalog.entry(id_or_name)
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

    /// Creates a record. The blobs of uploaded files the record references are moved into
    /// place (durably) before the write is queued, and removed again if it does not commit.
    pub async fn create_record(
        &self,
        principal: &Principal,
        collection: &str,
        write: RecordWrite,
        request: &RequestInfo,
    ) -> Result<Value, RecordsError> {
        let RecordWrite { body, uploads } = write;
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

    /// Updates a record (uploads as in [`Records::create_record`]). With a `guard`, checked
    /// against the record as it is updated, the write commits only if the record is still
    /// exactly what the guard saw (so a one-time token checked by the guard can be used
    /// once, even under races).
    pub async fn update_record(
        &self,
        principal: &Principal,
        collection: &str,
        record_id: &str,
        write: RecordWrite,
        request: &RequestInfo,
        guard: Option<RecordGuard>,
    ) -> Result<Value, RecordsError> {
        let entry = self.collection(collection)?;
        let rule = rules::required(Op::Update, principal, &entry.collection, &self.catalog())?;
        let mut placed: Vec<Upload> = Vec::new();
        let update = Update { principal, entry: &entry, rule, record_id, write: &write, request, guard };
        let result = self.update_attempts(&update, &mut placed).await;
        if result.is_err() {
            files::unplace(&self.hooks.files, &entry.collection.id, record_id, &placed).await;
        }
        result
    }

    /// Reads, prepares and writes `update`, again while the record changes in between.
    async fn update_attempts(
        &self,
        update: &Update<'_>,
        placed: &mut Vec<Upload>,
    ) -> Result<Value, RecordsError> {
        let Update { principal, entry, record_id, write, .. } = *update;
        let (rule, guard, uploads) = (update.rule.clone(), update.guard.clone(), write.uploads.as_slice());
        let entry = entry.clone();
        let body = write.body.clone();
        let mut request = update.request.clone();
        request.body = body.clone();
        if !id::is_valid_record_id(record_id) {
            return Err(not_found());
        }
        let key = record_key(&entry.collection.id, record_id);
        let is_auth = entry.collection.is_auth();
        let attempts = if super::modifiers::any(&body) { MODIFIER_RETRIES } else { UPDATE_RETRIES };
        for _ in 0..attempts {
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

    /// Finds an auth record by one of its collection's identity fields: `email` through the
    /// identity table (case-insensitive), any other through the field's unique index (an
    /// exact match, as PocketBase's lookup).
    pub async fn find_by_identity(
        &self,
        collection_id: &str,
        field: &str,
        identity: &str,
    ) -> Result<Option<Stored>, RecordsError> {
        if field == "email" {
            return self.find_auth_record(collection_id, identity).await;
        }
        let entry = self.collection(collection_id)?;
        let Some(def) = index::unique_on(&entry.indexes, field) else {
            return Ok(None);
        };
        let prefix = index::prefix(collection_id, &def.name, &[&Value::String(identity.to_string())]);
        let collection_id = collection_id.to_string();
        self.store
            .read(move |tx| {
                let mut found: Option<String> = None;
                tx.scan_prefix(Table::RecordIndex, &prefix, false, None, |key, _| {
                    found = index::entry_id(key).map(str::to_string);
                    crate::store::ScanControl::Stop
                })?;
                let Some(id) = found else { return Ok(None) };
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

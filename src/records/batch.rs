//! `POST /api/batch`: several record writes applied all-or-nothing in one transaction.
//!
//! Every sub-request is checked against its collection's rules like a single request. All
//! of them run inside one write closure of the group-commit writer, so later sub-requests
//! see earlier ones, and one failure discards them all. Passwords (auth collections) are
//! hashed before the transaction so the writer never runs Argon2.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::catalog::{Catalog, CatalogEntry};
use super::files::{self, Upload};
use super::filter::{Env, Now, RequestInfo};
use super::hooks::Hooks;
use super::record::{self, decode, FieldsFilter, Prepared};
use super::rules::{self, Access};
use super::service::Records;
use super::write::{self, not_found};
use super::{record_key, FieldError, RecordsError};
use crate::auth::{Op, Principal};
use crate::store::{Table, WriteTx};
use crate::util::id::{self, IdGenerator};
use crate::util::time;

/// One sub-request as sent.
#[derive(Debug, Clone)]
pub struct BatchOp {
    pub method: String,
    pub url: String,
    pub body: Map<String, Value>,
    /// Files sent for this request (multipart batches), their names already in `body`.
    pub uploads: Vec<Upload>,
}

/// One sub-response.
#[derive(Debug, Clone)]
pub struct BatchReply {
    pub status: u16,
    pub body: Value,
}

#[derive(Debug, Clone)]
enum Action {
    Create,
    Upsert,
    Update(String),
    Delete(String),
}

struct Planned {
    entry: Arc<CatalogEntry>,
    action: Action,
    body: Map<String, Value>,
    fields: FieldsFilter,
    password_hash: Option<String>,
    uploads: Vec<Upload>,
}

fn failed(index: usize, error: RecordsError) -> RecordsError {
    RecordsError::Batch { index, error: Box::new(error) }
}

/// The collection a sub-request's url names, if it is a records url.
pub fn collection_in_url(url: &str) -> Option<String> {
    parse_url(url).ok().map(|(collection, _, _)| collection)
}

/// Splits `/api/collections/{c}/records[/{id}][?query]`.
fn parse_url(url: &str) -> Result<(String, Option<String>, Option<String>), RecordsError> {
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (url, None),
    };
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let fields = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "fields").map(|(_, v)| v.into_owned())
    });
    match parts.as_slice() {
        ["", "api", "collections", c, "records"] => Ok((c.to_string(), None, fields)),
        ["", "api", "collections", c, "records", id] => Ok((c.to_string(), Some(id.to_string()), fields)),
        _ => Err(RecordsError::BadRequest(format!(
            "Unsupported batch url {url:?}: only /api/collections/{{collection}}/records[/{{id}}]."
        ))),
    }
}

impl Records {
    /// Runs `ops` in one transaction. At most `max` sub-requests.
    pub async fn batch(
        &self,
        principal: &Principal,
        ops: Vec<BatchOp>,
        request: &RequestInfo,
        max: usize,
    ) -> Result<Vec<BatchReply>, RecordsError> {
        if ops.is_empty() {
            return Err(RecordsError::field(
                "Failed to run the batch.",
                "requests",
                FieldError::new("validation_required", "Cannot be blank."),
            ));
        }
        if ops.len() > max {
            return Err(RecordsError::field(
                "Failed to run the batch.",
                "requests",
                FieldError::new("validation_too_many", format!("At most {max} requests per batch.")),
            ));
        }
        let mut planned = Vec::with_capacity(ops.len());
        let mut placed: Vec<(String, String, Vec<Upload>)> = Vec::new();
        let result = self.plan_and_run(principal, ops, request, &mut planned, &mut placed).await;
        if result.is_err() {
            self.unplace_all(&placed).await;
        }
        result
    }

    /// Removes the blobs a failed batch put into place.
    async fn unplace_all(&self, placed: &[(String, String, Vec<Upload>)]) {
        for (collection_id, record_id, uploads) in placed {
            files::unplace(&self.file_sync_of(), collection_id, record_id, uploads).await;
        }
    }

    fn file_sync_of(&self) -> super::files::FileSync {
        self.hooks().files.clone()
    }

    async fn plan_and_run(
        &self,
        principal: &Principal,
        ops: Vec<BatchOp>,
        request: &RequestInfo,
        planned: &mut Vec<Planned>,
        placed: &mut Vec<(String, String, Vec<Upload>)>,
    ) -> Result<Vec<BatchReply>, RecordsError> {
        for (index, op) in ops.into_iter().enumerate() {
            let (collection, record_id, fields) = parse_url(&op.url).map_err(|e| failed(index, e))?;
            let entry = self.collection(&collection).map_err(|e| failed(index, e))?;
            let action = match (op.method.to_ascii_uppercase().as_str(), record_id) {
                ("POST", None) => Action::Create,
                ("PUT", None) => Action::Upsert,
                ("PATCH", Some(id)) => Action::Update(id),
                ("DELETE", Some(id)) => Action::Delete(id),
                (method, _) => {
                    return Err(failed(
                        index,
                        RecordsError::BadRequest(format!(
                            "Unsupported batch method {method} for {}.",
                            op.url
                        )),
                    ))
                }
            };
            // Rules that deny outright (null rules for non-superusers) fail before the transaction.
            let slots: &[Op] = match &action {
                Action::Create => &[Op::Create],
                Action::Upsert => &[Op::Create, Op::Update],
                Action::Update(_) => &[Op::Update],
                Action::Delete(_) => &[Op::Delete],
            };
            for &slot in slots {
                if matches!(rules::access(slot, principal, &entry.collection, &self.catalog()), Access::Deny)
                {
                    return Err(failed(
                        index,
                        RecordsError::Forbidden("Only superusers can perform this action.".into()),
                    ));
                }
            }
            let password_hash = match op.body.get("password").and_then(Value::as_str) {
                Some(p)
                    if entry.collection.is_auth()
                        && !p.is_empty()
                        && p.len() <= super::field::PASSWORD_MAX =>
                {
                    Some(self.hasher().hash(p.to_string()).await.map_err(RecordsError::Internal)?)
                }
                _ => None,
            };
            let mut body = op.body;
            if !op.uploads.is_empty() {
                // Blobs go into place under the record's id before the transaction, so a
                // create with files gets its id now.
                let record_id = match &action {
                    Action::Update(id) => id.clone(),
                    _ => match body.get("id").and_then(Value::as_str).filter(|id| !id.is_empty()) {
                        Some(id) => id.to_string(),
                        None => {
                            let id = self.id_generator().next();
                            body.insert("id".into(), Value::String(id.clone()));
                            id
                        }
                    },
                };
                if !id::is_valid_record_id(&record_id) {
                    return Err(failed(index, not_found()));
                }
                let placed_now =
                    files::place(&self.file_sync_of(), &entry.collection.id, &record_id, &op.uploads).await;
                if let Err(e) = placed_now {
                    self.unplace_all(placed).await;
                    return Err(failed(index, e));
                }
                placed.push((entry.collection.id.clone(), record_id, op.uploads.clone()));
            }
            planned.push(Planned {
                entry,
                action,
                body,
                fields: FieldsFilter::parse(fields.as_deref()).map_err(|e| failed(index, e))?,
                password_hash,
                uploads: op.uploads,
            });
        }
        let planned = std::mem::take(planned);
        let principal = principal.clone();
        let request = request.clone();
        let ids = self.id_generator();
        let catalog = self.catalog();
        let hooks = self.hooks().clone();
        let replies = self
            .store()
            .write(move |tx: &mut WriteTx<'_>| -> Result<Vec<BatchReply>, RecordsError> {
                let mut replies = Vec::with_capacity(planned.len());
                for (index, op) in planned.into_iter().enumerate() {
                    let reply = run_one(tx, &hooks, &catalog, &op, &principal, &request, &ids)
                        .map_err(|e| failed(index, e))?;
                    replies.push(reply);
                }
                Ok(replies)
            })
            .await;
        if replies.is_ok() {
            self.note_batch_written();
        }
        replies
    }
}

fn with_password(mut prepared: Prepared, hash: &Option<String>) -> Result<Prepared, RecordsError> {
    if prepared.new_password.take().is_some() {
        let hash = hash.clone().ok_or_else(|| RecordsError::BadRequest("Invalid password.".into()))?;
        prepared.stored.insert("password".into(), Value::String(hash));
    }
    Ok(prepared)
}

fn encode(stored: &super::record::Stored) -> Result<Vec<u8>, RecordsError> {
    serde_json::to_vec(stored).map_err(|e| RecordsError::Internal(format!("cannot encode record: {e}")))
}

fn run_one(
    tx: &mut WriteTx<'_>,
    hooks: &Hooks,
    catalog: &Catalog,
    op: &Planned,
    principal: &Principal,
    request: &RequestInfo,
    ids: &IdGenerator,
) -> Result<BatchReply, RecordsError> {
    let entry = &op.entry;
    let collection = &entry.collection;
    let mut request = request.clone();
    request.body = op.body.clone();
    let now = Now::current();
    let privileged = principal.is_superuser();
    let existing_id = match &op.action {
        Action::Upsert => op
            .body
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| id::is_valid_record_id(id))
            .filter(|id| matches!(tx.get(Table::Records, &record_key(&collection.id, id)), Ok(Some(_))))
            .map(str::to_string),
        Action::Update(id) => Some(id.clone()),
        _ => None,
    };
    match (&op.action, existing_id) {
        (Action::Delete(id), _) => {
            if !id::is_valid_record_id(id) {
                return Err(not_found());
            }
            let rule = rules::required(Op::Delete, principal, collection, catalog)?;
            write::apply_delete(tx, hooks, catalog, entry, id, rule.as_deref(), &request)?;
            Ok(BatchReply { status: 204, body: Value::Null })
        }
        (Action::Update(_) | Action::Upsert, Some(id)) => {
            if !id::is_valid_record_id(&id) {
                return Err(not_found());
            }
            let rule = rules::required(Op::Update, principal, collection, catalog)?;
            let bytes = tx.get(Table::Records, &record_key(&collection.id, &id))?.ok_or_else(not_found)?;
            let current = decode(&bytes)?;
            if let Some(rule) = &rule {
                if !rule.matches(collection, &current, &request, &now, Some(&Env { catalog, source: &*tx })) {
                    return Err(not_found());
                }
            }
            let mut prepared = record::prepare_update(collection, &current, &op.body, &time::now())?;
            prepared.uploads = files::referenced_uploads(collection, &prepared.stored, op.uploads.clone());
            let env = Env { catalog, source: &*tx };
            let manager = rules::can_manage(principal, collection, catalog, &current, &request, Some(&env));
            record::check_protected(collection, Some(&current), &prepared.stored, manager)?;
            if collection.is_auth() && !manager && prepared.new_password.is_some() {
                return Err(RecordsError::field(
                    "Failed to update record.",
                    "password",
                    FieldError::new(
                        "validation_manager_only",
                        "Change a password with a single update request that gives oldPassword.",
                    ),
                ));
            }
            let prepared = with_password(prepared, &op.password_hash)?;
            let body = record::to_json(collection, &prepared.stored, privileged, &op.fields);
            let bytes = encode(&prepared.stored)?;
            write::apply_update(tx, hooks, entry, &current, &prepared, bytes)?;
            Ok(BatchReply { status: 200, body })
        }
        (Action::Update(_), None) => Err(not_found()),
        (Action::Create | Action::Upsert, _) => {
            let rule = rules::required(Op::Create, principal, collection, catalog)?;
            let mut prepared = record::prepare_create(collection, &op.body, ids, &time::now())?;
            prepared.uploads = files::referenced_uploads(collection, &prepared.stored, op.uploads.clone());
            if let Some(rule) = &rule {
                if !rule.matches(
                    collection,
                    &prepared.stored,
                    &request,
                    &now,
                    Some(&Env { catalog, source: &*tx }),
                ) {
                    return Err(RecordsError::BadRequest("Failed to create record.".into()));
                }
            }
            let env = Env { catalog, source: &*tx };
            let manager =
                rules::can_manage(principal, collection, catalog, &prepared.stored, &request, Some(&env));
            record::check_protected(collection, None, &prepared.stored, manager)?;
            let prepared = with_password(prepared, &op.password_hash)?;
            let body = record::to_json(collection, &prepared.stored, privileged, &op.fields);
            let bytes = encode(&prepared.stored)?;
            write::apply_create(tx, hooks, entry, &prepared, bytes)?;
            Ok(BatchReply { status: 200, body })
        }
    }
}

impl Records {
    /// Deletes every record of `collection` in one transaction, each as a delete by a
    /// superuser would (cascades, references, file removal, change hooks), all or nothing
    /// (PocketBase's truncate). Superusers only; `_superusers` cannot be truncated (it would
    /// remove every superuser, the caller too).
    pub async fn truncate(&self, principal: &Principal, collection: &str) -> Result<u64, RecordsError> {
        if !principal.is_superuser() {
            return Err(RecordsError::Forbidden("Only superusers can perform this action.".into()));
        }
        let entry = self.collection(collection)?;
        if entry.collection.name == "_superusers" {
            return Err(RecordsError::BadRequest("The _superusers collection cannot be truncated.".into()));
        }
        let catalog = self.catalog();
        let hooks = self.hooks().clone();
        let deleted = self
            .store()
            .write(move |tx: &mut WriteTx<'_>| -> Result<u64, RecordsError> {
                let prefix = super::collection_prefix(&entry.collection.id);
                let ids: Vec<String> = tx
                    .collect_prefix(Table::Records, &prefix)?
                    .into_iter()
                    .map(|(key, _)| String::from_utf8_lossy(&key[prefix.len()..]).to_string())
                    .collect();
                let request = RequestInfo::default();
                let mut deleted = 0;
                for id in ids {
                    // A cascade from an earlier delete may have removed it already.
                    if tx.get(Table::Records, &record_key(&entry.collection.id, &id))?.is_none() {
                        continue;
                    }
                    write::apply_delete(tx, &hooks, &catalog, &entry, &id, None, &request)?;
                    deleted += 1;
                }
                Ok(deleted)
            })
            .await?;
        self.note_batch_written();
        Ok(deleted)
    }
}

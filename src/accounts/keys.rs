//! API keys for server-to-server clients: created by superusers, scoped to collections ×
//! operations, optionally expiring, stored as a SHA-256 hash (the secret is shown once),
//! revocable, with the last-used time recorded (at most once a minute per key).
//!
//! A key is `bbk_<id>_<secret>` and is sent like a token: `Authorization: Bearer bbk_…`.
//! All keys are held in memory (they are few), so checking one costs no store read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::audit::{self, Actor, Event};
use crate::auth::{Op, Principal, Scopes};
use crate::records::{Records, RecordsError};
use crate::store::{ScanControl, Store, StoreError, Table, WriteTx};
use crate::util::invalid::{parse_object, Collector, Invalid, Typed};
use crate::util::{id, time};

/// Prefix of every API key.
pub const PREFIX: &str = "bbk_";
/// How often a key's last-used time is written at most.
const LAST_USED_EVERY: Duration = Duration::from_secs(60);
/// The capability to send email through `POST /api/mail/send`.
pub const MAIL_SEND: &str = "mail.send";
/// The capability to read `/metrics`, `/api/metrics` and `/api/logs`.
pub const METRICS_READ: &str = "metrics.read";
/// Every capability a key can hold.
pub const CAPABILITIES: [&str; 2] = [MAIL_SEND, METRICS_READ];
/// Most keys a server holds.
const MAX_KEYS: usize = 1000;

/// One scope: operations on one collection (by id), or on all (`*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub collection: String,
    pub operations: Vec<String>,
}

/// A stored API key (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    /// SHA-256 of the secret, hex.
    pub hash: String,
    pub scopes: Vec<Grant>,
    /// Abilities beyond records ([`CAPABILITIES`]).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Expiry (record time format), "" for never.
    pub expires: String,
    pub created: String,
    pub created_by: String,
    pub last_used: String,
}

impl ApiKey {
    /// The key as the API shows it: no hash, scopes with collection names.
    pub fn to_json(&self, records: &Records) -> Value {
        let scopes: Vec<Value> = self
            .scopes
            .iter()
            .map(|g| {
                let name = if g.collection == "*" {
                    "*".to_string()
                } else {
                    records.collection(&g.collection).map(|e| e.collection.name.clone()).unwrap_or_default()
                };
                json!({"collection": g.collection, "collectionName": name, "operations": g.operations})
            })
            .collect();
        json!({
            "id": self.id,
            "name": self.name,
            "scopes": scopes,
            "capabilities": self.capabilities,
            "expires": self.expires,
            "created": self.created,
            "createdBy": self.created_by,
            "lastUsed": self.last_used,
        })
    }

    fn principal(&self) -> Principal {
        let grants = self
            .scopes
            .iter()
            .map(|g| (g.collection.clone(), g.operations.iter().filter_map(|o| Op::parse(o)).collect()))
            .collect();
        Principal::ApiKey {
            id: self.id.clone(),
            scopes: Arc::new(Scopes { grants, capabilities: self.capabilities.clone() }),
        }
    }

    fn expired(&self) -> bool {
        !self.expires.is_empty() && self.expires <= time::now()
    }
}

fn sha256_hex(input: &[u8]) -> String {
    Sha256::digest(input).iter().map(|b| format!("{b:02x}")).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The API key registry.
#[derive(Clone)]
pub struct Keys {
    store: Store,
    keys: Arc<RwLock<HashMap<String, ApiKey>>>,
    used: Arc<Mutex<HashMap<String, Instant>>>,
}

/// The summary of every refused key creation.
const CREATE_FAILED: &str = "Failed to create the API key.";

/// Collection → operations, as sent.
type ScopesInput = IndexMap<String, Typed<Vec<Typed<String>>>>;

/// The body of `POST /api/keys`. An unknown member is refused by name: a misspelt
/// `expires` must not create a key that never expires.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateInput {
    #[serde(default)]
    name: Option<Typed<String>>,
    /// Collection (id, name or `*`) → operations, in the order given.
    #[serde(default)]
    scopes: Option<Typed<ScopesInput>>,
    #[serde(default)]
    capabilities: Option<Typed<Vec<Typed<String>>>>,
    /// A future date, or `""`/`null` for never.
    #[serde(default)]
    expires: Option<Typed<String>>,
}

/// The capabilities of a key, each once; unknown ones are noted in `c`.
fn known_capabilities(c: &mut Collector, list: Vec<Typed<String>>) -> Vec<String> {
    let mut capabilities: Vec<String> = Vec::new();
    for capability in list {
        match capability {
            Typed::Ok(name) if CAPABILITIES.contains(&name.as_str()) => {
                if !capabilities.contains(&name) {
                    capabilities.push(name);
                }
            }
            _ => c.add(
                "capabilities",
                "validation_invalid_capability",
                format!("Known capabilities: {}.", CAPABILITIES.join(", ")),
            ),
        }
    }
    capabilities
}

/// The grants of `scopes` (collections resolved to ids, operations each once); problems
/// are noted in `c`.
fn grants(c: &mut Collector, records: &Records, scopes: ScopesInput) -> Vec<Grant> {
    let mut grants = Vec::new();
    for (collection, ops) in scopes {
        let collection_id = if collection == "*" {
            "*".to_string()
        } else {
            match records.collection(&collection) {
                Ok(e) if e.collection.system => {
                    c.add(
                        "scopes",
                        "validation_system_collection",
                        format!(
                            "API keys cannot be scoped to the system collection {:?}.",
                            e.collection.name
                        ),
                    );
                    continue;
                }
                Ok(e) => e.collection.id.clone(),
                Err(_) => {
                    c.add(
                        "scopes",
                        "validation_unknown_collection",
                        format!("No collection {collection:?}."),
                    );
                    continue;
                }
            }
        };
        let list = match ops {
            Typed::Ok(list) if !list.is_empty() => list,
            _ => {
                c.add("scopes", "validation_invalid_scope", "Each scope is a non-empty list of operations.");
                continue;
            }
        };
        let mut operations: Vec<String> = Vec::new();
        for op in list {
            let parsed = match op {
                Typed::Ok(op) => Op::parse(&op),
                Typed::Wrong(_) => None,
            };
            match parsed {
                Some(op) if operations.iter().any(|o| o == op.as_str()) => {}
                Some(op) => operations.push(op.as_str().to_string()),
                None => c.add(
                    "scopes",
                    "validation_invalid_scope",
                    "Operations are list, view, create, update and delete.",
                ),
            }
        }
        grants.push(Grant { collection: collection_id, operations });
    }
    grants
}

impl Keys {
    /// Loads every key.
    pub async fn open(store: Store) -> Result<Keys, StoreError> {
        let keys = store
            .read(|tx| {
                let mut keys = HashMap::new();
                let mut bad = None;
                tx.scan_prefix(Table::ApiKeys, b"", false, None, |_, v| {
                    match serde_json::from_slice::<ApiKey>(v) {
                        Ok(k) => {
                            keys.insert(k.id.clone(), k);
                        }
                        Err(e) => bad = Some(e.to_string()),
                    }
                    ScanControl::Continue
                })?;
                match bad {
                    Some(e) => Err(StoreError::Internal(format!("corrupt API key: {e}"))),
                    None => Ok(keys),
                }
            })
            .await?;
        Ok(Keys { store, keys: Arc::new(RwLock::new(keys)), used: Arc::new(Mutex::new(HashMap::new())) })
    }

    /// Every key, oldest first.
    pub fn list(&self) -> Vec<ApiKey> {
        let mut all: Vec<ApiKey> =
            self.keys.read().map(|k| k.values().cloned().collect()).unwrap_or_default();
        all.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        all
    }

    /// One key.
    pub fn get(&self, key_id: &str) -> Option<ApiKey> {
        self.keys.read().ok().and_then(|k| k.get(key_id).cloned())
    }

    /// Creates a key from `{"name", "scopes": {"<collection>": ["list", ...]}, "capabilities",
    /// "expires"}` and returns it with its secret (the only time the secret exists outside
    /// the client). Every problem with the body is reported at once.
    pub async fn create(
        &self,
        records: &Records,
        body: &Map<String, Value>,
        actor: Actor,
        ip: &str,
    ) -> Result<(ApiKey, String), RecordsError> {
        let input: CreateInput = parse_object(Value::Object(body.clone()), CREATE_FAILED)?;
        let mut c = Collector::new();
        let name = match input.name {
            Some(Typed::Ok(s)) if !s.trim().is_empty() && s.len() <= 200 => s.trim().to_string(),
            _ => {
                c.add("name", "validation_required", "Give the key a name (1-200 characters).");
                String::new()
            }
        };
        let capabilities = match input.capabilities {
            None => Vec::new(),
            Some(Typed::Ok(list)) => known_capabilities(&mut c, list),
            Some(Typed::Wrong(_)) => {
                c.add("capabilities", "validation_invalid_type", "Must be a list of capability names.");
                Vec::new()
            }
        };
        let scopes = match input.scopes {
            None if !capabilities.is_empty() => Vec::new(),
            Some(Typed::Ok(map)) if map.is_empty() && !capabilities.is_empty() => Vec::new(),
            Some(Typed::Ok(map)) if !map.is_empty() => grants(&mut c, records, map),
            _ => {
                c.add(
                    "scopes",
                    "validation_required",
                    "Give the scopes: {\"<collection>\": [\"list\", \"view\", ...]} (\"*\" = every collection).",
                );
                Vec::new()
            }
        };
        let expires = match input.expires {
            None => String::new(),
            Some(Typed::Ok(s)) if s.is_empty() => String::new(),
            Some(Typed::Ok(s)) => match time::parse(&s) {
                Some(t) if t > chrono::Utc::now() => time::format(t),
                _ => {
                    c.add(
                        "expires",
                        "validation_invalid_date",
                        "Must be a future date such as 2030-01-01 00:00:00Z.",
                    );
                    String::new()
                }
            },
            Some(Typed::Wrong(_)) => {
                c.add("expires", "validation_invalid_type", "Must be a date string.");
                String::new()
            }
        };
        c.finish(CREATE_FAILED)?;
        if self.keys.read().map(|k| k.len()).unwrap_or(0) >= MAX_KEYS {
            return Err(Invalid::field(
                CREATE_FAILED,
                "name",
                "validation_too_many",
                "Too many API keys; revoke unused ones first.",
            )
            .into());
        }
        let key_id = id::random_string(15);
        let secret = id::random_string(40);
        let key = ApiKey {
            id: key_id.clone(),
            name,
            hash: sha256_hex(secret.as_bytes()),
            scopes,
            capabilities,
            expires,
            created: time::now(),
            created_by: actor.id.clone(),
            last_used: String::new(),
        };
        let bytes = serde_json::to_vec(&key).map_err(|e| RecordsError::Internal(e.to_string()))?;
        let event = Event::new("apikey.create", actor, ip, key_id.clone()).detail(json!({
            "name": key.name,
            "scopes": key.scopes,
            "capabilities": key.capabilities,
            "expires": key.expires,
        }));
        self.store
            .write(move |tx: &mut WriteTx<'_>| -> Result<(), StoreError> {
                tx.put(Table::ApiKeys, key_id.as_bytes(), bytes);
                audit::append(tx, event)
            })
            .await?;
        if let Ok(mut keys) = self.keys.write() {
            keys.insert(key.id.clone(), key.clone());
        }
        Ok((key.clone(), format!("{PREFIX}{}_{secret}", key.id)))
    }

    /// Revokes a key; false when there is no such key.
    pub async fn revoke(&self, key_id: &str, actor: Actor, ip: &str) -> Result<bool, StoreError> {
        let Some(key) = self.get(key_id) else {
            return Ok(false);
        };
        let id = key.id.clone();
        let event = Event::new("apikey.revoke", actor, ip, id.clone()).detail(json!({"name": key.name}));
        self.store
            .write(move |tx: &mut WriteTx<'_>| -> Result<(), StoreError> {
                tx.delete(Table::ApiKeys, id.as_bytes());
                audit::append(tx, event)
            })
            .await?;
        if let Ok(mut keys) = self.keys.write() {
            keys.remove(key_id);
        }
        Ok(true)
    }

    /// The principal of a presented key, or `None` when it is unknown, wrong, revoked or
    /// expired.
    pub fn authenticate(&self, presented: &str) -> Option<Principal> {
        let rest = presented.strip_prefix(PREFIX)?;
        let (key_id, secret) = rest.split_once('_')?;
        let key = self.get(key_id)?;
        if !constant_time_eq(sha256_hex(secret.as_bytes()).as_bytes(), key.hash.as_bytes()) || key.expired() {
            return None;
        }
        self.note_use(&key.id);
        Some(key.principal())
    }

    /// Records the last-used time, at most once per [`LAST_USED_EVERY`] per key, in the
    /// background (a lost update only loses a timestamp).
    fn note_use(&self, key_id: &str) {
        let due = match self.used.lock() {
            Ok(mut used) => {
                let now = Instant::now();
                let due = used.get(key_id).is_none_or(|t| now.duration_since(*t) >= LAST_USED_EVERY);
                if due {
                    used.insert(key_id.to_string(), now);
                }
                due
            }
            Err(_) => false,
        };
        if !due {
            return;
        }
        let (store, keys, key_id) = (self.store.clone(), self.keys.clone(), key_id.to_string());
        let stamp = time::now();
        if let Ok(mut map) = keys.write() {
            if let Some(k) = map.get_mut(&key_id) {
                k.last_used = stamp.clone();
            }
        }
        tokio::spawn(async move {
            let result = store
                .write(move |tx: &mut WriteTx<'_>| -> Result<(), StoreError> {
                    let Some(bytes) = tx.get(Table::ApiKeys, key_id.as_bytes())? else {
                        return Ok(());
                    };
                    let mut key: ApiKey =
                        serde_json::from_slice(&bytes).map_err(|e| StoreError::Internal(e.to_string()))?;
                    key.last_used = stamp;
                    let bytes = serde_json::to_vec(&key).map_err(|e| StoreError::Internal(e.to_string()))?;
                    tx.put(Table::ApiKeys, key_id.as_bytes(), bytes);
                    Ok(())
                })
                .await;
            if let Err(err) = result {
                tracing::warn!(error = %err, "could not record an API key's last use");
            }
        });
    }
}

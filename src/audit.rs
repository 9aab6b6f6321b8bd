//! The audit log: sign-ins (success and failure), token revocations, impersonations, API key
//! changes, and every schema or settings change — who, from where, what, and when.
//!
//! Entries are appended inside the transaction of the change they describe where there is
//! one (schema changes, key changes, revocations), so a change and its entry commit or
//! vanish together. Sign-in attempts are their own small writes. Entries are kept for
//! [`KEEP_DAYS`] days; older ones are pruned as new ones are added.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::Principal;
use crate::store::{ReadTx, ScanControl, StoreError, Table, WriteTx};

/// Days an entry is kept.
pub const KEEP_DAYS: i64 = 90;
/// Old entries deleted per append at most (pruning keeps pace without long transactions).
const PRUNE_PER_APPEND: usize = 16;

/// Who did it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    /// `superuser`, `record`, `apiKey`, `anonymous` or `system`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub collection_id: String,
}

impl Actor {
    pub fn of(principal: &Principal) -> Actor {
        match principal {
            Principal::Anonymous => Actor { kind: "anonymous".into(), ..Actor::default() },
            Principal::Superuser { id } => {
                Actor { kind: "superuser".into(), id: id.clone(), ..Actor::default() }
            }
            Principal::Record { collection_id, id } => {
                Actor { kind: "record".into(), id: id.clone(), collection_id: collection_id.clone() }
            }
            Principal::ApiKey { id, .. } => {
                Actor { kind: "apiKey".into(), id: id.clone(), ..Actor::default() }
            }
        }
    }

    /// The server itself (CLI over the admin socket, setup).
    pub fn system() -> Actor {
        Actor { kind: "system".into(), ..Actor::default() }
    }
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub id: String,
    /// UTC, `YYYY-MM-DD HH:MM:SS.sssZ`.
    pub time: String,
    /// Dotted name: `auth.login`, `auth.logout`, `auth.impersonate`, `collection.create`, ...
    pub action: String,
    /// `success` or `failure`.
    pub outcome: String,
    pub actor: Actor,
    /// Client IP address ("" when unknown).
    pub ip: String,
    /// What was acted on (collection id, record id, key id, identity).
    pub target: String,
    /// Action-specific facts; never secrets.
    pub detail: Value,
}

/// What the caller knows of an event; time and id are assigned on append.
#[derive(Debug, Clone)]
pub struct Event {
    pub action: &'static str,
    pub success: bool,
    pub actor: Actor,
    pub ip: String,
    pub target: String,
    pub detail: Value,
}

impl Event {
    pub fn new(action: &'static str, actor: Actor, ip: &str, target: impl Into<String>) -> Event {
        Event { action, success: true, actor, ip: ip.to_string(), target: target.into(), detail: Value::Null }
    }

    pub fn failed(mut self) -> Event {
        self.success = false;
        self
    }

    pub fn detail(mut self, detail: Value) -> Event {
        self.detail = detail;
        self
    }
}

/// Entry ids sort by time: 16 hex digits of microseconds since 1970, then 8 random hex
/// digits (two entries in the same microsecond stay distinct).
fn new_id(now: chrono::DateTime<chrono::Utc>) -> String {
    let micros = u64::try_from(now.timestamp_micros()).unwrap_or(0);
    format!("{micros:016x}{:08x}", rand::rngs::OsRng.next_u32())
}

/// Appends `event` inside `tx`, and prunes a few entries older than [`KEEP_DAYS`].
pub fn append(tx: &mut WriteTx<'_>, event: Event) -> Result<(), StoreError> {
    let now = chrono::Utc::now();
    let id = new_id(now);
    let entry = Entry {
        id: id.clone(),
        time: now.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string(),
        action: event.action.to_string(),
        outcome: if event.success { "success" } else { "failure" }.to_string(),
        actor: event.actor,
        ip: event.ip,
        target: event.target,
        detail: event.detail,
    };
    let bytes = serde_json::to_vec(&entry).map_err(|e| StoreError::Internal(e.to_string()))?;
    tx.put(Table::AuditLog, id.as_bytes(), bytes);
    let horizon = new_id(now - chrono::Duration::days(KEEP_DAYS));
    let mut old = Vec::new();
    tx.scan_prefix(Table::AuditLog, b"", None, |k, _| {
        if k >= horizon.as_bytes() || old.len() >= PRUNE_PER_APPEND {
            return ScanControl::Stop;
        }
        old.push(k.to_vec());
        ScanControl::Continue
    })?;
    for k in old {
        tx.delete(Table::AuditLog, &k);
    }
    Ok(())
}

/// Which entries a listing wants.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Entries whose action equals this or starts with it followed by `.` (`auth` matches
    /// `auth.login`).
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub actor_id: Option<String>,
    pub target: Option<String>,
    pub page: usize,
    pub per_page: usize,
}

impl Query {
    fn matches(&self, e: &Entry) -> bool {
        self.action.as_deref().is_none_or(|a| e.action == a || e.action.starts_with(&format!("{a}.")))
            && self.outcome.as_deref().is_none_or(|o| e.outcome == o)
            && self.actor_id.as_deref().is_none_or(|id| e.actor.id == id)
            && self.target.as_deref().is_none_or(|t| e.target == t)
    }
}

/// A page of entries, newest first, and how many match in all.
pub fn list(tx: &ReadTx, query: &Query) -> Result<(Vec<Entry>, usize), StoreError> {
    let skip = query.page.saturating_sub(1).saturating_mul(query.per_page);
    let mut items = Vec::new();
    let mut total = 0usize;
    let mut bad = None;
    tx.scan_prefix(Table::AuditLog, b"", true, None, |_, v| {
        match serde_json::from_slice::<Entry>(v) {
            Ok(e) if query.matches(&e) => {
                if total >= skip && items.len() < query.per_page {
                    items.push(e);
                }
                total += 1;
            }
            Ok(_) => {}
            Err(err) => bad = Some(err.to_string()),
        }
        ScanControl::Continue
    })?;
    if let Some(err) = bad {
        return Err(StoreError::Internal(format!("corrupt audit entry: {err}")));
    }
    Ok((items, total))
}

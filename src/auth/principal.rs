//! Who is calling, and what an API key may do.
//!
//! Every request resolves to one [`Principal`] (see `accounts` for how tokens and keys are
//! checked); the records rules, files, search and the audit log take it from here.

use std::sync::Arc;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Anonymous,
    Superuser {
        id: String,
    },
    Record {
        collection_id: String,
        id: String,
    },
    /// A server-to-server API key: within its scopes it passes the rules (like a superuser
    /// limited to those collections and operations), outside them it is denied. It never
    /// sees hidden fields and cannot change schema or settings.
    ApiKey {
        id: String,
        scopes: Arc<Scopes>,
    },
}

impl Principal {
    pub fn is_superuser(&self) -> bool {
        matches!(self, Principal::Superuser { .. })
    }

    /// Whether this caller sees the `email` of the record `record_id` of `collection_id` even when
    /// its `emailVisibility` is off: superusers, and the signed-in user reading their own
    /// record, as PocketBase does (the SDK's `authStore.record.email` relies on it).
    pub fn sees_email_of(&self, collection_id: &str, record_id: Option<&str>) -> bool {
        match self {
            Principal::Superuser { .. } => true,
            Principal::Record { collection_id: own, id } => {
                own == collection_id && record_id == Some(id.as_str())
            }
            Principal::Anonymous | Principal::ApiKey { .. } => false,
        }
    }
}

/// A record operation, each guarded by its own rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    List,
    View,
    Create,
    Update,
    Delete,
}

impl Op {
    pub const ALL: [Op; 5] = [Op::List, Op::View, Op::Create, Op::Update, Op::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::List => "list",
            Op::View => "view",
            Op::Create => "create",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.as_str() == s)
    }
}

/// What an API key may do: operations per collection (by id), or on every collection (`*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes {
    pub grants: Vec<(String, Vec<Op>)>,
    /// Named abilities beyond records, such as `mail.send`.
    pub capabilities: Vec<String>,
}

impl Scopes {
    /// True when the scopes grant `op` on `collection` (matched by id or name). No scope ever
    /// reaches a system collection (`_superusers`): not `*`, not its name (a key that could
    /// create or change a superuser could sign in as one).
    pub fn grants(&self, collection: ScopeTarget<'_>, op: Op) -> bool {
        !collection.system
            && self
                .grants
                .iter()
                .any(|(c, ops)| (c == "*" || c == collection.id || c == collection.name) && ops.contains(&op))
    }
}

/// The collection a scope is checked against.
#[derive(Debug, Clone, Copy)]
pub struct ScopeTarget<'a> {
    pub id: &'a str,
    pub name: &'a str,
    /// System collections (`_superusers`) are out of every scope's reach.
    pub system: bool,
}

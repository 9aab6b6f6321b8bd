//! Access rules: who may list, view, create, update and delete a collection's records.
//!
//! `null` (None) means superusers only, `""` means everyone, and any other text is a filter
//! expression that the record (and the request) must match. Superusers pass every rule.
//! A rule that no longer compiles (it names a field that was removed) denies.

use std::sync::Arc;

use super::catalog::Catalog;
use super::collection::Collection;
use super::filter::{Filter, FilterError};
use super::{FieldError, FieldErrors, RecordsError};

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
        scopes: std::sync::Arc<Scopes>,
    },
}

impl Principal {
    pub fn is_superuser(&self) -> bool {
        matches!(self, Principal::Superuser { .. })
    }

    /// Whether this caller sees the `email` of `stored` (a record of `collection_id`) even when
    /// its `emailVisibility` is off: superusers, and the signed-in user reading their own
    /// record, as PocketBase does (the SDK's `authStore.record.email` relies on it).
    pub fn sees_email_of(&self, collection_id: &str, stored: &super::record::Stored) -> bool {
        match self {
            Principal::Superuser { .. } => true,
            Principal::Record { collection_id: own, id } => {
                own == collection_id
                    && stored.get("id").and_then(serde_json::Value::as_str) == Some(id.as_str())
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

    /// The rule of `collection` that guards this operation.
    pub fn rule(self, collection: &Collection) -> &Option<String> {
        match self {
            Op::List => &collection.list_rule,
            Op::View => &collection.view_rule,
            Op::Create => &collection.create_rule,
            Op::Update => &collection.update_rule,
            Op::Delete => &collection.delete_rule,
        }
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
    /// True when the scopes grant `op` on the collection with this id or name. No scope ever
    /// reaches a system collection (`_superusers`): not `*`, not its name (a key that could
    /// create or change a superuser could sign in as one).
    pub fn grants(&self, collection: &Collection, op: Op) -> bool {
        !collection.system
            && self.grants.iter().any(|(c, ops)| {
                (c == "*" || *c == collection.id || *c == collection.name) && ops.contains(&op)
            })
    }
}

/// The outcome of looking at a rule before seeing any record.
#[derive(Debug)]
pub enum Access {
    /// Everyone passes (superuser, or an empty rule).
    Allow,
    /// Only superusers pass, and the caller is not one.
    Deny,
    /// Records must match this expression (compiled once per catalog snapshot).
    Filter(Arc<Filter>),
}

/// What the rule guarding `op` means for `principal` on `collection`.
pub fn access(op: Op, principal: &Principal, collection: &Collection, catalog: &Catalog) -> Access {
    match principal {
        Principal::Superuser { .. } => return Access::Allow,
        Principal::ApiKey { scopes, .. } => {
            return if scopes.grants(collection, op) { Access::Allow } else { Access::Deny };
        }
        Principal::Anonymous | Principal::Record { .. } => {}
    }
    match op.rule(collection) {
        None => Access::Deny,
        Some(r) if r.trim().is_empty() => Access::Allow,
        Some(r) => {
            match catalog.compiled_rule(collection, op, || Filter::compile(r, collection, catalog, true)) {
                Ok(f) => Access::Filter(f),
                Err(err) => {
                    tracing::warn!(collection = %collection.name, error = %err, "rule does not compile; denying");
                    Access::Deny
                }
            }
        }
    }
}

/// The filter records must match for `principal` doing `op`: `None` when everyone passes,
/// a 403 when only superusers may act and the caller is not one.
pub fn required(
    op: Op,
    principal: &Principal,
    collection: &Collection,
    catalog: &Catalog,
) -> Result<Option<Arc<Filter>>, RecordsError> {
    match access(op, principal, collection, catalog) {
        Access::Deny => Err(RecordsError::Forbidden("Only superusers can perform this action.".into())),
        Access::Allow => Ok(None),
        Access::Filter(f) => Ok(Some(f)),
    }
}

/// Whether `principal` passes the rule guarding `op` without looking at a record (`null`
/// and `""` rules, API key scopes).
pub fn allows(op: Op, principal: &Principal, collection: &Collection) -> bool {
    match principal {
        Principal::Superuser { .. } => true,
        Principal::ApiKey { scopes, .. } => scopes.grants(collection, op),
        Principal::Anonymous | Principal::Record { .. } => {
            matches!(op.rule(collection), Some(r) if r.trim().is_empty())
        }
    }
}

/// Checks that every non-empty rule of `collection` compiles against its fields.
pub fn validate(collection: &Collection, catalog: &Catalog, message: &str) -> Result<(), RecordsError> {
    let mut errors = FieldErrors::new();
    let mut slots = vec![
        ("listRule", &collection.list_rule),
        ("viewRule", &collection.view_rule),
        ("createRule", &collection.create_rule),
        ("updateRule", &collection.update_rule),
        ("deleteRule", &collection.delete_rule),
    ];
    if let Some(auth) = &collection.auth {
        slots.push(("authRule", &auth.auth_rule));
        slots.push(("manageRule", &auth.manage_rule));
    }
    for (slot, rule) in slots {
        if let Some(r) = rule.as_deref().filter(|r| !r.trim().is_empty()) {
            if let Err(FilterError { position, message }) = Filter::compile(r, collection, catalog, true) {
                errors.insert(
                    slot.into(),
                    FieldError::new(
                        "validation_invalid_rule",
                        format!("Invalid rule at position {position}: {message}"),
                    ),
                );
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(RecordsError::Validation { message: message.into(), fields: errors })
    }
}

/// Whether `principal` may manage the auth record `stored` like a superuser (set its email,
/// `verified`, or its password without the old one): superusers always, others when the
/// collection's manage rule matches. API keys never.
pub fn can_manage(
    principal: &Principal,
    collection: &Collection,
    catalog: &Catalog,
    stored: &super::record::Stored,
    request: &super::filter::RequestInfo,
    env: Option<&super::filter::Env<'_>>,
) -> bool {
    match principal {
        Principal::Superuser { .. } => true,
        Principal::ApiKey { .. } | Principal::Anonymous => false,
        Principal::Record { .. } => {
            let Some(rule) = collection.auth.as_ref().and_then(|a| a.manage_rule.as_deref()) else {
                return false;
            };
            if rule.trim().is_empty() {
                return false;
            }
            match Filter::compile(rule, collection, catalog, true) {
                Ok(f) => f.matches(collection, stored, request, &super::filter::Now::current(), env),
                Err(_) => false,
            }
        }
    }
}

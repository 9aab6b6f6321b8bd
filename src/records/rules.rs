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
use crate::auth::{Op, Principal};

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
            return if scopes.grants(collection.scope_target(), op) { Access::Allow } else { Access::Deny };
        }
        Principal::Anonymous | Principal::Record { .. } => {}
    }
    match collection.rule(op) {
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
        Principal::ApiKey { scopes, .. } => scopes.grants(collection.scope_target(), op),
        Principal::Anonymous | Principal::Record { .. } => {
            matches!(collection.rule(op), Some(r) if r.trim().is_empty())
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

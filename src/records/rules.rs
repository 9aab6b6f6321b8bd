//! Access rules: who may list, view, create, update and delete a collection's records.
//!
//! `null` (None) means superusers only, `""` means everyone, and any other text is a filter
//! expression that the record (and the request) must match. Superusers pass every rule.
//! A rule that no longer compiles (it names a field that was removed) denies.

use super::catalog::Catalog;
use super::collection::Collection;
use super::filter::{Filter, FilterError};
use super::{FieldError, FieldErrors, RecordsError};

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Anonymous,
    Superuser { id: String },
    Record { collection_id: String, id: String },
}

impl Principal {
    pub fn is_superuser(&self) -> bool {
        matches!(self, Principal::Superuser { .. })
    }
}

/// The outcome of looking at a rule before seeing any record.
#[derive(Debug)]
pub enum Access {
    /// Everyone passes (superuser, or an empty rule).
    Allow,
    /// Only superusers pass, and the caller is not one.
    Deny,
    /// Records must match this expression.
    Filter(Filter),
}

/// What `rule` means for `principal` on `collection`.
pub fn access(
    rule: &Option<String>,
    principal: &Principal,
    collection: &Collection,
    catalog: &Catalog,
) -> Access {
    if principal.is_superuser() {
        return Access::Allow;
    }
    match rule {
        None => Access::Deny,
        Some(r) if r.trim().is_empty() => Access::Allow,
        Some(r) => match Filter::compile(r, collection, catalog, true) {
            Ok(f) => Access::Filter(f),
            Err(err) => {
                tracing::warn!(collection = %collection.name, error = %err, "rule does not compile; denying");
                Access::Deny
            }
        },
    }
}

/// The filter records must match for `principal` under `rule`: `None` when everyone passes,
/// a 403 when only superusers may act and the caller is not one.
pub fn required(
    rule: &Option<String>,
    principal: &Principal,
    collection: &Collection,
    catalog: &Catalog,
) -> Result<Option<Filter>, RecordsError> {
    match access(rule, principal, collection, catalog) {
        Access::Deny => Err(RecordsError::Forbidden("Only superusers can perform this action.".into())),
        Access::Allow => Ok(None),
        Access::Filter(f) => Ok(Some(f)),
    }
}

/// Whether `principal` passes `rule` without looking at a record (`null` and `""` rules).
pub fn allows(rule: &Option<String>, principal: &Principal) -> bool {
    principal.is_superuser() || matches!(rule, Some(r) if r.trim().is_empty())
}

/// Checks that every non-empty rule of `collection` compiles against its fields.
pub fn validate(collection: &Collection, catalog: &Catalog, message: &str) -> Result<(), RecordsError> {
    let mut errors = FieldErrors::new();
    let slots = [
        ("listRule", &collection.list_rule),
        ("viewRule", &collection.view_rule),
        ("createRule", &collection.create_rule),
        ("updateRule", &collection.update_rule),
        ("deleteRule", &collection.delete_rule),
    ];
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

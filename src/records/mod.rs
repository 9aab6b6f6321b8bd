//! Collections, fields, validation and record CRUD.
//!
//! Owns the record model and its invariants; knows nothing of HTTP. Storage goes through
//! [`crate::store`]; errors are [`RecordsError`], mapped to HTTP by `api/` alone.

pub mod batch;
pub mod catalog;
pub mod check;
pub mod collection;
pub mod expand;
pub mod field;
pub mod files;

pub mod filter;
pub mod hooks;
pub mod index;
pub mod list;
pub mod migrate;
pub mod plan;
pub mod record;
pub mod rules;
pub mod schema;
pub mod service;
pub mod source;
pub mod stats;
pub mod write;

#[cfg(test)]
mod model_tests;

use crate::store::StoreError;
use crate::util::invalid::Invalid;

pub use catalog::Catalog;
pub use collection::{Collection, CollectionKind};
pub use field::{Field, FieldKind};
pub use service::Records;

pub use crate::util::invalid::{FieldError, FieldErrors};

/// What can go wrong in the records domain.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    /// The collection or record does not exist (or the caller may not know it exists).
    #[error("{0}")]
    NotFound(String),
    /// The input was understood but is invalid; `fields` says where.
    #[error("{message}")]
    Validation { message: String, fields: FieldErrors },
    /// A request parameter is malformed or unsupported.
    #[error("{0}")]
    BadRequest(String),
    /// The caller may not perform this action.
    #[error("{0}")]
    Forbidden(String),
    /// The change conflicts with the current state (retry or fix the input).
    #[error("{0}")]
    Conflict(String),
    /// Storage failed.
    #[error(transparent)]
    Store(StoreError),
    /// Encoding or invariant failure (a bug, not the caller's doing); details for the log
    /// only, answered 500.
    #[error("{0}")]
    Internal(String),
    /// Sub-request `index` of a batch failed; nothing of the batch was applied.
    #[error("batch request {index} failed: {error}")]
    Batch { index: usize, error: Box<RecordsError> },
}

impl From<StoreError> for RecordsError {
    fn from(err: StoreError) -> Self {
        RecordsError::Store(err)
    }
}

impl From<Invalid> for RecordsError {
    fn from(invalid: Invalid) -> Self {
        RecordsError::Validation { message: invalid.message, fields: invalid.fields }
    }
}

impl RecordsError {
    /// A validation failure with a single field error.
    pub fn field(message: &str, field: &str, error: FieldError) -> RecordsError {
        let mut fields = FieldErrors::new();
        fields.insert(field.to_string(), error);
        RecordsError::Validation { message: message.to_string(), fields }
    }
}

/// Key of a record in `Table::Records` (and prefix of a collection's records).
pub fn record_key(collection_id: &str, record_id: &str) -> Vec<u8> {
    let mut key = collection_prefix(collection_id);
    key.extend_from_slice(record_id.as_bytes());
    key
}

/// Prefix shared by all keys of one collection in per-collection tables.
pub fn collection_prefix(collection_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(collection_id.len() + 16);
    key.extend_from_slice(collection_id.as_bytes());
    key.push(0);
    key
}

//! Collections, fields, validation and record CRUD.
//!
//! Owns the record model and its invariants; knows nothing of HTTP. Storage goes through
//! [`crate::store`]; errors are [`RecordsError`], mapped to HTTP by `api/` alone.
//!
//! # How it works
//!
//! Collections, fields, validation, the filter language, list/sort/expand, relations, batch,
//! schema migration, JSON Schema generation, and access rules. [`Records`] (`service.rs`,
//! record operations, each write one [`RecordWrite`]) and [`collections::Collections`]
//! (schema changes) are the API the HTTP layer calls; both read one
//! [`collections::SharedCatalog`]. What other modules do around writes comes in through
//! [`hooks::Hooks`]: file placement ([`files::FileHooks`]) and change consumers
//! ([`hooks::ChangeHooks`], such as the search outbox), called inside each write's
//! transaction.
//! - `collection.rs` — the collection JSON (PocketBase's shape) and input checks.
//! - `field.rs` — field definitions and `normalize`, which turns any client JSON into a
//!   stored value or a PocketBase-style field error; never panics on input.
//! - `filter/` — PocketBase's filter language: `parse.rs` (lexer + recursive descent to an
//!   AST, with limits on length, nesting and comparisons; errors carry the byte position),
//!   `mod.rs` (operands, checking field paths against the collection: unknown fields and,
//!   for non-superusers, hidden fields are refused), `eval.rs` (PocketBase semantics: null
//!   equals "", multi-valued fields match when every item does and `?` operators when any
//!   does, `~` is a case-insensitive contains or a LIKE pattern with `%`, date macros). `~`
//!   never backtracks: plain text is a linear substring search, a pattern is split at `%`
//!   into segments found leftmost in turn (KMP for literal segments, bit-parallel Shift-And
//!   for segments with `_`), so its cost is bounded by |value| × ⌈|segment|/64⌉. **One rule
//!   of email visibility** ([`filter::email_visible`]): an auth record's `email` is seen by
//!   superusers, its owner, and others only while `emailVisibility` is on. Filters compiled
//!   for non-superusers mark such accesses `guarded` and read a hidden address as null (own
//!   fields, relation paths, back-relations, joins); the planner never answers a guarded
//!   term from an index; [`list::sort_value`] sorts a hidden address as null (so cursors carry
//!   null) and an index never orders by it; output and expand use the same rule.
//! - `rules.rs` — a rule is `null` (superusers only), `""` (everyone) or a filter the record
//!   and `@request` must match; rules that do not compile are refused when saved.
//! - `record.rs` — stored form ↔ record JSON; `write.rs` — the writer-side halves of
//!   create/update/delete (uniqueness, auth identities, relation references, cascades, and the
//!   change hooks of every record written, cascades included),
//!   shared by single writes and `batch.rs` (`/api/batch`, all sub-requests in one write
//!   closure: all-or-nothing); `source.rs` — record lookups for relation paths and joins over
//!   a read or write transaction, and `VisibleSource`, through which a client's own filter and
//!   sort see related records: only those the caller may view (or list, for `@collection`
//!   joins), so filters and sorts are no oracle for hidden records (rules themselves resolve
//!   against the raw source); `expand.rs` — embedding relations and back-relations
//!   (`<collection>_via_<field>`) up to 6 levels, each record checked against its own view
//!   rule; `list.rs` — filtering, paging and sorting; `migrate.rs` — rewriting records on
//!   schema changes or refusing them (409); `catalog.rs` — the in-memory snapshot of all
//!   collections, reloaded after each schema change (each entry also caches its compiled rules,
//!   [`Catalog::compiled_rule`], and the read placement of its create-rule checks and views); `stats.rs` — per-collection counters
//!   (count, custom ids, schema generation) updated in the same transaction as the records;
//!   `index.rs` — secondary indexes in PocketBase's SQL form (`CREATE [UNIQUE] INDEX n ON c
//!   (a, b)`), entries in `record_index` maintained with the records (unique ones refuse
//!   duplicates; adding one to a populated collection builds it in the same transaction or is
//!   refused). Entry keys are order-preserving: each column value is a type tag (null < false <
//!   true < number < string < array < object) plus a payload that sorts like the value
//!   (numbers as sign-flipped IEEE 754 bits, so 1 and 1.0 are one key; strings as UTF-8 with
//!   0x00 escaped and a terminator), then the record id; every encoded value is
//!   self-delimiting, so the values of the first columns are a key prefix and a value range is
//!   a key range. Byte order equals [`list::compare_values`], the in-memory sort order.
//! - `plan.rs` — the planner. From the filter's top-level `&&` chain it takes `field op
//!   literal` terms (macros evaluated); per index it pins leading columns fixed by `=`, narrows
//!   the next column by `>`/`>=`/`<`/`<=` or `~ 'prefix%'` (LIKE ignores ASCII case, so the
//!   first three letters expand into case-variant spans), and checks whether the index order
//!   is the requested order (sort keys minus pinned columns = remaining columns, one
//!   direction; ties by id follow that direction). A term is used only where key order is the
//!   evaluator's order (number fields with number literals, text-like fields with text
//!   literals, bools for `=`; never `= ""`, which also matches null). Most pinned columns wins,
//!   then a range, then serving the sort, then unique. The index only narrows: every candidate
//!   still goes through the filter and the list rule.
//! - `list.rs` — runs the plan. An index serving the sort streams its spans in key order
//!   (reversed for descending), fetching records in growing chunks, and stops at the end of
//!   the page; a cursor becomes a key to resume after. Totals: from the counters when nothing
//!   filters, by counting index keys when the plan is `exact` (the filter is nothing but the
//!   terms used, no rule), otherwise by evaluating every candidate. Without a usable index it
//!   walks the records in key order (id, or created while ids are generated) or scans and
//!   sorts in memory; records are probed with only the keys filters, rules and sorts read
//!   ([`record::decode_keys`]) and decoded whole only for the page. Sort keys may be relation
//!   paths through single relations (`author.name`; null when empty). `explain=1` shows the
//!   plan: strategy, index, pinned columns, range terms, spans, `sortByIndex`, `exact`,
//!   records examined. Cursor paging (`cursor=`, `nextCursor`) resumes after the last
//!   record's sort values and id, so inserts between pages never shift it. Every list and
//!   search evaluates within a `Budget` (`limits.query_budget_ms`, default 5 s, the clock
//!   read every 16 evaluations): once spent, scans stop and the request answers 400.
//! - `record.rs` also holds `FieldsFilter`, PocketBase's `fields` picker: dotted paths into
//!   `expand` and nested values, `*` per level, `:excerpt(max, ellipsis)` at any depth.
//!
//! `check.rs` verifies on one read-only snapshot that those tables agree in both directions
//! (`backbone check`; the crash test runs it between kills).
//!
//! **Architecture invariant:** relation references live in `record_refs` (target → source,
//! keyed by field id so renames cost nothing) and change in the same transaction as the
//! records; a referenced record cannot disappear unless every reference cascades.
//!
//! **Architecture invariant:** writes validated against an older schema never land: the
//! writer compares the schema generation it was validated with against the stored one.
//!
//! **Architecture invariant:** a schema change is applied to the definition and to every
//! existing record in one transaction, or not at all.

pub mod batch;
pub mod catalog;
pub mod check;
pub mod collection;
pub mod collections;
pub mod expand;
pub mod field;
pub mod files;

pub mod filter;
pub mod hooks;
pub mod index;
pub mod list;
pub mod live;
pub mod migrate;
pub mod modifiers;
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
pub use service::{RecordWrite, Records};

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

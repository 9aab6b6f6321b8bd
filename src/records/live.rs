//! One change, rendered for one realtime subscriber: the subscriber's access rule is checked
//! against the record as the change left it (as it was, for a delete), then the record is
//! shaped as a response to that subscriber would be (hidden fields, email visibility,
//! `fields`, `expand` read from the current data).
//!
//! Realtime (`crate::realtime`) owns connections and topics; this module owns what a
//! subscriber may see, so the rules are applied by the same code as every other read.

use std::sync::Arc;

use serde_json::Value;

use super::catalog::{Catalog, CatalogEntry};
use super::expand::{self, ExpandTree, Expander};
use super::filter::{Env, Filter, Now, RequestInfo};
use super::record::{FieldsFilter, Stored};
use super::rules::{self, Access};
use super::service::render;
use super::RecordsError;
use crate::auth::{Op, Principal};
use crate::store::ReadTx;

/// What a subscription asked for (PocketBase's `options.query`), checked once.
#[derive(Debug, Clone)]
pub struct LiveQuery {
    pub fields: FieldsFilter,
    pub expand: ExpandTree,
    /// The subscription's own `filter`, as text (compiled against the collection when used).
    pub filter: Option<String>,
}

impl LiveQuery {
    /// Parses `fields`, `expand` and `filter`, and checks them against `entry` for
    /// `principal`, so a subscription that cannot work is refused when it is made.
    pub fn parse(
        catalog: &Catalog,
        entry: Option<&CatalogEntry>,
        principal: &Principal,
        fields: Option<&str>,
        expand: Option<&str>,
        filter: Option<&str>,
    ) -> Result<LiveQuery, RecordsError> {
        let fields = FieldsFilter::parse(fields)?;
        let tree = ExpandTree::parse(expand)?;
        let filter = filter.map(str::trim).filter(|f| !f.is_empty()).map(str::to_string);
        if let Some(entry) = entry {
            expand::check(catalog, entry, &tree, principal.is_superuser())?;
            if let Some(src) = &filter {
                Filter::compile(src, &entry.collection, catalog, principal.is_superuser())
                    .map_err(|e| RecordsError::BadRequest(format!("Invalid filter {e}.")))?;
            }
        }
        Ok(LiveQuery { fields, expand: tree, filter })
    }
}

/// Who is watching: the subscriber's identity and what rules see of its request.
#[derive(Debug, Clone, Copy)]
pub struct Watcher<'a> {
    pub principal: &'a Principal,
    pub request: &'a RequestInfo,
}

/// `stored` (a change to a record of `entry`) as `watcher` may see it through the rule
/// guarding `op` (list for collection topics, view for record topics), or `None` when the
/// rule or the subscription's filter hides it. Reads related records on `tx` (the current
/// data).
pub fn render_change(
    tx: &ReadTx,
    catalog: &Catalog,
    entry: &CatalogEntry,
    stored: &Stored,
    op: Op,
    watcher: Watcher<'_>,
    query: &LiveQuery,
) -> Result<Option<Value>, RecordsError> {
    let env = Env { catalog, source: tx };
    let now = Now::current();
    let rule: Option<Arc<Filter>> = match rules::access(op, watcher.principal, &entry.collection, catalog) {
        Access::Deny => return Ok(None),
        Access::Allow => None,
        Access::Filter(f) => Some(f),
    };
    if let Some(rule) = rule {
        if !rule.matches(&entry.collection, stored, watcher.request, &now, Some(&env)) {
            return Ok(None);
        }
    }
    if let Some(src) = &query.filter {
        // Compiled against the current schema: a filter the schema no longer admits hides
        // every event rather than failing the whole delivery.
        match Filter::compile(src, &entry.collection, catalog, watcher.principal.is_superuser()) {
            Ok(f) if f.matches(&entry.collection, stored, watcher.request, &now, Some(&env)) => {}
            _ => return Ok(None),
        }
    }
    let expander = Expander::new(tx, catalog, watcher.principal, watcher.request);
    render(&expander, entry, stored.clone(), &query.fields, &query.expand).map(Some)
}

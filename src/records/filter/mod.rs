//! PocketBase's filter language: parsed to an AST, checked against a collection, and
//! evaluated against records. Used by the `filter` list parameter and by access rules.
//!
//! Nothing from the input ever becomes code: `parse.rs` builds an [`Expr`] with limits on
//! size, nesting and comparisons; [`Filter::compile`] resolves every field against the
//! collection (unknown fields and, for non-superusers, hidden fields are errors); `eval.rs`
//! evaluates with PocketBase's semantics (null equals empty, multi-valued fields match when
//! all items match, `?` operators when any item matches, `~` is a case-insensitive contains
//! or a LIKE pattern when the text has `%`).

mod eval;
pub mod parse;

use serde_json::{Map, Value};

use std::sync::Arc;

use super::catalog::{Catalog, CatalogEntry};
use super::collection::Collection;
use super::field::FieldKind;

pub use eval::Now;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    Like,
    NotLike,
}

/// Modifiers that may follow a field path (`tags:length`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modifier {
    Length,
    Lower,
    Each,
    Isset,
    Changed,
}

/// Date macros (`@now`, `@todayStart`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Macro {
    Now,
    Yesterday,
    Tomorrow,
    Second,
    Minute,
    Hour,
    Day,
    Month,
    Weekday,
    Year,
    TodayStart,
    TodayEnd,
    MonthStart,
    MonthEnd,
    YearStart,
    YearEnd,
}

/// Where a `@request.*` operand reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestSource {
    Auth,
    Body,
    Query,
    Headers,
    Method,
    Context,
}

/// One side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Text(String),
    Number(f64),
    Bool(bool),
    Null,
    Macro(Macro),
    /// A record field path, with an optional modifier.
    Field {
        path: Vec<String>,
        modifier: Option<Modifier>,
    },
    /// `@request.<source>.<path>`.
    Request {
        source: RequestSource,
        path: Vec<String>,
        modifier: Option<Modifier>,
    },
    /// `@collection.<name>.<path>` (cross-collection join).
    Collection {
        name: String,
        path: Vec<String>,
    },
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Compare { left: Operand, op: Op, any: bool, right: Operand, position: usize },
}

/// A syntax or reference error, with the byte position it was found at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub position: usize,
    pub message: String,
}

impl std::fmt::Display for FilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at position {}: {}", self.position, self.message)
    }
}

fn split_modifier(name: &str) -> Result<(&str, Option<Modifier>), String> {
    match name.split_once(':') {
        None => Ok((name, None)),
        Some((base, m)) => {
            let modifier = match m {
                "length" => Modifier::Length,
                "lower" => Modifier::Lower,
                "each" => Modifier::Each,
                "isset" => Modifier::Isset,
                "changed" => Modifier::Changed,
                other => return Err(format!("unknown modifier :{other}")),
            };
            Ok((base, Some(modifier)))
        }
    }
}

fn path_of(s: &str) -> Result<Vec<String>, String> {
    let parts: Vec<String> = s.split('.').map(str::to_string).collect();
    if parts.iter().any(String::is_empty) {
        return Err(format!("invalid path {s:?}"));
    }
    Ok(parts)
}

impl Operand {
    /// Classifies an identifier token.
    pub fn identifier(name: &str) -> Result<Operand, String> {
        match name.to_ascii_lowercase().as_str() {
            "true" => return Ok(Operand::Bool(true)),
            "false" => return Ok(Operand::Bool(false)),
            "null" => return Ok(Operand::Null),
            _ => {}
        }
        let (base, modifier) = split_modifier(name)?;
        if let Some(m) = base.strip_prefix('@') {
            let macro_ = match m {
                "now" => Some(Macro::Now),
                "yesterday" => Some(Macro::Yesterday),
                "tomorrow" => Some(Macro::Tomorrow),
                "second" => Some(Macro::Second),
                "minute" => Some(Macro::Minute),
                "hour" => Some(Macro::Hour),
                "day" => Some(Macro::Day),
                "month" => Some(Macro::Month),
                "weekday" => Some(Macro::Weekday),
                "year" => Some(Macro::Year),
                "todayStart" => Some(Macro::TodayStart),
                "todayEnd" => Some(Macro::TodayEnd),
                "monthStart" => Some(Macro::MonthStart),
                "monthEnd" => Some(Macro::MonthEnd),
                "yearStart" => Some(Macro::YearStart),
                "yearEnd" => Some(Macro::YearEnd),
                _ => None,
            };
            if let Some(m) = macro_ {
                if modifier.is_some() {
                    return Err("macros take no modifier".into());
                }
                return Ok(Operand::Macro(m));
            }
            if let Some(rest) = m.strip_prefix("request.") {
                let (source, path) = match rest.split_once('.') {
                    Some((s, p)) => (s, path_of(p)?),
                    None => (rest, vec![]),
                };
                let source = match source {
                    "auth" => RequestSource::Auth,
                    "body" => RequestSource::Body,
                    "query" => RequestSource::Query,
                    "headers" => RequestSource::Headers,
                    "method" => RequestSource::Method,
                    "context" => RequestSource::Context,
                    other => return Err(format!("unknown @request field {other:?}")),
                };
                let needs_path = matches!(
                    source,
                    RequestSource::Auth | RequestSource::Body | RequestSource::Query | RequestSource::Headers
                );
                if needs_path == path.is_empty() {
                    return Err(format!("invalid @request path {name:?}"));
                }
                if matches!(modifier, Some(Modifier::Changed)) && source != RequestSource::Body {
                    return Err(":changed applies to @request.body fields only".into());
                }
                return Ok(Operand::Request { source, path, modifier });
            }
            if let Some(rest) = m.strip_prefix("collection.") {
                let mut parts = path_of(rest)?;
                if parts.len() < 2 {
                    return Err(format!("invalid @collection path {name:?}"));
                }
                let collection = parts.remove(0);
                return Ok(Operand::Collection { name: collection, path: parts });
            }
            return Err(format!("unknown identifier {name:?}"));
        }
        if matches!(modifier, Some(Modifier::Isset | Modifier::Changed)) {
            return Err(":isset and :changed apply to @request fields only".into());
        }
        Ok(Operand::Field { path: path_of(base)?, modifier })
    }
}

/// What a request contributes to rule evaluation (`@request.*`).
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    /// The signed-in record (with `collectionId` and `collectionName`), if any.
    pub auth: Option<Map<String, Value>>,
    pub method: String,
    pub query: Map<String, Value>,
    pub headers: Map<String, Value>,
    pub body: Map<String, Value>,
}

/// How a field path reads a value in the collection it ends in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Access {
    /// A plain field. `multi` when it holds a list matched item by item (multiple
    /// relation); `json_unless_each` when it holds a list compared as its JSON text unless
    /// `:each` is used (multiple select, as PocketBase does). `guarded` for an auth
    /// collection's `email` read by an unprivileged caller: it reads as null unless the
    /// record shows its email to the caller (see [`email_visible`]).
    Field { name: String, multi: bool, json_unless_each: bool, guarded: bool },
    /// A path into a JSON field.
    Json { name: String, path: Vec<String> },
}

/// One step from a record to related records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Hop {
    /// Follow the relation field `field` into collection `target`.
    Forward { field: String, target: String },
    /// Records of `source` whose relation field `field_id` points here (`x_via_y`).
    Back { source: String, field_id: String },
}

/// A field path resolved across relations: hops, then the access in the last collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub hops: Vec<Hop>,
    pub access: Access,
    /// True when the path can reach several records (a multiple relation or a back-relation).
    pub many: bool,
}

/// Reads records for relation paths and `@collection` joins (a read or write transaction).
pub trait RecordSource {
    /// One record.
    fn record(&self, collection_id: &str, id: &str) -> Option<Map<String, Value>>;
    /// Ids of the records of `source_collection` whose field `field_id` points at the record.
    fn referrers(
        &self,
        collection_id: &str,
        id: &str,
        source_collection: &str,
        field_id: &str,
    ) -> Vec<String>;
    /// Up to `limit` records of a collection.
    fn all(&self, collection_id: &str, limit: usize) -> Vec<Map<String, Value>>;
}

/// What relation paths and joins resolve against.
pub struct Env<'a> {
    pub catalog: &'a Catalog,
    pub source: &'a dyn RecordSource,
}

/// Most relation hops in one path.
pub const MAX_HOPS: usize = 6;
/// Most rows an `@collection` join reads.
pub const MAX_JOIN_ROWS: usize = 10_000;

/// A literal of a planner term.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Text(String),
    Number(f64),
    Bool(bool),
}

/// One `field op literal` term (see [`Filter::terms`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    pub field: String,
    pub op: Op,
    pub literal: Literal,
}

/// An expression checked against a collection, ready to evaluate.
#[derive(Debug, Clone)]
pub struct Filter {
    expr: Expr,
    /// Collection ids named by `@collection.*`, in first-use order.
    joins: Vec<String>,
    /// Every field path of the expression resolved once (collection id, path, resolution),
    /// so evaluation does not resolve per record.
    resolved: Vec<(String, Vec<String>, Resolved)>,
}

impl Filter {
    /// The `field op literal` terms of the top-level `&&` chain (every match satisfies each
    /// of them), with the field on the left and macros evaluated at `now`, for the planner;
    /// and whether the filter is exactly that chain (nothing else to check).
    pub fn terms(&self, now: &Now) -> (Vec<Term>, bool) {
        fn literal(o: &Operand, now: &Now) -> Option<Literal> {
            match o {
                Operand::Text(s) => Some(Literal::Text(s.clone())),
                Operand::Number(n) => Some(Literal::Number(*n)),
                Operand::Bool(b) => Some(Literal::Bool(*b)),
                Operand::Macro(m) => eval::macro_literal(*m, now),
                _ => None,
            }
        }
        fn flipped(op: Op) -> Option<Op> {
            match op {
                Op::Eq => Some(Op::Eq),
                Op::Neq => Some(Op::Neq),
                Op::Gt => Some(Op::Lt),
                Op::Gte => Some(Op::Lte),
                Op::Lt => Some(Op::Gt),
                Op::Lte => Some(Op::Gte),
                Op::Like | Op::NotLike => None,
            }
        }
        // A guarded email is not a plain comparison (it reads null where it is hidden), so
        // no index may answer for it.
        let guarded = |field: &str| {
            self.resolved.iter().any(|(_, p, r)| {
                p.len() == 1 && p[0] == field && matches!(r.access, Access::Field { guarded: true, .. })
            })
        };
        fn walk(expr: &Expr, now: &Now, guarded: &dyn Fn(&str) -> bool, out: &mut Vec<Term>) -> bool {
            match expr {
                Expr::And(a, b) => {
                    let left = walk(a, now, guarded, out);
                    walk(b, now, guarded, out) && left
                }
                Expr::Or(..) => false,
                Expr::Compare { left, op, any: false, right, .. } => {
                    let term = match (left, right) {
                        (Operand::Field { path, modifier: None }, lit) if path.len() == 1 => {
                            literal(lit, now).map(|l| Term { field: path[0].clone(), op: *op, literal: l })
                        }
                        (lit, Operand::Field { path, modifier: None }) if path.len() == 1 => {
                            match (literal(lit, now), flipped(*op)) {
                                (Some(l), Some(op)) => Some(Term { field: path[0].clone(), op, literal: l }),
                                _ => None,
                            }
                        }
                        _ => None,
                    };
                    match term.filter(|t| !guarded(&t.field)) {
                        Some(t) => {
                            out.push(t);
                            true
                        }
                        None => false,
                    }
                }
                Expr::Compare { .. } => false,
            }
        }
        let mut out = Vec::new();
        let only_terms = walk(&self.expr, now, &guarded, &mut out) && self.joins.is_empty();
        (out, only_terms)
    }

    /// Ids of the collections whose stored records evaluation reads: `@collection` joins
    /// and every collection a relation path (forward or `x_via_y`) steps into. Request
    /// values and the record's own fields come from memory, not the store.
    pub fn reads_collections(&self) -> std::collections::BTreeSet<String> {
        let mut out: std::collections::BTreeSet<String> = self.joins.iter().cloned().collect();
        for (_, _, resolved) in &self.resolved {
            for hop in &resolved.hops {
                match hop {
                    Hop::Forward { target, .. } => out.insert(target.clone()),
                    Hop::Back { source, .. } => out.insert(source.clone()),
                };
            }
        }
        out
    }

    /// The top-level record keys evaluation reads (`id` always included): a record decoded
    /// with only these keys matches exactly when the whole record does.
    pub fn record_keys(&self) -> Vec<String> {
        fn operand(o: &Operand, out: &mut Vec<String>) {
            let first = match o {
                Operand::Field { path, .. } => path.first(),
                // `:changed` compares the body value with the record's.
                Operand::Request { source: RequestSource::Body, path, modifier: Some(Modifier::Changed) } => {
                    path.first()
                }
                _ => None,
            };
            if let Some(name) = first {
                if !out.contains(name) {
                    out.push(name.clone());
                }
                // A guarded email reads the record's visibility flag too.
                if name == "email" && !out.iter().any(|k| k == "emailVisibility") {
                    out.push("emailVisibility".into());
                }
            }
        }
        fn walk(expr: &Expr, out: &mut Vec<String>) {
            match expr {
                Expr::And(a, b) | Expr::Or(a, b) => {
                    walk(a, out);
                    walk(b, out);
                }
                Expr::Compare { left, right, .. } => {
                    operand(left, out);
                    operand(right, out);
                }
            }
        }
        let mut out = vec!["id".to_string()];
        walk(&self.expr, &mut out);
        out
    }

    /// Parses `src` and checks every field it names, following relations through `catalog`.
    /// `privileged` callers (superusers) may name hidden fields.
    pub fn compile(
        src: &str,
        collection: &Collection,
        catalog: &Catalog,
        privileged: bool,
    ) -> Result<Filter, FilterError> {
        let expr = parse::parse(src)?;
        let mut joins = Vec::new();
        check(&expr, collection, catalog, privileged, &mut joins)?;
        let mut resolved = Vec::new();
        cache_paths(&expr, collection, catalog, privileged, &mut resolved);
        Ok(Filter { expr, joins, resolved })
    }

    /// True when `record` matches, given the request, the clock and (for relation paths and
    /// joins) the records around it. Without `env`, related values are null.
    pub fn matches(
        &self,
        collection: &Collection,
        record: &Map<String, Value>,
        request: &RequestInfo,
        now: &Now,
        env: Option<&Env<'_>>,
    ) -> bool {
        eval::matches(&self.expr, &self.joins, &self.resolved, collection, record, request, now, env)
    }
}

/// True for the `email` field of an auth collection: whose value only superusers, the
/// record's owner and (when its `emailVisibility` is on) everyone else may see.
pub fn is_guarded_email(collection: &Collection, field: &str) -> bool {
    field == "email" && collection.is_auth()
}

/// The one rule of email visibility, used by output, filters, sorts, cursors and search:
/// `record` (of auth collection `collection_id`) shows its email to an unprivileged caller
/// signed in as `auth` (`collectionId` and `id`) when its `emailVisibility` is on or when it
/// is the caller's own record.
pub fn email_visible(
    collection_id: &str,
    record: &Map<String, Value>,
    auth: Option<&Map<String, Value>>,
) -> bool {
    if record.get("emailVisibility").and_then(Value::as_bool) == Some(true) {
        return true;
    }
    let Some(auth) = auth else {
        return false;
    };
    auth.get("collectionId").and_then(Value::as_str) == Some(collection_id)
        && auth.get("id").and_then(Value::as_str).is_some()
        && auth.get("id") == record.get("id")
}

/// Resolves a field path within one collection (no relation hops).
pub(crate) fn access(collection: &Collection, path: &[String], privileged: bool) -> Result<Access, String> {
    let Some(first) = path.first() else {
        return Err("empty field path".into());
    };
    let field =
        collection.field(first).ok_or_else(|| format!("unknown field {first:?} in {}", collection.name))?;
    if field.is_never_returned() && !privileged {
        return Err(format!("field {first:?} cannot be filtered"));
    }
    if matches!(field.kind, FieldKind::Password(_)) {
        return Err(format!("field {first:?} cannot be filtered"));
    }
    if path.len() == 1 {
        let multi = matches!(&field.kind, FieldKind::Relation(o) if o.is_multiple())
            || matches!(&field.kind, FieldKind::File(o) if o.is_multiple());
        let json_unless_each = matches!(&field.kind, FieldKind::Select(o) if o.is_multiple());
        let guarded = !privileged && is_guarded_email(collection, &field.name);
        return Ok(Access::Field { name: field.name.clone(), multi, json_unless_each, guarded });
    }
    match field.kind {
        FieldKind::Json(_) => Ok(Access::Json { name: field.name.clone(), path: path[1..].to_vec() }),
        _ => Err(format!(
            "{first:?} is not a relation or JSON field, so {:?} cannot be resolved",
            path.join(".")
        )),
    }
}

/// Resolves a field path that may cross relations (`author.name`, `comments_via_post.text`).
pub(crate) fn resolve(
    catalog: &Catalog,
    collection: &Collection,
    path: &[String],
    privileged: bool,
) -> Result<Resolved, String> {
    let id_path = [String::from("id")];
    let mut hops = Vec::new();
    let mut many = false;
    let mut owned: Option<Arc<CatalogEntry>> = None;
    let mut rest = path;
    loop {
        let here: &Collection = match &owned {
            Some(entry) => &entry.collection,
            None => collection,
        };
        let Some(first) = rest.first() else {
            return Err("empty field path".into());
        };
        if hops.len() > MAX_HOPS {
            return Err(format!("more than {MAX_HOPS} relation hops"));
        }
        if rest.len() > 1 {
            if let Some(field) = here.field(first) {
                if let FieldKind::Relation(o) = &field.kind {
                    if field.is_never_returned() && !privileged {
                        return Err(format!("field {first:?} cannot be filtered"));
                    }
                    let target = catalog
                        .get(&o.collection_id)
                        .cloned()
                        .ok_or_else(|| format!("the target of {first:?} no longer exists"))?;
                    many |= o.is_multiple();
                    hops.push(Hop::Forward {
                        field: field.name.clone(),
                        target: target.collection.id.clone(),
                    });
                    owned = Some(target);
                    rest = &rest[1..];
                    continue;
                }
            }
        }
        if here.field(first).is_none() {
            if let Some((source_name, field_name)) = first.split_once("_via_") {
                let source = catalog
                    .get(source_name)
                    .cloned()
                    .ok_or_else(|| format!("unknown collection {source_name:?} in {first:?}"))?;
                let field = source
                    .collection
                    .field(field_name)
                    .filter(|f| matches!(&f.kind, FieldKind::Relation(o) if o.collection_id == here.id))
                    .ok_or_else(|| {
                        format!(
                            "{first:?}: {field_name:?} is not a relation of {source_name} to {}",
                            here.name
                        )
                    })?;
                if field.is_never_returned() && !privileged {
                    return Err(format!("field {first:?} cannot be filtered"));
                }
                many = true;
                hops.push(Hop::Back { source: source.collection.id.clone(), field_id: field.id.clone() });
                owned = Some(source.clone());
                // `x_via_y` alone stands for the ids of those records.
                rest = if rest.len() > 1 { &rest[1..] } else { &id_path[..] };
                continue;
            }
        }
        let access = access(here, rest, privileged)?;
        return Ok(Resolved { hops, access, many });
    }
}

fn check_operand(
    op: &Operand,
    collection: &Collection,
    catalog: &Catalog,
    privileged: bool,
    position: usize,
    joins: &mut Vec<String>,
) -> Result<(), FilterError> {
    let fail = |message: String| FilterError { position, message };
    match op {
        Operand::Field { path, .. } => {
            resolve(catalog, collection, path, privileged).map(|_| ()).map_err(fail)
        }
        Operand::Collection { name, path } => {
            let target = catalog.get(name).ok_or_else(|| fail(format!("unknown collection {name:?}")))?;
            resolve(catalog, &target.collection, path, privileged).map_err(fail)?;
            if !joins.contains(&target.collection.id) {
                joins.push(target.collection.id.clone());
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Resolves every field path once (access was checked by `check`; `privileged` decides
/// which emails are guarded), for paths starting at `collection` and at each `@collection`
/// join.
fn cache_paths(
    expr: &Expr,
    collection: &Collection,
    catalog: &Catalog,
    privileged: bool,
    out: &mut Vec<(String, Vec<String>, Resolved)>,
) {
    let mut add = |c: &Collection, path: &[String]| {
        if out.iter().any(|(id, p, _)| *id == c.id && p == path) {
            return;
        }
        if let Ok(r) = resolve(catalog, c, path, privileged) {
            out.push((c.id.clone(), path.to_vec(), r));
        }
    };
    let mut stack = vec![expr];
    while let Some(e) = stack.pop() {
        match e {
            Expr::And(a, b) | Expr::Or(a, b) => {
                stack.push(a);
                stack.push(b);
            }
            Expr::Compare { left, right, .. } => {
                for op in [left, right] {
                    match op {
                        Operand::Field { path, .. } => add(collection, path),
                        Operand::Collection { name, path } => {
                            if let Some(target) = catalog.get(name) {
                                add(&target.collection, path);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

fn check(
    expr: &Expr,
    collection: &Collection,
    catalog: &Catalog,
    privileged: bool,
    joins: &mut Vec<String>,
) -> Result<(), FilterError> {
    match expr {
        Expr::And(a, b) | Expr::Or(a, b) => {
            check(a, collection, catalog, privileged, joins)?;
            check(b, collection, catalog, privileged, joins)
        }
        Expr::Compare { left, right, position, .. } => {
            check_operand(left, collection, catalog, privileged, *position, joins)?;
            check_operand(right, collection, catalog, privileged, *position, joins)
        }
    }
}

#[cfg(test)]
mod tests;

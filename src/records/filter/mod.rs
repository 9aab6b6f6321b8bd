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

/// How a field path reads a record value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Access {
    /// A plain field; `multi` when it holds a list (multiple select).
    Field { name: String, multi: bool },
    /// A path into a JSON field.
    Json { name: String, path: Vec<String> },
}

/// An expression checked against a collection, ready to evaluate.
#[derive(Debug, Clone)]
pub struct Filter {
    expr: Expr,
}

impl Filter {
    /// Parses `src` and checks every field it names. `privileged` callers (superusers) may
    /// name hidden fields.
    pub fn compile(src: &str, collection: &Collection, privileged: bool) -> Result<Filter, FilterError> {
        let expr = parse::parse(src)?;
        check(&expr, collection, privileged)?;
        Ok(Filter { expr })
    }

    /// True when `record` matches, given the request and the clock.
    pub fn matches(
        &self,
        collection: &Collection,
        record: &Map<String, Value>,
        request: &RequestInfo,
        now: &Now,
    ) -> bool {
        eval::matches(&self.expr, collection, record, request, now)
    }
}

/// Resolves a field path against the collection.
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
        let multi = matches!(&field.kind, FieldKind::Select(o) if o.is_multiple());
        return Ok(Access::Field { name: field.name.clone(), multi });
    }
    match field.kind {
        FieldKind::Json(_) => Ok(Access::Json { name: field.name.clone(), path: path[1..].to_vec() }),
        _ => Err(format!(
            "{first:?} is not a relation or JSON field, so {:?} cannot be resolved",
            path.join(".")
        )),
    }
}

fn check_operand(
    op: &Operand,
    collection: &Collection,
    privileged: bool,
    position: usize,
) -> Result<(), FilterError> {
    match op {
        Operand::Field { path, .. } => access(collection, path, privileged)
            .map(|_| ())
            .map_err(|message| FilterError { position, message }),
        Operand::Collection { .. } => Err(FilterError {
            position,
            message: "@collection joins are not available in this version".into(),
        }),
        _ => Ok(()),
    }
}

fn check(expr: &Expr, collection: &Collection, privileged: bool) -> Result<(), FilterError> {
    match expr {
        Expr::And(a, b) | Expr::Or(a, b) => {
            check(a, collection, privileged)?;
            check(b, collection, privileged)
        }
        Expr::Compare { left, right, position, .. } => {
            check_operand(left, collection, privileged, *position)?;
            check_operand(right, collection, privileged, *position)
        }
    }
}

#[cfg(test)]
mod tests;

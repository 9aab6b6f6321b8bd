//! The query planner: picks a secondary index for a list's filter and sort.
//!
//! From the filter's top-level `&&` chain it takes the `field op literal` terms
//! ([`crate::records::filter::Filter::terms`]). For each index it pins the leading columns that terms fix with
//! equalities, then narrows the next column with range terms (`>`, `>=`, `<`, `<=`) or a
//! case-insensitive `~ 'prefix%'`, giving key spans in the index. The index also serves
//! the sort when the sort keys (minus pinned columns) are exactly the remaining columns in
//! one direction: then the list streams the spans in key order (reversed for descending)
//! and stops at the end of the page.
//!
//! The index only narrows: the list still evaluates the whole filter (and the list rule) on
//! every candidate. A term is used only when the key order equals the evaluator's order for
//! it: number fields with number literals, text-like fields with text literals (byte
//! order), bools for equality; `= ""` is never used (it also matches null).

use serde_json::{json, Value};

use super::collection::Collection;
use super::field::{Field, FieldKind};
use super::filter::{Literal, Op, Term};
use super::index::{self, IndexDef};
use super::list::SortKey;

/// How a column's stored values compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnKind {
    Number,
    Text,
    Bool,
    /// Multi-valued or JSON: equality and order are not those of the key encoding.
    Other,
}

fn column_kind(field: &Field) -> ColumnKind {
    match &field.kind {
        FieldKind::Number(_) => ColumnKind::Number,
        FieldKind::Bool(_) => ColumnKind::Bool,
        FieldKind::Text(_)
        | FieldKind::Email(_)
        | FieldKind::Url(_)
        | FieldKind::Editor(_)
        | FieldKind::Date(_)
        | FieldKind::Autodate(_) => ColumnKind::Text,
        FieldKind::Select(o) if !o.is_multiple() => ColumnKind::Text,
        FieldKind::Relation(o) if !o.is_multiple() => ColumnKind::Text,
        FieldKind::File(o) if !o.is_multiple() => ColumnKind::Text,
        _ => ColumnKind::Other,
    }
}

/// One span of index keys: `lower <= key < upper` (`None`: up to the end of the table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub lower: Vec<u8>,
    pub upper: Option<Vec<u8>>,
}

impl Span {
    fn intersect(&self, other: &Span) -> Span {
        let lower = self.lower.clone().max(other.lower.clone());
        let upper = match (&self.upper, &other.upper) {
            (Some(a), Some(b)) => Some(a.clone().min(b.clone())),
            (Some(a), None) | (None, Some(a)) => Some(a.clone()),
            (None, None) => None,
        };
        Span { lower, upper }
    }

    fn is_empty(&self) -> bool {
        self.upper.as_ref().is_some_and(|u| *u <= self.lower)
    }

    /// The keys starting with `prefix`.
    fn prefixed(prefix: Vec<u8>) -> Span {
        let upper = index::prefix_end(&prefix);
        Span { lower: prefix, upper }
    }
}

/// The chosen index and how it is used.
#[derive(Debug, Clone)]
pub struct IndexPlan {
    pub def: IndexDef,
    /// Values of the leading columns fixed by equalities.
    pub pinned: Vec<Value>,
    /// The range or prefix terms used on the next column, for `explain`.
    pub range: Option<Value>,
    /// Disjoint key spans holding every candidate, in key order.
    pub spans: Vec<Span>,
    /// `Some(reverse)` when streaming the spans (reversed if `reverse`) gives the requested
    /// order, ties by id included.
    pub sort: Option<bool>,
    /// True when a record matches the filter exactly when its entry lies in the spans (the
    /// filter is nothing but the terms the plan used), so counts need no record reads.
    pub exact: bool,
}

impl IndexPlan {
    /// The key prefix of the pinned values.
    pub fn base(&self, collection_id: &str) -> Vec<u8> {
        let refs: Vec<&Value> = self.pinned.iter().collect();
        index::prefix(collection_id, &self.def.name, &refs)
    }

    /// True when the plan narrows the candidates (not just an ordered walk of the index).
    pub fn narrows(&self) -> bool {
        !self.pinned.is_empty() || self.range.is_some()
    }

    /// The plan as shown by `explain=1`.
    pub fn describe(&self) -> Value {
        let equal: serde_json::Map<String, Value> =
            self.def.columns.iter().cloned().zip(self.pinned.iter().cloned()).collect();
        json!({
            "strategy": "index",
            "index": self.def.name,
            "columns": self.def.columns[..self.pinned.len()],
            "indexColumns": self.def.columns,
            "unique": self.def.unique,
            "equal": equal,
            "range": self.range,
            "spans": self.spans.len(),
            "sortByIndex": self.sort.is_some(),
            "reverse": self.sort.unwrap_or(false),
            "exact": self.exact,
        })
    }
}

/// The key value of an equality literal on a column, when key equality is the evaluator's.
fn equality_value(kind: ColumnKind, literal: &Literal) -> Option<Value> {
    match (kind, literal) {
        (ColumnKind::Number, Literal::Number(n)) => serde_json::Number::from_f64(*n).map(Value::Number),
        (ColumnKind::Text, Literal::Text(s)) if !s.is_empty() => Some(Value::String(s.clone())),
        (ColumnKind::Bool, Literal::Bool(b)) => Some(Value::Bool(*b)),
        _ => None,
    }
}

/// The literal prefix of a LIKE pattern that has a `%` (text before the first wildcard).
fn like_prefix(pattern: &str) -> Option<String> {
    let mut prefix = String::new();
    let (mut escaped, mut wildcard, mut open) = (false, false, true);
    for c in pattern.chars() {
        if escaped {
            escaped = false;
            if open {
                prefix.push(c);
            }
        } else if c == '\\' {
            escaped = true;
        } else if c == '%' {
            wildcard = true;
            open = false;
        } else if c == '_' {
            open = false;
        } else if open {
            prefix.push(c);
        }
    }
    (wildcard && !prefix.is_empty()).then_some(prefix)
}

/// Most ASCII letters of a prefix expanded into both cases (2^n spans).
const MAX_CASE_LETTERS: usize = 3;

/// Every ASCII-case variant of the start of `prefix` (LIKE ignores ASCII case), cut before
/// the letter beyond [`MAX_CASE_LETTERS`]: each value the pattern matches starts with one.
fn case_variants(prefix: &str) -> Vec<String> {
    let mut variants = vec![String::new()];
    let mut letters = 0;
    for c in prefix.chars() {
        if c.is_ascii_alphabetic() {
            if letters == MAX_CASE_LETTERS {
                break;
            }
            letters += 1;
            let mut next = Vec::with_capacity(variants.len() * 2);
            for v in &variants {
                next.push(format!("{v}{}", c.to_ascii_lowercase()));
                next.push(format!("{v}{}", c.to_ascii_uppercase()));
            }
            variants = next;
        } else {
            for v in &mut variants {
                v.push(c);
            }
        }
    }
    variants.sort();
    variants
}

/// Narrowing of one column by range and prefix terms: the spans, the description, how
/// many terms were used, and whether all were exact.
struct Narrowing {
    spans: Vec<Span>,
    described: Vec<String>,
    used: Vec<usize>,
    exact: bool,
}

fn narrow(base: &[u8], column: &str, kind: ColumnKind, terms: &[Term]) -> Option<Narrowing> {
    let number = match kind {
        ColumnKind::Number => true,
        ColumnKind::Text => false,
        _ => return None,
    };
    let (start_tag, end_tag) = index::type_span(number);
    let with_tag = |tag: u8| {
        let mut k = base.to_vec();
        k.push(tag);
        k
    };
    let mut span = Span { lower: with_tag(start_tag), upper: Some(with_tag(end_tag)) };
    let mut prefixes: Option<Vec<String>> = None;
    let mut described = Vec::new();
    let mut used = Vec::new();
    let mut exact = true;
    for (i, term) in terms.iter().enumerate() {
        if term.field != column {
            continue;
        }
        let value = match (&term.literal, number) {
            (Literal::Number(n), true) => serde_json::Number::from_f64(*n).map(Value::Number),
            (Literal::Text(s), false) => Some(Value::String(s.clone())),
            _ => None,
        };
        let Some(value) = value else { continue };
        let mut at = base.to_vec();
        index::encode_value(&mut at, &value);
        let bound = match term.op {
            Op::Gt => Span { lower: index::prefix_end(&at).unwrap_or(at), upper: None },
            Op::Gte => Span { lower: at, upper: None },
            Op::Lt => Span { lower: Vec::new(), upper: Some(at) },
            Op::Lte => Span { lower: Vec::new(), upper: index::prefix_end(&at) },
            Op::Like if !number && prefixes.is_none() => match value.as_str().and_then(like_prefix) {
                Some(p) => {
                    described.push(format!("~ {p:?}%"));
                    used.push(i);
                    exact = false;
                    prefixes = Some(case_variants(&p));
                    continue;
                }
                None => continue,
            },
            _ => continue,
        };
        let symbol = match term.op {
            Op::Gt => ">",
            Op::Gte => ">=",
            Op::Lt => "<",
            _ => "<=",
        };
        described.push(format!("{symbol} {value}"));
        used.push(i);
        span = span.intersect(&bound);
    }
    if used.is_empty() {
        return None;
    }
    let spans: Vec<Span> = match prefixes {
        None => vec![span],
        Some(variants) => variants
            .iter()
            .map(|v| {
                let mut k = base.to_vec();
                index::encode_string_prefix(&mut k, v);
                Span::prefixed(k).intersect(&span)
            })
            .collect(),
    };
    let spans = spans.into_iter().filter(|s| !s.is_empty()).collect();
    Some(Narrowing { spans, described, used, exact })
}

/// Whether the index order (after `pinned` columns) is the order `sort` asks for: the sort
/// keys, minus pinned columns and a final `id`, are the remaining columns, all in one
/// direction. Returns `Some(descending)`.
fn serves_sort(collection: &Collection, def: &IndexDef, pinned: usize, sort: &[SortKey]) -> Option<bool> {
    let mut names = Vec::new();
    let mut direction: Option<bool> = None;
    for key in sort {
        let SortKey::Field { name, descending } = key else {
            return None;
        };
        if direction.is_some_and(|d| d != *descending) {
            return None;
        }
        direction = Some(*descending);
        names.push(name.as_str());
    }
    let descending = direction.unwrap_or(false);
    names.retain(|n| !def.columns[..pinned].iter().any(|c| c == n));
    if names.last() == Some(&"id") {
        names.pop();
    }
    let rest = &def.columns[pinned..];
    if names.len() != rest.len() || names.iter().zip(rest).any(|(n, c)| n != c) {
        return None;
    }
    let scalar =
        rest.iter().all(|c| collection.field(c).is_some_and(|f| column_kind(f) != ColumnKind::Other));
    scalar.then_some(descending)
}

/// The plan one index allows, if it narrows the candidates or serves the sort.
fn plan_for(
    collection: &Collection,
    def: &IndexDef,
    terms: &[Term],
    only_terms: bool,
    sort: &[SortKey],
) -> Option<IndexPlan> {
    let mut pinned = Vec::new();
    let mut used: Vec<usize> = Vec::new();
    for column in &def.columns {
        let kind = collection.field(column).map(column_kind)?;
        let found = terms
            .iter()
            .enumerate()
            .filter(|(_, t)| t.field == *column && t.op == Op::Eq)
            .find_map(|(i, t)| equality_value(kind, &t.literal).map(|v| (i, v)));
        match found {
            Some((i, v)) => {
                pinned.push(v);
                used.push(i);
            }
            None => break,
        }
    }
    let refs: Vec<&Value> = pinned.iter().collect();
    let base = index::prefix(&collection.id, &def.name, &refs);
    let mut exact = true;
    let mut range = None;
    let mut spans = vec![Span::prefixed(base.clone())];
    if let Some(column) = def.columns.get(pinned.len()) {
        let kind = collection.field(column).map(column_kind)?;
        if let Some(n) = narrow(&base, column, kind, terms) {
            range = Some(json!({"column": column, "terms": n.described}));
            used.extend(n.used);
            exact &= n.exact;
            spans = n.spans;
        }
    }
    let sorted = serves_sort(collection, def, pinned.len(), sort);
    if pinned.is_empty() && range.is_none() && sorted.is_none() {
        return None;
    }
    // Exact only when every term was used, exactly, and nothing else is in the filter.
    exact &= only_terms && used.len() == terms.len();
    Some(IndexPlan { def: def.clone(), pinned, range, spans, sort: sorted, exact })
}

/// Picks the best index for `terms` (from [`super::filter::Filter::terms`]; `only_terms`
/// when the filter is nothing else) and `sort`: most pinned columns, then a range, then
/// serving the sort, then unique. `None` when no index helps.
pub fn choose(
    collection: &Collection,
    indexes: &[IndexDef],
    terms: &[Term],
    only_terms: bool,
    sort: &[SortKey],
) -> Option<IndexPlan> {
    let score = |p: &IndexPlan| (p.pinned.len(), p.range.is_some(), p.sort.is_some(), p.def.unique);
    indexes.iter().filter_map(|def| plan_for(collection, def, terms, only_terms, sort)).fold(
        None,
        |best: Option<IndexPlan>, p| match best {
            Some(b) if score(&b) >= score(&p) => Some(b),
            _ => Some(p),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_prefixes_stop_at_the_first_wildcard_and_need_a_percent() {
        assert_eq!(like_prefix("abc%"), Some("abc".into()));
        assert_eq!(like_prefix("ab_c%"), Some("ab".into()));
        assert_eq!(like_prefix("a\\%b%"), Some("a%b".into()));
        assert_eq!(like_prefix("%abc"), None);
        assert_eq!(like_prefix("abc"), None);
    }

    #[test]
    fn case_variants_cover_ascii_case_up_to_three_letters() {
        assert_eq!(case_variants("a1"), vec!["A1".to_string(), "a1".to_string()]);
        let v = case_variants("abcd");
        assert_eq!(v.len(), 8);
        assert!(v.contains(&"aBc".to_string()));
        assert!(v.iter().all(|s| s.len() == 3));
        assert_eq!(case_variants("é1"), vec!["é1".to_string()]);
    }
}

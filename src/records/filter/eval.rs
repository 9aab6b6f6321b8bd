//! Evaluation of a checked expression against one record, with PocketBase's semantics.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};
use serde_json::{Map, Value};

use super::{
    access, resolve, Access, Env, Expr, Hop, Macro, Modifier, Op, Operand, RequestInfo, RequestSource,
    Resolved, MAX_JOIN_ROWS,
};
use crate::records::collection::Collection;
use crate::records::field::{relation_ids, FieldKind};
use crate::util::time;

/// The clock used for `@now` and the other date macros (fixed per request).
#[derive(Debug, Clone, Copy)]
pub struct Now(pub DateTime<Utc>);

impl Now {
    pub fn current() -> Now {
        Now(Utc::now())
    }
}

/// A value as the comparison sees it.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Null,
    Bool(bool),
    Num(f64),
    Text(String),
    /// The items of a multi-valued field (compared item by item).
    Many(Vec<Val>),
}

fn from_json(v: &Value) -> Val {
    match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => Val::Num(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Val::Text(s.clone()),
        other => Val::Text(other.to_string()),
    }
}

fn many_from_json(v: &Value) -> Val {
    match v {
        Value::Array(items) => Val::Many(items.iter().map(from_json).collect()),
        Value::Null => Val::Many(vec![]),
        other => Val::Many(vec![from_json(other)]),
    }
}

fn json_path<'a>(mut v: &'a Value, path: &[String]) -> Option<&'a Value> {
    for key in path {
        v = match v {
            Value::Object(map) => map.get(key)?,
            Value::Array(items) => items.get(key.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

fn start_of_day(d: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
}

fn macro_value(m: Macro, now: &Now) -> Val {
    let t = now.0;
    let date = |d: DateTime<Utc>| Val::Text(time::format(d));
    let today = t.date_naive();
    match m {
        Macro::Now => date(t),
        Macro::Yesterday => date(t - Duration::days(1)),
        Macro::Tomorrow => date(t + Duration::days(1)),
        Macro::Second => Val::Num(f64::from(t.second())),
        Macro::Minute => Val::Num(f64::from(t.minute())),
        Macro::Hour => Val::Num(f64::from(t.hour())),
        Macro::Day => Val::Num(f64::from(t.day())),
        Macro::Month => Val::Num(f64::from(t.month())),
        Macro::Weekday => Val::Num(f64::from(t.weekday().num_days_from_sunday())),
        Macro::Year => Val::Num(f64::from(t.year())),
        Macro::TodayStart => date(start_of_day(today)),
        Macro::TodayEnd => date(start_of_day(today) + Duration::days(1) - Duration::milliseconds(1)),
        Macro::MonthStart => date(start_of_day(today.with_day(1).unwrap_or(today))),
        Macro::MonthEnd => {
            let first = today.with_day(1).unwrap_or(today);
            let next = if first.month() == 12 {
                NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
            } else {
                NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
            }
            .unwrap_or(first);
            date(start_of_day(next) - Duration::milliseconds(1))
        }
        Macro::YearStart => date(start_of_day(NaiveDate::from_ymd_opt(t.year(), 1, 1).unwrap_or(today))),
        Macro::YearEnd => date(
            start_of_day(NaiveDate::from_ymd_opt(t.year() + 1, 1, 1).unwrap_or(today))
                - Duration::milliseconds(1),
        ),
    }
}

/// A date macro's value as a planner literal.
pub(super) fn macro_literal(m: Macro, now: &Now) -> Option<super::Literal> {
    match macro_value(m, now) {
        Val::Text(s) => Some(super::Literal::Text(s)),
        Val::Num(n) => Some(super::Literal::Number(n)),
        _ => None,
    }
}

fn apply_modifier(v: Val, modifier: Option<Modifier>) -> Val {
    match modifier {
        None | Some(Modifier::Each) => v,
        Some(Modifier::Length) => match v {
            Val::Many(items) => Val::Num(items.len() as f64),
            Val::Null => Val::Num(0.0),
            Val::Text(s) if s.is_empty() => Val::Num(0.0),
            _ => Val::Num(1.0),
        },
        Some(Modifier::Lower) => match v {
            Val::Text(s) => Val::Text(s.to_lowercase()),
            Val::Many(items) => {
                Val::Many(items.into_iter().map(|i| apply_modifier(i, Some(Modifier::Lower))).collect())
            }
            other => other,
        },
        // Resolved by the caller, which knows whether the key was present.
        Some(Modifier::Isset) | Some(Modifier::Changed) => v,
    }
}

struct Ctx<'a> {
    /// Field paths resolved at compile time (collection id, path, resolution).
    resolved: &'a [(String, Vec<String>, Resolved)],
    collection: &'a Collection,
    record: &'a Map<String, Value>,
    request: &'a RequestInfo,
    now: &'a Now,
    env: Option<&'a Env<'a>>,
    /// The row bound to each `@collection` join (by collection id).
    bound: &'a [(String, Map<String, Value>)],
}

/// Reads `access` from one record.
fn read_access(record: &Map<String, Value>, access: &Access, modifier: Option<Modifier>) -> Val {
    let listy = modifier == Some(Modifier::Each) || modifier == Some(Modifier::Length);
    match access {
        Access::Field { name, multi, json_unless_each, .. } => {
            let raw = record.get(name).unwrap_or(&Value::Null);
            if *multi || listy {
                many_from_json(raw)
            } else if *json_unless_each {
                // PocketBase compares a multiple select as its JSON text (`["a","b"]`).
                let items = match raw {
                    Value::Array(items) => items.clone(),
                    _ => vec![],
                };
                Val::Text(Value::Array(items).to_string())
            } else {
                from_json(raw)
            }
        }
        Access::Json { name, path } => {
            let raw = record.get(name).and_then(|v| json_path(v, path)).unwrap_or(&Value::Null);
            if listy {
                many_from_json(raw)
            } else {
                from_json(raw)
            }
        }
    }
}

impl Ctx<'_> {
    /// Reads `access` from `record` (of collection `collection_id`), as null when it is an
    /// email the caller may not see.
    fn read(
        &self,
        collection_id: &str,
        record: &Map<String, Value>,
        access: &Access,
        modifier: Option<Modifier>,
    ) -> Val {
        if let Access::Field { guarded: true, .. } = access {
            if !super::email_visible(collection_id, record, self.request.auth.as_ref()) {
                return read_access(&Map::new(), access, modifier);
            }
        }
        read_access(record, access, modifier)
    }

    /// The value of `path` starting at `record` in `collection`, following relations.
    fn path_value(
        &self,
        collection: &Collection,
        record: &Map<String, Value>,
        path: &[String],
        modifier: Option<Modifier>,
    ) -> Val {
        let cached =
            self.resolved.iter().find(|(id, p, _)| *id == collection.id && p == path).map(|(_, _, r)| r);
        let computed;
        let resolved = match (cached, self.env) {
            (Some(r), _) if self.env.is_some() || r.hops.is_empty() => r,
            (_, Some(env)) => {
                computed = resolve(env.catalog, collection, path, true);
                match &computed {
                    Ok(r) => r,
                    Err(_) => return Val::Null,
                }
            }
            (_, None) => {
                computed = access(collection, path, true).map(|access| Resolved {
                    hops: vec![],
                    access,
                    many: false,
                });
                match &computed {
                    Ok(r) => r,
                    Err(_) => return Val::Null,
                }
            }
        };
        // Paths were checked at compile time (privileged access was decided there).
        if resolved.hops.is_empty() {
            return apply_modifier(self.read(&collection.id, record, &resolved.access, modifier), modifier);
        }
        let Some(env) = self.env else {
            return Val::Null;
        };
        let mut frontier: Vec<Map<String, Value>> = vec![record.clone()];
        let mut current_id = collection.id.clone();
        for hop in &resolved.hops {
            let mut next = Vec::new();
            for rec in &frontier {
                match hop {
                    Hop::Forward { field, target } => {
                        for id in relation_ids(rec.get(field)) {
                            if let Some(r) = env.source.record(target, &id) {
                                next.push(r);
                            }
                        }
                    }
                    Hop::Back { source, field_id } => {
                        let id = rec.get("id").and_then(Value::as_str).unwrap_or_default();
                        for source_id in env.source.referrers(&current_id, id, source, field_id) {
                            if let Some(r) = env.source.record(source, &source_id) {
                                next.push(r);
                            }
                        }
                    }
                }
            }
            current_id = match hop {
                Hop::Forward { target, .. } => target.clone(),
                Hop::Back { source, .. } => source.clone(),
            };
            frontier = next;
        }
        if resolved.many || modifier == Some(Modifier::Length) {
            let mut items = Vec::new();
            for rec in &frontier {
                match self.read(&current_id, rec, &resolved.access, None) {
                    Val::Many(inner) => items.extend(inner),
                    v => items.push(v),
                }
            }
            apply_modifier(Val::Many(items), modifier)
        } else {
            let v = frontier
                .first()
                .map(|r| self.read(&current_id, r, &resolved.access, modifier))
                .unwrap_or(Val::Null);
            apply_modifier(v, modifier)
        }
    }

    fn request_value(&self, source: &RequestSource, path: &[String], modifier: Option<Modifier>) -> Val {
        let map = match source {
            RequestSource::Method => return Val::Text(self.request.method.clone()),
            RequestSource::Context => return Val::Text("default".into()),
            RequestSource::Auth => self.request.auth.as_ref(),
            RequestSource::Body => Some(&self.request.body),
            RequestSource::Query => Some(&self.request.query),
            RequestSource::Headers => Some(&self.request.headers),
        };
        let found = map.and_then(|m| {
            let (first, rest) = path.split_first()?;
            let key = if *source == RequestSource::Headers {
                first.to_lowercase().replace('-', "_")
            } else {
                first.clone()
            };
            json_path(m.get(&key)?, rest)
        });
        match modifier {
            Some(Modifier::Isset) => Val::Bool(found.is_some()),
            Some(Modifier::Changed) => {
                let changed = match (found, path.first()) {
                    (Some(new), Some(name)) => self.record.get(name) != Some(new),
                    _ => false,
                };
                Val::Bool(changed)
            }
            _ => {
                let raw = found.unwrap_or(&Value::Null);
                let v = if modifier == Some(Modifier::Length)
                    || modifier == Some(Modifier::Each)
                    || raw.is_array()
                {
                    many_from_json(raw)
                } else {
                    from_json(raw)
                };
                apply_modifier(v, modifier)
            }
        }
    }

    fn value(&self, operand: &Operand) -> Val {
        match operand {
            Operand::Text(s) => Val::Text(s.clone()),
            Operand::Number(n) => Val::Num(*n),
            Operand::Bool(b) => Val::Bool(*b),
            Operand::Null => Val::Null,
            Operand::Macro(m) => macro_value(*m, self.now),
            Operand::Field { path, modifier } => {
                self.path_value(self.collection, self.record, path, *modifier)
            }
            Operand::Request { source, path, modifier } => self.request_value(source, path, *modifier),
            Operand::Collection { name, path } => {
                let Some(env) = self.env else {
                    return Val::Null;
                };
                let Some(entry) = env.catalog.get(name) else {
                    return Val::Null;
                };
                let row = self.bound.iter().find(|(id, _)| *id == entry.collection.id).map(|(_, r)| r);
                match row {
                    Some(row) => self.path_value(&entry.collection, row, path, None),
                    None => Val::Null,
                }
            }
        }
    }
}

fn as_number(v: &Val) -> Option<f64> {
    match v {
        Val::Num(n) => Some(*n),
        Val::Bool(b) => Some(f64::from(u8::from(*b))),
        Val::Text(s) => s.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
        _ => None,
    }
}

fn as_text(v: &Val) -> String {
    match v {
        Val::Null => String::new(),
        Val::Bool(b) => {
            if *b {
                "1".into()
            } else {
                "0".into()
            }
        }
        Val::Num(n) => {
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                format!("{}", *n as i64)
            } else {
                n.to_string()
            }
        }
        Val::Text(s) => s.clone(),
        Val::Many(items) => items.iter().map(as_text).collect::<Vec<_>>().join(","),
    }
}

/// SQL-like equality where null and "" are the same, and numbers compare numerically with
/// numeric text.
fn equal(a: &Val, b: &Val) -> bool {
    let empty = |v: &Val| matches!(v, Val::Null) || matches!(v, Val::Text(s) if s.is_empty());
    if empty(a) || empty(b) {
        return empty(a) && empty(b);
    }
    match (a, b) {
        (Val::Text(x), Val::Text(y)) => x == y,
        (Val::Bool(x), Val::Bool(y)) => x == y,
        _ => match (as_number(a), as_number(b)) {
            (Some(x), Some(y)) => x == y,
            _ => as_text(a) == as_text(b),
        },
    }
}

fn order(a: &Val, b: &Val) -> Option<std::cmp::Ordering> {
    if matches!(a, Val::Null) || matches!(b, Val::Null) {
        return None;
    }
    match (a, b) {
        (Val::Text(x), Val::Text(y)) => Some(x.cmp(y)),
        _ => match (as_number(a), as_number(b)) {
            (Some(x), Some(y)) => x.partial_cmp(&y),
            _ => Some(as_text(a).cmp(&as_text(b))),
        },
    }
}

/// `value LIKE pattern ESCAPE '\'`, case-insensitive for ASCII as in SQLite. Without an
/// unescaped `%`, the pattern is a plain "contains" text.
///
/// The cost is bounded whatever the input: a plain text is found with a linear substring
/// search; a pattern is split at its `%`s into segments, the first anchored at the start,
/// the last at the end, and each one between found leftmost (which is exact for `%`),
/// literal segments by KMP in O(|value| + |segment|) and segments with `_` by bit-parallel
/// Shift-And in O(|value| × ⌈|segment| / 64⌉). No backtracking.
fn like(value: &str, pattern: &str) -> bool {
    let has_wildcard = {
        let mut escaped = false;
        let mut found = false;
        for c in pattern.chars() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '%' {
                found = true;
            }
        }
        found
    };
    if !has_wildcard {
        let mut needle = String::with_capacity(pattern.len());
        let mut escaped = false;
        for c in pattern.chars() {
            if c == '\\' && !escaped {
                escaped = true;
                continue;
            }
            escaped = false;
            needle.push(c.to_ascii_lowercase());
        }
        return needle.is_empty() || value.to_ascii_lowercase().contains(&needle);
    }
    // Segments between unescaped `%`s: literal chars and `_` (any one char).
    let mut segments: Vec<Vec<Tok>> = Vec::new();
    let mut current = Vec::new();
    let mut escaped = false;
    for c in pattern.chars() {
        if escaped {
            current.push(Tok::Lit(c.to_ascii_lowercase()));
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '%' {
            segments.push(std::mem::take(&mut current));
        } else if c == '_' {
            current.push(Tok::One);
        } else {
            current.push(Tok::Lit(c.to_ascii_lowercase()));
        }
    }
    segments.push(current);
    let value: Vec<char> = value.chars().map(|c| c.to_ascii_lowercase()).collect();
    let (Some(first), Some(last)) = (segments.first(), segments.last()) else {
        return true;
    };
    // There are at least two segments: `%` was found.
    if value.len() < first.len() + last.len()
        || !matches_at(&value[..first.len()], first)
        || !matches_at(&value[value.len() - last.len()..], last)
    {
        return false;
    }
    let end = value.len() - last.len();
    let mut at = first.len();
    for segment in &segments[1..segments.len() - 1] {
        if segment.is_empty() {
            continue;
        }
        match find_segment(&value[at..end], segment) {
            Some(start) => at += start + segment.len(),
            None => return false,
        }
    }
    true
}

/// One token of a LIKE segment.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tok {
    Lit(char),
    One,
}

/// True when `text` (as long as `segment`) matches it token by token.
fn matches_at(text: &[char], segment: &[Tok]) -> bool {
    text.len() == segment.len()
        && text.iter().zip(segment).all(|(c, t)| match t {
            Tok::Lit(l) => l == c,
            Tok::One => true,
        })
}

/// Where `segment` first occurs in `text`.
fn find_segment(text: &[char], segment: &[Tok]) -> Option<usize> {
    if segment.len() > text.len() {
        return None;
    }
    if segment.iter().all(|t| matches!(t, Tok::Lit(_))) {
        let needle: Vec<char> = segment
            .iter()
            .map(|t| match t {
                Tok::Lit(c) => *c,
                Tok::One => '\0',
            })
            .collect();
        return kmp_find(text, &needle);
    }
    shift_and_find(text, segment)
}

/// Knuth-Morris-Pratt: the first occurrence of `needle` (non-empty) in `text`.
fn kmp_find(text: &[char], needle: &[char]) -> Option<usize> {
    let mut fail = vec![0usize; needle.len()];
    let mut k = 0;
    for i in 1..needle.len() {
        while k > 0 && needle[i] != needle[k] {
            k = fail[k - 1];
        }
        if needle[i] == needle[k] {
            k += 1;
        }
        fail[i] = k;
    }
    let mut k = 0;
    for (i, c) in text.iter().enumerate() {
        while k > 0 && *c != needle[k] {
            k = fail[k - 1];
        }
        if *c == needle[k] {
            k += 1;
        }
        if k == needle.len() {
            return Some(i + 1 - needle.len());
        }
    }
    None
}

/// Shift-And over multi-word bit sets: the first occurrence of `segment` (non-empty, may
/// hold `_`) in `text`.
fn shift_and_find(text: &[char], segment: &[Tok]) -> Option<usize> {
    let words = segment.len().div_ceil(64);
    let bit = |i: usize| (i / 64, 1u64 << (i % 64));
    // Positions any char may take (`_`), and per literal char the positions it may take.
    let mut any = vec![0u64; words];
    for (i, t) in segment.iter().enumerate() {
        if *t == Tok::One {
            let (w, b) = bit(i);
            any[w] |= b;
        }
    }
    let mut masks: std::collections::HashMap<char, Vec<u64>> = std::collections::HashMap::new();
    for (i, t) in segment.iter().enumerate() {
        if let Tok::Lit(c) = t {
            let (w, b) = bit(i);
            masks.entry(*c).or_insert_with(|| any.clone())[w] |= b;
        }
    }
    let (last_word, last_bit) = bit(segment.len() - 1);
    let mut state = vec![0u64; words];
    for (i, c) in text.iter().enumerate() {
        let mask = masks.get(c).unwrap_or(&any);
        let mut carry = 1u64;
        for (s, m) in state.iter_mut().zip(mask) {
            let next_carry = *s >> 63;
            *s = ((*s << 1) | carry) & m;
            carry = next_carry;
        }
        if state[last_word] & last_bit != 0 {
            return Some(i + 1 - segment.len());
        }
    }
    None
}

fn scalar(op: Op, a: &Val, b: &Val) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    match op {
        Op::Eq => equal(a, b),
        Op::Neq => !equal(a, b),
        Op::Like => !matches!(a, Val::Null) && like(&as_text(a), &as_text(b)),
        Op::NotLike => matches!(a, Val::Null) || !like(&as_text(a), &as_text(b)),
        Op::Gt => order(a, b) == Some(Greater),
        Op::Gte => matches!(order(a, b), Some(Greater | Equal)),
        Op::Lt => order(a, b) == Some(Less),
        Op::Lte => matches!(order(a, b), Some(Less | Equal)),
    }
}

/// Multi-valued operands: without `?`, every item must match (an empty list compares as
/// null); with `?`, at least one item must.
fn compare(op: Op, any: bool, a: &Val, b: &Val) -> bool {
    match (a, b) {
        (Val::Many(items), other) => {
            if items.is_empty() {
                return compare(op, any, &Val::Null, other);
            }
            if any {
                items.iter().any(|i| compare(op, false, i, other))
            } else {
                items.iter().all(|i| compare(op, false, i, other))
            }
        }
        (other, Val::Many(items)) => {
            if items.is_empty() {
                return compare(op, any, other, &Val::Null);
            }
            if any {
                items.iter().any(|i| compare(op, false, other, i))
            } else {
                items.iter().all(|i| compare(op, false, other, i))
            }
        }
        _ => scalar(op, a, b),
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn matches(
    expr: &Expr,
    joins: &[String],
    resolved: &[(String, Vec<String>, Resolved)],
    collection: &Collection,
    record: &Map<String, Value>,
    request: &RequestInfo,
    now: &Now,
    env: Option<&Env<'_>>,
) -> bool {
    let run = |bound: &[(String, Map<String, Value>)]| {
        let ctx = Ctx { resolved, collection, record, request, now, env, bound };
        eval(expr, &ctx)
    };
    let Some(env) = env.filter(|_| !joins.is_empty()) else {
        return run(&[]);
    };
    // `@collection` joins: the expression holds if it holds for some combination of rows
    // (an empty collection joins as one row of nulls), as SQL's LEFT JOIN would have it.
    let plain = Ctx { resolved, collection, record, request, now, env: Some(env), bound: &[] };
    let tables: Vec<(String, Vec<Map<String, Value>>)> = joins
        .iter()
        .map(|id| {
            let mut rows = match join_candidates(expr, id, &plain, env) {
                Some(ids) => {
                    ids.iter().filter_map(|rid| env.source.record(id, rid)).take(MAX_JOIN_ROWS).collect()
                }
                None => env.source.all(id, MAX_JOIN_ROWS),
            };
            if rows.is_empty() {
                rows.push(Map::new());
            }
            (id.clone(), rows)
        })
        .collect();
    let mut index = vec![0usize; tables.len()];
    let mut budget = MAX_JOIN_ROWS;
    loop {
        let bound: Vec<(String, Map<String, Value>)> =
            tables.iter().zip(&index).map(|((id, rows), i)| (id.clone(), rows[*i].clone())).collect();
        if run(&bound) {
            return true;
        }
        budget -= 1;
        if budget == 0 {
            return false;
        }
        // Next combination (odometer order).
        let mut k = 0;
        loop {
            if k == tables.len() {
                return false;
            }
            index[k] += 1;
            if index[k] < tables[k].1.len() {
                break;
            }
            index[k] = 0;
            k += 1;
        }
    }
}

/// The ids of the only rows of the joined collection `join_id` that can satisfy `expr`, when
/// its top-level `&&` chain holds `@collection.<join>.<relation> = v` (or `?=`) with `v` a
/// non-empty id known without the join (a record field, `@request.*`, a literal): the rows
/// whose relation points at `v`, read from the relation reverse index (the intersection
/// when there are several such terms). `None`: no such term, scan the collection.
///
/// Every row that satisfies the term refers to `v`, so the candidates are a superset of the
/// rows that can satisfy `expr`, which is still evaluated in full on each of them; and when
/// none qualifies the answer is false with or without them (a row of nulls never equals a
/// non-empty id).
fn join_candidates(expr: &Expr, join_id: &str, plain: &Ctx<'_>, env: &Env<'_>) -> Option<Vec<String>> {
    fn conjuncts<'e>(expr: &'e Expr, out: &mut Vec<&'e Expr>) {
        match expr {
            Expr::And(a, b) => {
                conjuncts(a, out);
                conjuncts(b, out);
            }
            other => out.push(other),
        }
    }
    let mut terms = Vec::new();
    conjuncts(expr, &mut terms);
    let joined = env.catalog.get(join_id)?;
    let mut found: Option<Vec<String>> = None;
    for term in terms {
        let Expr::Compare { left, op: Op::Eq, right, .. } = term else {
            continue;
        };
        let (field, other) = match (left, right) {
            (Operand::Collection { name, path }, other) | (other, Operand::Collection { name, path })
                if path.len() == 1 && !matches!(other, Operand::Collection { .. }) =>
            {
                match env.catalog.get(name) {
                    Some(entry) if entry.collection.id == joined.collection.id => (&path[0], other),
                    _ => continue,
                }
            }
            _ => continue,
        };
        let Some(field) = joined.collection.field(field) else {
            continue;
        };
        let FieldKind::Relation(options) = &field.kind else {
            continue;
        };
        let Val::Text(target) = plain.value(other) else {
            continue;
        };
        if target.is_empty() {
            continue;
        }
        let ids = env.source.referrers(&options.collection_id, &target, &joined.collection.id, &field.id);
        found = Some(match found {
            None => ids,
            Some(prev) => {
                let ids: std::collections::HashSet<String> = ids.into_iter().collect();
                prev.into_iter().filter(|id| ids.contains(id)).collect()
            }
        });
    }
    found
}

fn eval(expr: &Expr, ctx: &Ctx<'_>) -> bool {
    match expr {
        Expr::And(a, b) => eval(a, ctx) && eval(b, ctx),
        Expr::Or(a, b) => eval(a, ctx) || eval(b, ctx),
        Expr::Compare { left, op, any, right, .. } => compare(*op, *any, &ctx.value(left), &ctx.value(right)),
    }
}

#[cfg(test)]
pub(super) fn like_for_tests(value: &str, pattern: &str) -> bool {
    like(value, pattern)
}

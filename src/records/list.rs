//! Listing records: paging, sorting, totals.
//!
//! Sorting by `id` (or by `created` while no record has a client-chosen id, so id order
//! equals creation order) streams records in key order and reads only the requested page.
//! Any other sort loads the collection and sorts in memory; secondary indexes replace that
//! path in the query engine.

use std::cell::Cell;
use std::cmp::Ordering;
use std::ops::Bound;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::seq::SliceRandom;
use serde_json::{json, Value};

use super::catalog::Catalog;
use super::collection::Collection;
use super::expand::ExpandTree;
use super::field::FieldKind;
use super::filter::{email_visible, is_guarded_email, resolve, Access, Env, Filter, Hop, Now, RequestInfo};
use super::index::{self, IndexDef};
use super::plan::{self, IndexPlan, Span};
use super::record::{decode, decode_keys, FieldsFilter, Stored};
use super::source::VisibleSource;
use super::stats::CollectionStats;
use super::{collection_prefix, record_key, RecordsError};
use crate::auth::{Op, Principal};
use crate::store::{ReadTx, ScanControl, Table};

/// Default page size.
pub const DEFAULT_PER_PAGE: usize = 30;
/// Largest page size; larger requests are clamped.
pub const MAX_PER_PAGE: usize = 1000;

/// One sort key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortKey {
    Field { name: String, descending: bool },
    Random,
}

/// Parsed list parameters.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub page: usize,
    pub per_page: usize,
    pub sort: Vec<SortKey>,
    pub skip_total: bool,
    pub fields: FieldsFilter,
    /// The caller's `filter`, checked against the collection.
    pub filter: Option<Filter>,
    /// Relations to embed (checked against the schema by the service).
    pub expand: ExpandTree,
    /// Cursor paging: `None` is offset paging; `Some(None)` is the first cursor page;
    /// `Some(Some(pos))` continues after `pos`.
    pub cursor: Option<Option<CursorPosition>>,
}

/// Where a cursor page starts: after the record with these sort values and id.
#[derive(Debug, Clone, PartialEq)]
pub struct CursorPosition {
    pub values: Vec<Value>,
    pub id: String,
}

impl CursorPosition {
    fn of(record: &Stored, sort: &[SortKey]) -> CursorPosition {
        let values = sort
            .iter()
            .filter_map(|k| match k {
                SortKey::Field { name, .. } => Some(record.get(name).cloned().unwrap_or(Value::Null)),
                SortKey::Random => None,
            })
            .collect();
        let id = record.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
        CursorPosition { values, id }
    }

    /// The opaque token clients send back.
    pub fn encode(&self) -> String {
        let mut parts = self.values.clone();
        parts.push(Value::String(self.id.clone()));
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&parts).unwrap_or_default())
    }

    fn decode(token: &str, sort: &[SortKey]) -> Result<CursorPosition, RecordsError> {
        let invalid = || {
            RecordsError::BadRequest(
                "Invalid cursor: pass back the nextCursor of a previous page with the same sort.".into(),
            )
        };
        let bytes = URL_SAFE_NO_PAD.decode(token.trim()).map_err(|_| invalid())?;
        let mut parts: Vec<Value> = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        let id = match parts.pop() {
            Some(Value::String(id)) if crate::util::id::is_valid_record_id(&id) => id,
            _ => return Err(invalid()),
        };
        let fields = sort.iter().filter(|k| matches!(k, SortKey::Field { .. })).count();
        if parts.len() != fields {
            return Err(invalid());
        }
        Ok(CursorPosition { values: parts, id })
    }
}

/// Raw query-string values as received.
#[derive(Debug, Default, Clone)]
pub struct ListParams {
    pub page: Option<String>,
    pub per_page: Option<String>,
    pub sort: Option<String>,
    pub filter: Option<String>,
    pub expand: Option<String>,
    pub fields: Option<String>,
    pub skip_total: Option<String>,
    /// `""` starts cursor paging; a `nextCursor` continues it.
    pub cursor: Option<String>,
    /// `1` adds the chosen plan to the response (superusers).
    pub explain: Option<String>,
}

fn parse_positive(name: &str, raw: Option<&str>, default: usize) -> Result<usize, RecordsError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(default),
        Some(s) => s
            .parse::<i64>()
            .map(|n| if n < 1 { default } else { n as usize })
            .map_err(|_| RecordsError::BadRequest(format!("{name} must be a whole number, got {s:?}."))),
    }
}

fn parse_bool(raw: Option<&str>) -> bool {
    matches!(raw.map(str::trim), Some("1" | "true" | "t" | "yes"))
}

impl ListQuery {
    /// Checks the parameters against the collection. Only `privileged` callers (superusers)
    /// may filter on hidden fields.
    pub fn parse(
        collection: &Collection,
        catalog: &Catalog,
        params: &ListParams,
        privileged: bool,
    ) -> Result<ListQuery, RecordsError> {
        let filter = match params.filter.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
            None => None,
            Some(src) => Some(
                Filter::compile(src, collection, catalog, privileged)
                    .map_err(|e| RecordsError::BadRequest(format!("Invalid filter {e}.")))?,
            ),
        };
        let page = parse_positive("page", params.page.as_deref(), 1)?;
        let per_page =
            parse_positive("perPage", params.per_page.as_deref(), DEFAULT_PER_PAGE)?.min(MAX_PER_PAGE);
        let sort = parse_sort(collection, catalog, params.sort.as_deref().unwrap_or(""), privileged)?;
        let cursor = match params.cursor.as_deref().map(str::trim) {
            None => None,
            Some(_) if sort.contains(&SortKey::Random) => {
                return Err(RecordsError::BadRequest("Cursor paging cannot be combined with @random.".into()))
            }
            Some("") => Some(None),
            Some(token) => Some(Some(CursorPosition::decode(token, &sort)?)),
        };
        Ok(ListQuery {
            page,
            per_page,
            sort,
            skip_total: parse_bool(params.skip_total.as_deref()),
            fields: FieldsFilter::parse(params.fields.as_deref())?,
            filter,
            expand: ExpandTree::parse(params.expand.as_deref())?,
            cursor,
        })
    }
}

/// Parses `-created,title,author.name,@random`. Unknown and hidden fields are refused; a
/// dotted path must lead through single relations to a plain field (PocketBase sorts by
/// joined columns; a path that can reach several records has no one value to sort by).
pub fn parse_sort(
    collection: &Collection,
    catalog: &Catalog,
    raw: &str,
    privileged: bool,
) -> Result<Vec<SortKey>, RecordsError> {
    let mut keys = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part == "@random" {
            keys.push(SortKey::Random);
            continue;
        }
        let (descending, name) = match part.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, part.strip_prefix('+').unwrap_or(part)),
        };
        if name.contains('.') {
            let path: Vec<String> = name.split('.').map(str::to_string).collect();
            let resolved = resolve(catalog, collection, &path, privileged)
                .map_err(|e| RecordsError::BadRequest(format!("Cannot sort by {name:?}: {e}.")))?;
            let forward_only = resolved.hops.iter().all(|h| matches!(h, Hop::Forward { .. }));
            let plain =
                matches!(resolved.access, Access::Field { multi: false, json_unless_each: false, .. });
            if resolved.many || !forward_only || !plain {
                return Err(RecordsError::BadRequest(format!(
                    "Cannot sort by {name:?}: sort paths must lead through single relations to a single-valued field."
                )));
            }
            keys.push(SortKey::Field { name: name.to_string(), descending });
        } else {
            match collection.field(name) {
                Some(f)
                    if !f.is_never_returned()
                        || (privileged && !matches!(f.kind, FieldKind::Password(_))) =>
                {
                    keys.push(SortKey::Field { name: name.to_string(), descending })
                }
                _ => {
                    return Err(RecordsError::BadRequest(format!(
                        "Cannot sort by {name:?}: no such field in {}.",
                        collection.name
                    )))
                }
            }
        }
        if keys.len() > 8 {
            return Err(RecordsError::BadRequest("At most 8 sort keys.".into()));
        }
    }
    Ok(keys)
}

/// A page of records plus totals (`None` when skipped).
pub struct Page {
    /// How the page was found (`?explain=1`): strategy, index, records examined.
    pub plan: Value,
    pub items: Vec<Stored>,
    pub total: Option<u64>,
    /// In cursor mode: the token for the next page (`None` at the end).
    pub next_cursor: Option<Option<String>>,
}

/// The time one query may spend evaluating filters and rules. Checked every
/// [`Budget::EVERY`] evaluations; once spent, scans stop and the query fails with a 400
/// that says so (a bounded cost per request whatever the filter and the data).
pub struct Budget {
    limit: Duration,
    deadline: Instant,
    calls: Cell<u32>,
    spent: Cell<bool>,
}

impl Budget {
    /// Evaluations between two looks at the clock.
    pub const EVERY: u32 = 16;
    /// The default budget (`limits.query_budget_ms`).
    pub const DEFAULT: Duration = Duration::from_secs(5);

    pub fn new(limit: Duration) -> Budget {
        Budget { limit, deadline: Instant::now() + limit, calls: Cell::new(0), spent: Cell::new(false) }
    }

    /// Counts one evaluation; true once the budget is spent.
    pub fn charge(&self) -> bool {
        if self.spent.get() {
            return true;
        }
        let n = self.calls.get().wrapping_add(1);
        self.calls.set(n);
        if n.is_multiple_of(Self::EVERY) && Instant::now() >= self.deadline {
            self.spent.set(true);
        }
        self.spent.get()
    }

    /// True once the budget is spent.
    pub fn spent(&self) -> bool {
        self.spent.get()
    }

    /// The error of a query that ran out of time.
    pub fn check(&self) -> Result<(), RecordsError> {
        if !self.spent.get() {
            return Ok(());
        }
        Err(RecordsError::BadRequest(format!(
            "The query ran out of its {} ms evaluation budget: narrow the filter, use simpler `~` \
             patterns, or add an index on the filtered fields.",
            self.limit.as_millis()
        )))
    }
}

/// What a list needs besides the query: the list rule's filter (for non-superusers), the
/// request it is evaluated with, and the clock.
pub struct ListContext<'a> {
    pub catalog: &'a Catalog,
    /// The caller: the query's own filter and sort see related records only through its
    /// eyes (see [`super::source::VisibleSource`]).
    pub principal: &'a Principal,
    /// The collection's secondary indexes (for the planner).
    pub indexes: &'a [IndexDef],
    pub rule: Option<&'a Filter>,
    pub request: &'a RequestInfo,
    pub now: Now,
    /// The time filters and rules may take.
    pub budget: &'a Budget,
}

/// Runs a list query on a snapshot, within its evaluation budget.
pub fn run(
    tx: &ReadTx,
    collection: &Collection,
    query: &ListQuery,
    ctx: &ListContext<'_>,
) -> Result<Page, RecordsError> {
    let page = run_unchecked(tx, collection, query, ctx);
    ctx.budget.check()?;
    page
}

fn run_unchecked(
    tx: &ReadTx,
    collection: &Collection,
    query: &ListQuery,
    ctx: &ListContext<'_>,
) -> Result<Page, RecordsError> {
    let stats = CollectionStats::read(tx, &collection.id)?;
    // Cursor pages start after a position, not at an offset.
    let offset = if query.cursor.is_some() { 0 } else { (query.page - 1).saturating_mul(query.per_page) };
    let prefix = collection_prefix(&collection.id);
    let filtered = query.filter.is_some() || ctx.rule.is_some();
    let env = Env { catalog: ctx.catalog, source: tx };
    let visible_source = VisibleSource {
        inner: tx,
        catalog: ctx.catalog,
        principal: ctx.principal,
        request: ctx.request,
        now: ctx.now,
    };
    // Superusers see everything; everyone else filters through what they may see.
    let client_env = if ctx.principal.is_superuser() {
        Env { catalog: ctx.catalog, source: tx }
    } else {
        Env { catalog: ctx.catalog, source: &visible_source }
    };
    let keep = |record: &Stored| -> bool {
        if filtered && ctx.budget.charge() {
            return false;
        }
        query
            .filter
            .as_ref()
            .is_none_or(|f| f.matches(collection, record, ctx.request, &ctx.now, Some(&client_env)))
            && ctx.rule.is_none_or(|f| f.matches(collection, record, ctx.request, &ctx.now, Some(&env)))
    };
    let sees = |collection_id: &str, related: &Stored| -> bool {
        ctx.principal.is_superuser() || visible_source.visible(Op::View, collection_id, related)
    };
    // Sorting by an email the caller may not see sorts it as null (and the cursor carries null).
    let shows_email = |collection_id: &str, record: &Stored| -> bool {
        ctx.principal.is_superuser() || email_visible(collection_id, record, ctx.request.auth.as_ref())
    };
    let view = Visibility { related: &sees, email: &shows_email };
    let probe_keys = probe_keys(collection, query, ctx.rule);
    let (plan, key_order) = strategy_inputs(collection, query, ctx, stats.custom_ids);
    let after = query.cursor.clone().flatten();
    let scan = Scan {
        tx,
        collection,
        query,
        ctx,
        count: stats.count,
        after: after.as_ref(),
        offset,
        prefix: &prefix,
        filtered,
        probe: Probe { keys: &probe_keys, keep: &keep },
    };
    match (&plan, key_order) {
        (None, Some(reverse)) => scan_in_key_order(&scan, reverse),
        (None, None) => collect_and_sort(&scan, None, &view),
        (Some(plan), _) => match plan.sort {
            Some(reverse) => stream_index(&scan, plan, reverse),
            None => collect_and_sort(&scan, Some(plan), &view),
        },
    }
}

/// The keys filters, rules and sorts read: records are probed with only these decoded,
/// and fully decoded only when they make the page.
fn probe_keys(collection: &Collection, query: &ListQuery, rule: Option<&Filter>) -> Vec<String> {
    let mut probe_keys: Vec<String> = vec!["id".into()];
    for f in query.filter.iter().chain(rule) {
        probe_keys.extend(f.record_keys());
    }
    for key in &query.sort {
        if let SortKey::Field { name, .. } = key {
            probe_keys.push(name.split('.').next().unwrap_or_default().to_string());
        }
    }
    if collection.is_auth() {
        probe_keys.push("emailVisibility".into());
    }
    probe_keys.sort();
    probe_keys.dedup();
    probe_keys
}

/// The index plan for the query (if an index helps), and the record key order that serves
/// the sort (if one does: `Some(reverse)`).
fn strategy_inputs(
    collection: &Collection,
    query: &ListQuery,
    ctx: &ListContext<'_>,
    custom_ids: u64,
) -> (Option<IndexPlan>, Option<bool>) {
    let (terms, only_terms) = match &query.filter {
        Some(f) => f.terms(&ctx.now),
        None => (Vec::new(), true),
    };
    let mut plan = plan::choose(collection, ctx.indexes, &terms, only_terms, &query.sort);
    // An index holds every email, visible or not: its order may not decide the page.
    let sorts_hidden_email = !ctx.principal.is_superuser()
        && query
            .sort
            .iter()
            .any(|k| matches!(k, SortKey::Field { name, .. } if is_guarded_email(collection, name)));
    if sorts_hidden_email {
        plan = plan.map(|mut p| {
            p.sort = None;
            p
        });
        plan = plan.filter(|p| p.narrows());
    }
    let key_order = match query.sort.as_slice() {
        [] => Some(false),
        [SortKey::Field { name, descending }] if name == "id" => Some(*descending),
        [SortKey::Field { name, descending }] if name == "created" && custom_ids == 0 => Some(*descending),
        _ => None,
    };
    // Walking an index only for its order is no better than walking the records in key order.
    (plan.filter(|p| p.narrows() || key_order.is_none()), key_order)
}

/// One list query being answered: what each strategy reads.
#[derive(Clone, Copy)]
struct Scan<'a, 'c> {
    tx: &'a ReadTx,
    collection: &'a Collection,
    query: &'a ListQuery,
    ctx: &'a ListContext<'c>,
    /// Records in the collection (from its counters).
    count: u64,
    /// Cursor pages start after this position.
    after: Option<&'a CursorPosition>,
    /// Offset pages skip this many matches.
    offset: usize,
    /// Prefix of the collection's keys in `Table::Records`.
    prefix: &'a [u8],
    /// Whether the caller's filter or the list rule may drop records.
    filtered: bool,
    probe: Probe<'a>,
}

/// The bare collection, walked in record key order (id order, or creation order while no
/// id was chosen by a client), newest first when `reverse`; filters test each record on
/// the way, and the walk stops at the end of the page unless a filtered total is wanted.
fn scan_in_key_order(scan: &Scan<'_, '_>, reverse: bool) -> Result<Page, RecordsError> {
    let Scan { tx, collection, query, ctx, count, after, offset, prefix, filtered, probe } = *scan;
    let (probe_keys, keep) = (probe.keys, probe.keep);
    let mut items = Vec::with_capacity(query.per_page.min(count as usize));
    let mut matched = 0usize;
    let mut failure = None;
    let start = after.map(|c| record_key(&collection.id, &c.id));
    tx.scan_prefix(Table::Records, prefix, reverse, start.as_deref(), |_, value| {
        if ctx.budget.spent() {
            return ScanControl::Stop;
        }
        if !filtered && matched < offset {
            // Unfiltered: skip without decoding.
            matched += 1;
            return ScanControl::Continue;
        }
        if filtered {
            match decode_keys(value, probe_keys) {
                Ok(probe) if keep(&probe) => {}
                Ok(_) => return ScanControl::Continue,
                Err(err) => {
                    failure = Some(err);
                    return ScanControl::Stop;
                }
            }
        }
        matched += 1;
        if matched > offset && items.len() < query.per_page {
            match decode(value) {
                Ok(record) => items.push(record),
                Err(err) => {
                    failure = Some(err);
                    return ScanControl::Stop;
                }
            }
        }
        // Unfiltered totals come from the counters; filtered ones need the full scan.
        if items.len() >= query.per_page && (!filtered || query.skip_total) {
            ScanControl::Stop
        } else {
            ScanControl::Continue
        }
    })?;
    if let Some(err) = failure {
        return Err(err);
    }
    let total = match (query.skip_total, filtered, query.cursor.is_some()) {
        (true, _, _) => None,
        (false, false, _) => Some(count),
        // A continued cursor scan saw only the records after the cursor.
        (false, true, true) if after.is_some() => {
            Some(count_matches(tx, prefix, probe_keys, keep, ctx.budget)?)
        }
        (false, true, _) => Some(matched as u64),
    };
    let next_cursor = next_cursor(query, &items);
    let plan = json!({"strategy": "key-order scan", "reverse": reverse, "filtered": filtered});
    Ok(Page { plan, items, total, next_cursor })
}

/// Every matching record (candidates from an index that narrows the search, or the whole
/// collection), sorted in memory: for sorts no index serves, and random order.
fn collect_and_sort(
    scan: &Scan<'_, '_>,
    plan: Option<&IndexPlan>,
    view: &Visibility<'_>,
) -> Result<Page, RecordsError> {
    let Scan { tx, collection, query, ctx, count, after, offset, prefix, filtered, probe } = *scan;
    let (probe_keys, keep) = (probe.keys, probe.keep);
    let mut all: Vec<Stored> = Vec::with_capacity(if filtered { 64 } else { count as usize });
    let mut failure = None;
    let plan_json = match plan {
        Some(plan) => {
            // Candidates from the index (in id order: the default order), then the whole
            // filter on each.
            let mut ids = Vec::new();
            for span in &plan.spans {
                scan_span(tx, span, false, |key| {
                    if let Some(id) = index::entry_id(key) {
                        ids.push(id.to_string());
                    }
                    ScanControl::Continue
                })?;
            }
            ids.sort_unstable();
            let candidates = ids.len();
            for chunk in ids.chunks(FETCH_CHUNK) {
                if ctx.budget.spent() {
                    break;
                }
                for record in fetch_keys(tx, collection, chunk, probe_keys)? {
                    if keep(&record) {
                        all.push(record);
                    }
                }
            }
            let mut described = plan.describe();
            described["examined"] = json!(candidates);
            described
        }
        None => {
            let mut examined = 0u64;
            tx.scan_prefix(Table::Records, prefix, false, None, |_, value| {
                if ctx.budget.spent() {
                    return ScanControl::Stop;
                }
                match decode_keys(value, probe_keys) {
                    Ok(record) => {
                        examined += 1;
                        if !filtered || keep(&record) {
                            all.push(record);
                        }
                        ScanControl::Continue
                    }
                    Err(err) => {
                        failure = Some(err);
                        ScanControl::Stop
                    }
                }
            })?;
            json!({"strategy": "full scan", "examined": examined})
        }
    };
    if let Some(err) = failure {
        return Err(err);
    }
    let total = if query.skip_total { None } else { Some(all.len() as u64) };
    if query.sort.contains(&SortKey::Random) {
        all.shuffle(&mut rand::thread_rng());
    }
    let directions: Vec<bool> = query
        .sort
        .iter()
        .filter_map(|k| match k {
            SortKey::Field { descending, .. } => Some(*descending),
            SortKey::Random => None,
        })
        .collect();
    // Sort values computed once per record (relation paths read the related record).
    let mut decorated: Vec<(Vec<Value>, Stored)> = if directions.is_empty() {
        all.into_iter().map(|r| (Vec::new(), r)).collect()
    } else {
        all.into_iter()
            .map(|r| (sort_values(tx, ctx.catalog, collection, &query.sort, &r, view), r))
            .collect()
    };
    let id_of = |r: &Stored| r.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
    if !directions.is_empty() {
        decorated.sort_by(|(av, a), (bv, b)| order(av, &id_of(a), bv, &id_of(b), &directions));
    }
    let start = match after {
        Some(position) => decorated.partition_point(|(values, r)| {
            order(values, &id_of(r), &position.values, &position.id, &directions) != Ordering::Greater
        }),
        None => offset,
    };
    let page: Vec<(Vec<Value>, Stored)> = decorated.into_iter().skip(start).take(query.per_page).collect();
    let next_cursor = next_cursor_at(query, page.len(), page.last().map(|(v, r)| (v.clone(), id_of(r))));
    // The page's records in full (the candidates were decoded with the probe keys only).
    let page_ids: Vec<String> = page.iter().map(|(_, r)| id_of(r)).collect();
    let items = fetch(tx, collection, &page_ids)?;
    Ok(Page { plan: plan_json, items, total, next_cursor })
}

/// What the caller may see of other records while sorting: related records (by collection
/// id) and emails.
pub struct Visibility<'a> {
    pub related: &'a dyn Fn(&str, &Stored) -> bool,
    pub email: &'a dyn Fn(&str, &Stored) -> bool,
}

/// The value `record` sorts by under `name`: a field (its zero value when absent) or a
/// path through single relations (`author.name`; null when a relation is empty, dangles or
/// points at a record the caller may not see — `view` decides, as it does for emails).
pub fn sort_value(
    tx: &ReadTx,
    catalog: &Catalog,
    collection: &Collection,
    record: &Stored,
    name: &str,
    view: &Visibility<'_>,
) -> Value {
    let zero = |c: &Collection, field: &str| c.field(field).map(|f| f.zero_value()).unwrap_or(Value::Null);
    let Some((first, rest)) = name.split_once('.') else {
        if is_guarded_email(collection, name) && !(view.email)(&collection.id, record) {
            return Value::Null;
        }
        return record.get(name).cloned().unwrap_or_else(|| zero(collection, name));
    };
    let Some(FieldKind::Relation(o)) = collection.field(first).map(|f| &f.kind) else {
        return Value::Null;
    };
    let Some(id) = record.get(first).and_then(Value::as_str).filter(|id| !id.is_empty()) else {
        return Value::Null;
    };
    let Some(target) = catalog.get(&o.collection_id) else {
        return Value::Null;
    };
    match tx.get(Table::Records, &record_key(&target.collection.id, id)).ok().flatten().map(|b| decode(&b)) {
        Some(Ok(related)) if (view.related)(&target.collection.id, &related) => {
            sort_value(tx, catalog, &target.collection, &related, rest, view)
        }
        _ => Value::Null,
    }
}

fn sort_values(
    tx: &ReadTx,
    catalog: &Catalog,
    collection: &Collection,
    sort: &[SortKey],
    record: &Stored,
    view: &Visibility<'_>,
) -> Vec<Value> {
    sort.iter()
        .filter_map(|k| match k {
            SortKey::Field { name, .. } => Some(sort_value(tx, catalog, collection, record, name, view)),
            SortKey::Random => None,
        })
        .collect()
}

/// Records fetched per store call while walking index candidates.
const FETCH_CHUNK: usize = 1024;

/// The records with these ids (missing ones skipped), in the order given.
fn fetch(tx: &ReadTx, collection: &Collection, ids: &[String]) -> Result<Vec<Stored>, RecordsError> {
    let keys: Vec<Vec<u8>> = ids.iter().map(|id| record_key(&collection.id, id)).collect();
    let mut out = Vec::with_capacity(ids.len());
    for bytes in tx.get_many(Table::Records, &keys)?.into_iter().flatten() {
        out.push(decode(&bytes)?);
    }
    Ok(out)
}

/// The records with these ids, decoded with only `keys` (see `decode_keys`).
fn fetch_keys(
    tx: &ReadTx,
    collection: &Collection,
    ids: &[String],
    keys: &[String],
) -> Result<Vec<Stored>, RecordsError> {
    let record_keys: Vec<Vec<u8>> = ids.iter().map(|id| record_key(&collection.id, id)).collect();
    let mut out = Vec::with_capacity(ids.len());
    for bytes in tx.get_many(Table::Records, &record_keys)?.into_iter().flatten() {
        out.push(decode_keys(&bytes, keys)?);
    }
    Ok(out)
}

/// How candidates are tested: decoded with `keys` only, then `keep`.
#[derive(Clone, Copy)]
struct Probe<'a> {
    keys: &'a [String],
    keep: &'a dyn Fn(&Stored) -> bool,
}

/// Visits the index keys of one span, in key order or reverse.
fn scan_span(
    tx: &ReadTx,
    span: &Span,
    reverse: bool,
    mut visit: impl FnMut(&[u8]) -> ScanControl,
) -> Result<(), RecordsError> {
    let upper = match &span.upper {
        Some(u) => Bound::Excluded(u.clone()),
        None => Bound::Unbounded,
    };
    tx.scan_range(Table::RecordIndex, Bound::Included(span.lower.clone()), upper, reverse, |key, _| {
        visit(key)
    })?;
    Ok(())
}

/// The index key a cursor position stands for (the record it names may be gone).
fn cursor_key(
    collection: &Collection,
    plan: &IndexPlan,
    sort: &[SortKey],
    pos: &CursorPosition,
) -> Option<Vec<u8>> {
    let names: Vec<&str> = sort
        .iter()
        .filter_map(|k| match k {
            SortKey::Field { name, .. } => Some(name.as_str()),
            SortKey::Random => None,
        })
        .collect();
    let mut key = plan.base(&collection.id);
    for column in &plan.def.columns[plan.pinned.len()..] {
        let i = names.iter().position(|n| n == column)?;
        index::encode_value(&mut key, pos.values.get(i)?);
    }
    key.extend_from_slice(pos.id.as_bytes());
    Some(key)
}

/// A page from an index whose order is the requested order: streams candidates span by
/// span, fetching records in growing chunks, and stops at the end of the page. Totals come
/// from counting keys when the plan is exact (and no rule applies), from the counters when
/// nothing filters, and otherwise from evaluating every candidate.
fn stream_index(scan: &Scan<'_, '_>, plan: &IndexPlan, reverse: bool) -> Result<Page, RecordsError> {
    let Scan { tx, collection, query, ctx, count, after, offset, filtered, probe, .. } = *scan;
    let keep = probe.keep;
    let mut spans = plan.spans.clone();
    if let Some(pos) = after {
        let key = cursor_key(collection, plan, &query.sort, pos).ok_or_else(|| {
            RecordsError::BadRequest(
                "Invalid cursor: pass back the nextCursor of a previous page with the same sort.".into(),
            )
        })?;
        for span in &mut spans {
            if reverse {
                span.upper = Some(span.upper.take().map_or(key.clone(), |u| u.min(key.clone())));
            } else {
                let mut successor = key.clone();
                successor.push(0);
                span.lower = span.lower.clone().max(successor);
            }
        }
    }
    if reverse {
        spans.reverse();
    }
    let need = offset.saturating_add(query.per_page);
    let mut items = Vec::with_capacity(query.per_page);
    let (mut matched, mut examined) = (0usize, 0usize);
    // Exact plans: (almost) every candidate matches, so read just what the page needs.
    let mut chunk = if plan.exact { need } else { need.max(16) }.clamp(1, FETCH_CHUNK);
    'spans: for span in spans {
        let mut span = span;
        loop {
            if ctx.budget.spent() {
                break 'spans;
            }
            if span.upper.as_ref().is_some_and(|u| *u <= span.lower) {
                break;
            }
            let mut ids = Vec::with_capacity(chunk);
            let mut last: Option<Vec<u8>> = None;
            scan_span(tx, &span, reverse, |key| {
                if let Some(id) = index::entry_id(key) {
                    ids.push(id.to_string());
                }
                last = Some(key.to_vec());
                if ids.len() >= chunk {
                    ScanControl::Stop
                } else {
                    ScanControl::Continue
                }
            })?;
            let Some(last) = last else { break };
            examined += ids.len();
            let keys: Vec<Vec<u8>> = ids.iter().map(|id| record_key(&collection.id, id)).collect();
            for bytes in tx.get_many(Table::Records, &keys)?.into_iter().flatten() {
                // Exact plans: (almost) every candidate matches, so decode it whole at once;
                // otherwise probe first.
                let record = if plan.exact { decode(&bytes)? } else { decode_keys(&bytes, probe.keys)? };
                if keep(&record) {
                    matched += 1;
                    if matched > offset {
                        items.push(if plan.exact { record } else { decode(&bytes)? });
                        if items.len() >= query.per_page {
                            break 'spans;
                        }
                    }
                }
            }
            if ids.len() < chunk {
                break;
            }
            if reverse {
                span.upper = Some(last);
            } else {
                span.lower = last;
                span.lower.push(0);
            }
            chunk = (chunk * 2).min(FETCH_CHUNK);
        }
    }
    let from_index = plan.exact && ctx.rule.is_none();
    let total = if query.skip_total {
        None
    } else if !filtered {
        Some(count)
    } else if from_index {
        let mut n = 0u64;
        for span in &plan.spans {
            scan_span(tx, span, false, |_| {
                n += 1;
                ScanControl::Continue
            })?;
        }
        Some(n)
    } else {
        let mut ids = Vec::new();
        for span in &plan.spans {
            scan_span(tx, span, false, |key| {
                if let Some(id) = index::entry_id(key) {
                    ids.push(id.to_string());
                }
                ScanControl::Continue
            })?;
        }
        let mut n = 0u64;
        for chunk in ids.chunks(FETCH_CHUNK) {
            if ctx.budget.spent() {
                break;
            }
            n += fetch_keys(tx, collection, chunk, probe.keys)?.iter().filter(|r| keep(r)).count() as u64;
        }
        Some(n)
    };
    let mut described = plan.describe();
    described["examined"] = json!(examined);
    described["totalFromIndex"] = json!(total.is_some() && filtered && from_index);
    let next_cursor = next_cursor(query, &items);
    Ok(Page { plan: described, items, total, next_cursor })
}

/// The order of two records by their sort values (one per field key, in `directions`);
/// ties break on id (in the direction of the last key, so that an index walked backwards
/// gives the same order) so pages never overlap or skip.
fn order(a: &[Value], a_id: &str, b: &[Value], b_id: &str, directions: &[bool]) -> Ordering {
    for ((av, bv), descending) in a.iter().zip(b).zip(directions) {
        let ord = compare_values(av, bv);
        if ord != Ordering::Equal {
            return if *descending { ord.reverse() } else { ord };
        }
    }
    let ord = a_id.cmp(b_id);
    if directions.last().is_some_and(|d| *d) {
        ord.reverse()
    } else {
        ord
    }
}

/// The next-cursor token after a page of `len` items ending at `last` (sort values, id).
fn next_cursor_at(
    query: &ListQuery,
    len: usize,
    last: Option<(Vec<Value>, String)>,
) -> Option<Option<String>> {
    query.cursor.as_ref()?;
    if len < query.per_page {
        return Some(None);
    }
    Some(last.map(|(values, id)| CursorPosition { values, id }.encode()))
}

fn next_cursor(query: &ListQuery, items: &[Stored]) -> Option<Option<String>> {
    query.cursor.as_ref()?;
    if items.len() < query.per_page {
        return Some(None);
    }
    Some(items.last().map(|last| CursorPosition::of(last, &query.sort).encode()))
}

fn count_matches(
    tx: &ReadTx,
    prefix: &[u8],
    keys: &[String],
    keep: &dyn Fn(&Stored) -> bool,
    budget: &Budget,
) -> Result<u64, RecordsError> {
    let mut count = 0u64;
    let mut failure = None;
    tx.scan_prefix(Table::Records, prefix, false, None, |_, value| match decode_keys(value, keys) {
        Ok(_) if budget.spent() => ScanControl::Stop,
        Ok(record) => {
            if keep(&record) {
                count += 1;
            }
            ScanControl::Continue
        }
        Err(err) => {
            failure = Some(err);
            ScanControl::Stop
        }
    })?;
    match failure {
        Some(err) => Err(err),
        None => Ok(count),
    }
}

/// Total order over JSON values: null < bool < number < string < array < object.
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Number(_) => 2,
            Value::String(_) => 3,
            Value::Array(_) => 4,
            Value::Object(_) => 5,
        }
    }
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (xi, yi) in x.iter().zip(y) {
                let ord = compare_values(xi, yi);
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => x.len().cmp(&y.len()),
        _ => rank(a).cmp(&rank(b)),
    }
}

//! Running a search for a caller: tantivy ranks, the store decides what the caller sees.
//!
//! Candidates come from the index in BM25 order; each is loaded from a store snapshot and
//! kept only if it still exists and passes the collection's list rule and the caller's
//! `filter` (evaluated exactly as `records::list` does, relation paths through
//! `VisibleSource`). Totals and facets are computed over the kept records only, so a caller
//! never sees, counts or facets a record it may not list. At most [`MAX_CANDIDATES`] ranked
//! candidates are examined per collection; when no rule, filter, sort or facet applies, the
//! page and the total come straight from the index (every matching document is visible).

use std::borrow::Cow;
use std::cmp::Ordering as CmpOrdering;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Map, Value};
use tantivy::collector::{Count, TopDocs};
use tantivy::schema::Value as _;
use tantivy::{DocAddress, Searcher, TantivyDocument};

use super::highlight::Highlighter;
use super::query::{self, Built};
use super::schema::{self, IndexSchema};
use super::{Search, SearchError};
use crate::auth::{Op, Principal};
use crate::records::catalog::{Catalog, CatalogEntry};
use crate::records::collection::Collection;
use crate::records::expand::Expander;
use crate::records::field::FieldKind;
use crate::records::filter::{Env, Filter, Now, RequestInfo};
use crate::records::list::{self, Budget, ListParams, ListQuery, SortKey};
use crate::records::record::{decode, Stored};
use crate::records::rules::{self, Access};
use crate::records::service::render;
use crate::records::source::VisibleSource;
use crate::records::{record_key, RecordsError};
use crate::store::{ReadTx, Table};

/// Most ranked candidates examined per collection when a rule, filter, sort or facet
/// applies. Totals and facets count the visible records among them.
pub const MAX_CANDIDATES: usize = 10_000;
/// Deepest hit (offset + page size) fetched from the index when no rule or filter applies;
/// deeper pages are empty (the index keeps a heap of this many hits per search).
pub const MAX_DIRECT_DEPTH: usize = 100_000;
/// Most facet fields per request.
const MAX_FACETS: usize = 8;

/// Raw query-string values of a search.
#[derive(Debug, Default, Clone)]
pub struct SearchParams {
    pub q: Option<String>,
    pub filter: Option<String>,
    pub sort: Option<String>,
    pub page: Option<String>,
    pub per_page: Option<String>,
    pub fields: Option<String>,
    pub expand: Option<String>,
    pub skip_total: Option<String>,
    /// Comma-separated select fields to count values of.
    pub facets: Option<String>,
    /// Cross-collection search: comma-separated collection names or ids.
    pub collections: Option<String>,
}

/// A page of hits in the list envelope.
#[derive(Debug)]
pub struct SearchPage {
    pub page: usize,
    pub per_page: usize,
    pub total_items: Option<u64>,
    /// Records as `list` renders them, each with `@search: {score, highlights}`.
    pub items: Vec<Value>,
    /// Facet field → value → count (visible matches only).
    pub facets: Option<Map<String, Value>>,
}

struct Prepared {
    entry: Arc<CatalogEntry>,
    rule: Option<Arc<Filter>>,
    list: ListQuery,
    clauses: Vec<query::Clause>,
    built: Option<Built>,
    facets: Vec<String>,
}

impl Prepared {
    /// Builds the index query (on the blocking pool: it looks terms up in the index).
    fn build(&mut self, schema: &IndexSchema, searcher: &Searcher) -> Result<&Built, SearchError> {
        if self.built.is_none() {
            let known = |term: &tantivy::Term| searcher.doc_freq(term).map(|n| n > 0).unwrap_or(false);
            self.built = Some(query::build(schema, &self.entry.collection, &self.clauses, &known)?);
        }
        self.built.as_ref().ok_or_else(|| SearchError::Internal("query not built".into()))
    }

    fn highlighter(&self) -> Highlighter {
        Highlighter::new(self.entry.collection.search.language)
    }
}

fn bad(message: String) -> SearchError {
    SearchError::BadQuery(message)
}

fn query_text(params: &SearchParams) -> Result<String, SearchError> {
    let q = params.q.as_deref().map(str::trim_start).unwrap_or_default();
    if q.trim().is_empty() {
        return Err(bad("The q parameter is required.".into()));
    }
    Ok(q.to_string())
}

impl Search {
    fn prepare(
        &self,
        principal: &Principal,
        catalog: &Catalog,
        entry: Arc<CatalogEntry>,
        params: &SearchParams,
        clauses: &[query::Clause],
    ) -> Result<Prepared, SearchError> {
        let collection = &entry.collection;
        if !collection.search.enabled {
            return Err(SearchError::NotEnabled(format!("Search is not enabled on {}.", collection.name)));
        }
        let rule = rules::required(Op::List, principal, collection, catalog)?;
        let privileged = principal.is_superuser();
        let list_params = ListParams {
            page: params.page.clone(),
            per_page: params.per_page.clone(),
            sort: params.sort.clone(),
            filter: params.filter.clone(),
            expand: params.expand.clone(),
            fields: params.fields.clone(),
            skip_total: params.skip_total.clone(),
            cursor: None,
            explain: None,
        };
        let list = ListQuery::parse(collection, catalog, &list_params, privileged)?;
        crate::records::expand::check(catalog, &entry, &list.expand, privileged)?;
        for key in &list.sort {
            match key {
                // Hidden emails would order the results: only superusers sort by them here.
                SortKey::Field { name, .. }
                    if !privileged && crate::records::filter::is_guarded_email(collection, name) =>
                {
                    return Err(bad("Only superusers may sort search results by email.".into()))
                }
                SortKey::Field { name, .. } if !name.contains('.') => {}
                _ => return Err(bad("Search results sort by plain fields of the collection only.".into())),
            }
        }
        let mut facets = Vec::new();
        for name in params.facets.as_deref().unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty())
        {
            match collection.field(name) {
                Some(f)
                    if matches!(f.kind, FieldKind::Select(_)) && (privileged || !f.is_never_returned()) =>
                {
                    facets.push(name.to_string())
                }
                _ => return Err(bad(format!("{name:?} is not a select field of {}.", collection.name))),
            }
        }
        if facets.len() > MAX_FACETS {
            return Err(bad(format!("At most {MAX_FACETS} facet fields.")));
        }
        // Field scoping is checked now (a 400 before any work); the query is built later.
        query::build(self.schema(), collection, clauses, &|_| true)?;
        Ok(Prepared { entry, rule, list, clauses: clauses.to_vec(), built: None, facets })
    }

    /// `GET /api/collections/{c}/search`.
    pub async fn search_collection(
        &self,
        principal: &Principal,
        collection: &str,
        params: SearchParams,
        request: &RequestInfo,
    ) -> Result<SearchPage, SearchError> {
        let started = Instant::now();
        let q = query_text(&params)?;
        let clauses = query::parse(&q)?;
        let catalog = self.records().catalog();
        let entry = self.records().collection(collection)?;
        let prepared = self.prepare(principal, &catalog, entry, &params, &clauses)?;
        let (principal, request) = (principal.clone(), request.clone());
        self.run_counted(started, move |s| s.run_one(&catalog, &principal, &request, prepared)).await
    }

    /// `GET /api/search`: every named (or every searchable) collection the caller may list,
    /// merged by score. Collections whose list rule denies the caller are skipped.
    pub async fn search_all(
        &self,
        principal: &Principal,
        params: SearchParams,
        request: &RequestInfo,
    ) -> Result<SearchPage, SearchError> {
        let started = Instant::now();
        let q = query_text(&params)?;
        let clauses = query::parse(&q)?;
        if params.filter.as_deref().is_some_and(|f| !f.trim().is_empty())
            || params.sort.as_deref().is_some_and(|s| !s.trim().is_empty())
            || params.facets.as_deref().is_some_and(|s| !s.trim().is_empty())
        {
            return Err(bad(
                "filter, sort and facets apply to one collection: use /api/collections/{c}/search.".into(),
            ));
        }
        let catalog = self.records().catalog();
        let entries: Vec<Arc<CatalogEntry>> = match params.collections.as_deref().map(str::trim) {
            Some(list) if !list.is_empty() => {
                let mut out = Vec::new();
                for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    out.push(self.records().collection(name)?);
                }
                out
            }
            _ => catalog.all().filter(|e| e.collection.search.enabled).cloned().collect(),
        };
        let mut prepared = Vec::new();
        for entry in entries {
            match rules::access(Op::List, principal, &entry.collection, &catalog) {
                Access::Deny => continue,
                Access::Allow | Access::Filter(_) => {}
            }
            prepared.push(self.prepare(principal, &catalog, entry, &params, &clauses)?);
        }
        let (principal, request) = (principal.clone(), request.clone());
        self.run_counted(started, move |s| s.run_many(&catalog, &principal, &request, prepared)).await
    }

    /// Runs a prepared search on the blocking pool (tantivy and the store are synchronous)
    /// and counts it in the query metrics.
    async fn run_counted(
        &self,
        started: Instant,
        run: impl FnOnce(&Self) -> Result<SearchPage, SearchError> + Send + 'static,
    ) -> Result<SearchPage, SearchError> {
        let search = self.clone();
        let page = tokio::task::spawn_blocking(move || run(&search))
            .await
            .map_err(|e| SearchError::Internal(e.to_string()))??;
        self.metrics().queries.inc();
        self.metrics().query_seconds.observe_duration(started.elapsed());
        Ok(page)
    }

    fn run_one(
        &self,
        catalog: &Catalog,
        principal: &Principal,
        request: &RequestInfo,
        mut prepared: Prepared,
    ) -> Result<SearchPage, SearchError> {
        let searcher = self.reader()?.searcher();
        let (page, per_page) = (prepared.list.page, prepared.list.per_page);
        let offset = (page - 1).saturating_mul(per_page);
        let query = prepared.build(self.schema(), &searcher)?.query.as_ref().map(|q| q.box_clone());
        let Some(query) = query.as_deref() else {
            return Ok(empty_page(page, per_page, prepared.list.skip_total, !prepared.facets.is_empty()));
        };
        let direct = prepared.rule.is_none()
            && prepared.list.filter.is_none()
            && prepared.list.sort.is_empty()
            && prepared.facets.is_empty();
        let store = self.store().clone();
        if direct && offset.saturating_add(per_page) > MAX_DIRECT_DEPTH {
            // Past any page a client can reach by paging: the count alone, no hits.
            let total = (!prepared.list.skip_total)
                .then(|| searcher.search(query, &Count).map(|n| n as u64))
                .transpose()
                .map_err(SearchError::from_tantivy)?;
            return Ok(SearchPage { page, per_page, total_items: total, items: Vec::new(), facets: None });
        }
        if direct {
            let top = TopDocs::with_limit(per_page).and_offset(offset).order_by_score();
            let (hits, total) = if prepared.list.skip_total {
                (searcher.search(query, &top).map_err(SearchError::from_tantivy)?, None)
            } else {
                let (hits, count) =
                    searcher.search(query, &(top, Count)).map_err(SearchError::from_tantivy)?;
                (hits, Some(count as u64))
            };
            let ids = record_ids(&searcher, self.schema(), &hits)?;
            return store.read_blocking(|tx| -> Result<SearchPage, SearchError> {
                let mut items = Vec::with_capacity(ids.len());
                let expander = Expander::new(tx, catalog, principal, request);
                let mut highlighter = prepared.highlighter();
                let keys: Vec<Vec<u8>> =
                    ids.iter().map(|(_, id)| record_key(&prepared.entry.collection.id, id)).collect();
                let records = tx.get_many(Table::Records, &keys)?;
                for ((score, _), bytes) in ids.into_iter().zip(records) {
                    if let Some(bytes) = bytes {
                        let stored = decode(&bytes)?;
                        items.push(self.hit(&expander, &prepared, &mut highlighter, stored, score)?);
                    }
                }
                Ok(SearchPage { page, per_page, total_items: total, items, facets: None })
            });
        }
        let hits = searcher
            .search(query, &TopDocs::with_limit(MAX_CANDIDATES).order_by_score())
            .map_err(SearchError::from_tantivy)?;
        let ids = record_ids(&searcher, self.schema(), &hits)?;
        store.read_blocking(|tx| -> Result<SearchPage, SearchError> {
            let budget = Budget::new(self.records().query_budget());
            let mut visible = visible_records(tx, catalog, principal, request, &prepared, ids, &budget)?;
            let facets = (!prepared.facets.is_empty()).then(|| facet_counts(&prepared.facets, &visible));
            if !prepared.list.sort.is_empty() {
                let sort = &prepared.list.sort;
                visible.sort_by(|(_, a), (_, b)| compare(sort, a, b));
            }
            let total = (!prepared.list.skip_total).then_some(visible.len() as u64);
            let expander = Expander::new(tx, catalog, principal, request);
            let mut highlighter = prepared.highlighter();
            let mut items = Vec::new();
            for (score, stored) in visible.into_iter().skip(offset).take(per_page) {
                items.push(self.hit(&expander, &prepared, &mut highlighter, stored, score)?);
            }
            Ok(SearchPage { page, per_page, total_items: total, items, facets })
        })
    }

    fn run_many(
        &self,
        catalog: &Catalog,
        principal: &Principal,
        request: &RequestInfo,
        mut prepared: Vec<Prepared>,
    ) -> Result<SearchPage, SearchError> {
        let searcher = self.reader()?.searcher();
        let (page, per_page, skip_total) = match prepared.first() {
            Some(p) => (p.list.page, p.list.per_page, p.list.skip_total),
            None => (1, list::DEFAULT_PER_PAGE, false),
        };
        let offset = (page - 1).saturating_mul(per_page);
        let mut candidates = Vec::new();
        for (n, p) in prepared.iter_mut().enumerate() {
            let Some(query) = p.build(self.schema(), &searcher)?.query.as_ref().map(|q| q.box_clone()) else {
                continue;
            };
            let hits = searcher
                .search(&*query, &TopDocs::with_limit(MAX_CANDIDATES).order_by_score())
                .map_err(SearchError::from_tantivy)?;
            candidates.push((n, record_ids(&searcher, self.schema(), &hits)?));
        }
        self.store().read_blocking(|tx| -> Result<SearchPage, SearchError> {
            let mut merged: Vec<(f32, usize, Stored)> = Vec::new();
            let budget = Budget::new(self.records().query_budget());
            for (n, ids) in candidates {
                let kept = visible_records(tx, catalog, principal, request, &prepared[n], ids, &budget)?;
                merged.extend(kept.into_iter().map(|(score, stored)| (score, n, stored)));
            }
            merged.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(CmpOrdering::Equal));
            let total = (!skip_total).then_some(merged.len() as u64);
            let expander = Expander::new(tx, catalog, principal, request);
            let mut highlighters: Vec<Highlighter> = prepared.iter().map(Prepared::highlighter).collect();
            let mut items = Vec::new();
            for (score, n, stored) in merged.into_iter().skip(offset).take(per_page) {
                items.push(self.hit(&expander, &prepared[n], &mut highlighters[n], stored, score)?);
            }
            Ok(SearchPage { page, per_page, total_items: total, items, facets: None })
        })
    }

    /// One rendered hit: the record as `list` renders it plus `@search`.
    fn hit(
        &self,
        expander: &Expander<'_>,
        prepared: &Prepared,
        highlighter: &mut Highlighter,
        stored: Stored,
        score: f32,
    ) -> Result<Value, SearchError> {
        let mut json =
            render(expander, &prepared.entry, stored, &prepared.list.fields, &prepared.list.expand)?;
        let highlights = match &prepared.built {
            Some(built) => highlights(&prepared.entry.collection, highlighter, &built.matcher, &json),
            None => Map::new(),
        };
        if let Value::Object(map) = &mut json {
            map.insert("@search".into(), json!({"score": score, "highlights": highlights}));
        }
        Ok(json)
    }
}

fn empty_page(page: usize, per_page: usize, skip_total: bool, facets: bool) -> SearchPage {
    SearchPage {
        page,
        per_page,
        total_items: (!skip_total).then_some(0),
        items: Vec::new(),
        facets: facets.then(Map::new),
    }
}

/// Record ids of ranked hits, from the stored `id` field.
fn record_ids(
    searcher: &Searcher,
    schema: &IndexSchema,
    hits: &[(f32, DocAddress)],
) -> Result<Vec<(f32, String)>, SearchError> {
    let mut out = Vec::with_capacity(hits.len());
    for (score, address) in hits {
        let doc: TantivyDocument = searcher.doc(*address).map_err(SearchError::from_tantivy)?;
        if let Some(id) = doc.get_first(schema.record_id).and_then(|v| v.as_str()) {
            out.push((*score, id.to_string()));
        }
    }
    Ok(out)
}

fn load(tx: &ReadTx, collection_id: &str, id: &str) -> Result<Option<Stored>, RecordsError> {
    match tx.get(Table::Records, &record_key(collection_id, id))? {
        Some(bytes) => Ok(Some(decode(&bytes)?)),
        None => Ok(None),
    }
}

/// The candidates that still exist and pass the list rule and the filter, in rank order,
/// evaluated within `budget` (a 400 once it is spent).
fn visible_records(
    tx: &ReadTx,
    catalog: &Catalog,
    principal: &Principal,
    request: &RequestInfo,
    prepared: &Prepared,
    ids: Vec<(f32, String)>,
    budget: &Budget,
) -> Result<Vec<(f32, Stored)>, SearchError> {
    let collection = &prepared.entry.collection;
    let now = Now::current();
    let env = Env { catalog, source: tx };
    let visible_source = VisibleSource { inner: tx, catalog, principal, request, now };
    let client_env = if principal.is_superuser() {
        Env { catalog, source: tx }
    } else {
        Env { catalog, source: &visible_source }
    };
    let mut out = Vec::new();
    let evaluates = prepared.rule.is_some() || prepared.list.filter.is_some();
    for (score, id) in ids {
        if evaluates && budget.charge() {
            break;
        }
        let Some(stored) = load(tx, &collection.id, &id)? else { continue };
        let passes_rule = prepared
            .rule
            .as_ref()
            .is_none_or(|rule| rule.matches(collection, &stored, request, &now, Some(&env)));
        let passes_filter = passes_rule
            && prepared
                .list
                .filter
                .as_ref()
                .is_none_or(|f| f.matches(collection, &stored, request, &now, Some(&client_env)));
        if passes_filter {
            out.push((score, stored));
        }
    }
    budget.check()?;
    Ok(out)
}

fn facet_counts(fields: &[String], visible: &[(f32, Stored)]) -> Map<String, Value> {
    let mut out = Map::new();
    for field in fields {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for (_, stored) in visible {
            match stored.get(field) {
                Some(Value::String(s)) if !s.is_empty() => *counts.entry(s.clone()).or_default() += 1,
                Some(Value::Array(items)) => {
                    for s in items.iter().filter_map(Value::as_str) {
                        *counts.entry(s.to_string()).or_default() += 1;
                    }
                }
                _ => {}
            }
        }
        let mut ordered: Vec<(String, u64)> = counts.into_iter().collect();
        ordered.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let values: Map<String, Value> = ordered.into_iter().map(|(k, n)| (k, json!(n))).collect();
        out.insert(field.clone(), Value::Object(values));
    }
    out
}

fn compare(sort: &[SortKey], a: &Stored, b: &Stored) -> CmpOrdering {
    for key in sort {
        if let SortKey::Field { name, descending } = key {
            let (x, y) = (a.get(name).unwrap_or(&Value::Null), b.get(name).unwrap_or(&Value::Null));
            let order = list::compare_values(x, y);
            let order = if *descending { order.reverse() } else { order };
            if order != CmpOrdering::Equal {
                return order;
            }
        }
    }
    CmpOrdering::Equal
}

/// Snippets of the searched text fields as rendered for the caller (a field the caller
/// does not get, it gets no snippet of).
fn highlights(
    collection: &Collection,
    highlighter: &mut Highlighter,
    matcher: &query::Matcher,
    json: &Value,
) -> Map<String, Value> {
    let mut out = Map::new();
    for wanted in &collection.search.fields {
        let kind = collection.field(&wanted.name).map(|f| &f.kind);
        if matches!(kind, Some(FieldKind::Relation(_))) {
            continue;
        }
        let text: Cow<'_, str> = match json.get(&wanted.name) {
            Some(Value::String(s)) if matches!(kind, Some(FieldKind::Editor(_))) => {
                Cow::Owned(schema::plain_text(s))
            }
            Some(Value::String(s)) => Cow::Borrowed(s),
            Some(Value::Array(items)) => {
                Cow::Owned(items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
            }
            _ => continue,
        };
        if let Some(snippet) = highlighter.snippet(matcher, &text) {
            out.insert(wanted.name.clone(), Value::String(snippet));
        }
    }
    out
}

//! Property test: listing (filter, sort, paging, totals) against a plain in-memory model.
//!
//! Random records go through the real service and store; random filters built from a small
//! grammar are evaluated both by the service and by an independent model written here;
//! every page must equal the model's slice, and walking all pages must yield each match
//! exactly once.

use std::cmp::Ordering;

use proptest::prelude::*;
use serde_json::{json, Map};

use crate::auth::password::PasswordHasher;
use crate::auth::Principal;
use crate::records::filter::RequestInfo;
use crate::records::list::ListParams;
use crate::records::{RecordWrite, Records};
use crate::store::{Store, StoreOptions};

#[derive(Debug, Clone)]
enum Cond {
    NumCmp(&'static str, i64),
    TextEq(String),
    TextLike(String),
    Tag(String),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
}

impl Cond {
    fn source(&self) -> String {
        match self {
            Cond::NumCmp(op, n) => format!("n {op} {n}"),
            Cond::TextEq(t) => format!("t = '{t}'"),
            Cond::TextLike(t) => format!("t ~ '{t}'"),
            Cond::Tag(t) => format!("tags:each ?= '{t}'"),
            Cond::And(a, b) => format!("({} && {})", a.source(), b.source()),
            Cond::Or(a, b) => format!("({} || {})", a.source(), b.source()),
        }
    }

    fn holds(&self, r: &Row) -> bool {
        match self {
            Cond::NumCmp(op, n) => match *op {
                "=" => r.n == *n,
                "!=" => r.n != *n,
                ">" => r.n > *n,
                ">=" => r.n >= *n,
                "<" => r.n < *n,
                _ => r.n <= *n,
            },
            Cond::TextEq(t) => r.t == *t,
            Cond::TextLike(t) => r.t.to_ascii_lowercase().contains(&t.to_ascii_lowercase()),
            Cond::Tag(t) => r.tags.contains(t),
            Cond::And(a, b) => a.holds(r) && b.holds(r),
            Cond::Or(a, b) => a.holds(r) || b.holds(r),
        }
    }
}

#[derive(Debug, Clone)]
struct Row {
    id: String,
    n: i64,
    t: String,
    tags: Vec<String>,
}

fn cond() -> impl Strategy<Value = Cond> {
    let leaf = prop_oneof![
        (prop::sample::select(vec!["=", "!=", ">", ">=", "<", "<="]), -5i64..5)
            .prop_map(|(op, n)| Cond::NumCmp(op, n)),
        "[ab]{1,2}".prop_map(Cond::TextEq),
        "[abAB]{1}".prop_map(Cond::TextLike),
        prop::sample::select(vec!["x", "y", "z"]).prop_map(|t| Cond::Tag(t.to_string())),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Cond::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner).prop_map(|(a, b)| Cond::Or(Box::new(a), Box::new(b))),
        ]
    })
}

fn row() -> impl Strategy<Value = (i64, String, Vec<String>)> {
    (-5i64..5, "[abAB]{0,3}", prop::sample::subsequence(vec!["x", "y", "z"], 0..=3))
        .prop_map(|(n, t, tags)| (n, t, tags.into_iter().map(String::from).collect()))
}

fn sort_key() -> impl Strategy<Value = (&'static str, bool)> {
    (prop::sample::select(vec!["", "n", "t", "id", "created"]), any::<bool>())
}

fn compare(a: &Row, b: &Row, key: &str) -> Ordering {
    match key {
        "n" => a.n.cmp(&b.n),
        "t" => a.t.cmp(&b.t),
        _ => Ordering::Equal,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn list_matches_the_model(rows in prop::collection::vec(row(), 0..40), filter in prop::option::of(cond()), sort in sort_key(), per_page in 1usize..9) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        runtime.block_on(async move {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Store::open(&dir.path().join("data.redb"), &StoreOptions::default()).expect("store");
            let records = Records::open(store.clone(), PasswordHasher::new(1), Vec::new()).await.expect("records");
            let su = Principal::Superuser { id: "model".into() };
            records.collections().create(&su, json!({"name": "m", "indexes": ["CREATE INDEX idx_n ON m (n)", "CREATE INDEX idx_tn ON m (t, n)"], "fields": [
                {"name": "n", "type": "number"},
                {"name": "t", "type": "text"},
                {"name": "tags", "type": "select", "values": ["x", "y", "z"], "maxSelect": 3}
            ]}), "").await.expect("collection");
            let mut model: Vec<Row> = Vec::new();
            for (n, t, tags) in rows {
                let mut body = Map::new();
                body.insert("n".into(), json!(n));
                body.insert("t".into(), json!(t));
                body.insert("tags".into(), json!(tags));
                let created = records.create_record(&su, "m", RecordWrite::body(body), &RequestInfo::default()).await.expect("create");
                let id = created["id"].as_str().expect("id").to_string();
                // Tags are stored in the order of the field's values, deduplicated.
                model.push(Row { id, n, t, tags });
            }
            let mut expected: Vec<Row> = model.iter().filter(|r| filter.as_ref().is_none_or(|c| c.holds(r))).cloned().collect();
            let (key, descending) = sort;
            expected.sort_by(|a, b| {
                let ord = compare(a, b, key);
                let ord = if descending { ord.reverse() } else { ord };
                // Ties (and id/created/default order) follow id order, which is creation
                // order, in the direction of the sort key.
                ord.then_with(|| {
                    let by_id = a.id.cmp(&b.id);
                    if !key.is_empty() && descending { by_id.reverse() } else { by_id }
                })
            });
            let sort_param = if key.is_empty() { None } else { Some(format!("{}{key}", if descending { "-" } else { "" })) };
            let mut seen = Vec::new();
            let pages = expected.len().div_ceil(per_page).max(1);
            for page in 1..=pages + 1 {
                let params = ListParams {
                    page: Some(page.to_string()),
                    per_page: Some(per_page.to_string()),
                    sort: sort_param.clone(),
                    filter: filter.as_ref().map(Cond::source),
                    ..ListParams::default()
                };
                let got = records.list_records(&su, "m", params, &RequestInfo::default()).await.expect("list");
                prop_assert_eq!(got.total_items, Some(expected.len() as u64), "filter {:?}", filter.as_ref().map(Cond::source));
                let ids: Vec<String> = got.items.iter().map(|i| i["id"].as_str().unwrap_or_default().to_string()).collect();
                let want: Vec<String> = expected.iter().skip((page - 1) * per_page).take(per_page).map(|r| r.id.clone()).collect();
                prop_assert_eq!(&ids, &want, "page {} sort {:?} filter {:?}", page, sort_param, filter.as_ref().map(Cond::source));
                seen.extend(ids);
            }
            let unique: std::collections::HashSet<&String> = seen.iter().collect();
            prop_assert_eq!(unique.len(), seen.len(), "no duplicates across pages");
            prop_assert_eq!(seen.len(), expected.len(), "no gaps across pages");
            // Cursor mode: walk every page while inserting records between the first pages; each
            // record that existed at the start appears exactly once, nothing appears twice.
            let mut cursor = Some(String::new());
            let mut walked: Vec<String> = Vec::new();
            let mut steps = 0;
            while let Some(token) = cursor.take() {
                let params = ListParams {
                    per_page: Some(per_page.to_string()),
                    sort: sort_param.clone(),
                    filter: filter.as_ref().map(Cond::source),
                    cursor: Some(token),
                    ..ListParams::default()
                };
                let got = records.list_records(&su, "m", params, &RequestInfo::default()).await.expect("cursor page");
                walked.extend(got.items.iter().map(|i| i["id"].as_str().unwrap_or_default().to_string()));
                cursor = got.next_cursor.flatten();
                if steps < 3 {
                    let mut body = Map::new();
                    body.insert("n".into(), json!(steps % 5));
                    body.insert("t".into(), json!("ab"));
                    records.create_record(&su, "m", RecordWrite::body(body), &RequestInfo::default()).await.expect("insert between pages");
                }
                steps += 1;
                prop_assert!(steps < 200, "cursor walk does not end");
            }
            let unique: std::collections::HashSet<&String> = walked.iter().collect();
            prop_assert_eq!(unique.len(), walked.len(), "no duplicates in a cursor walk");
            for row in &expected {
                prop_assert!(unique.contains(&row.id), "cursor walk missed {}", row.id);
            }
            store.shutdown();
            Ok(())
        })?;
    }
}

/// Random schemas: field kinds, indexes, records, filters and sorts drawn at random; every
/// page the engine answers (whatever plan it picks) must equal the model's.
mod random_schemas {
    use std::cmp::Ordering;

    use proptest::prelude::*;
    use serde_json::{json, Map, Value};

    use crate::auth::password::PasswordHasher;
    use crate::auth::Principal;
    use crate::records::filter::RequestInfo;
    use crate::records::list::ListParams;
    use crate::records::{RecordWrite, Records};
    use crate::store::{Store, StoreOptions};

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Kind {
        Num,
        Text,
        Bool,
        Select,
        Date,
    }

    const KINDS: [Kind; 5] = [Kind::Num, Kind::Text, Kind::Bool, Kind::Select, Kind::Date];

    /// The values a kind's records and literals are drawn from.
    fn pool(kind: Kind) -> Vec<Value> {
        match kind {
            Kind::Num => [-2.0, -1.5, 0.0, 0.5, 1.0, 2.0, 3.0].iter().map(|n| json!(n)).collect(),
            Kind::Text => ["", "a", "A", "ab", "aB", "b", "ba", "a\u{e9}"].iter().map(|s| json!(s)).collect(),
            Kind::Bool => vec![json!(false), json!(true)],
            Kind::Select => ["", "x", "y", "z"].iter().map(|s| json!(s)).collect(),
            Kind::Date => {
                ["", "2024-01-01 00:00:00.000Z", "2024-01-02 10:00:00.000Z", "2024-02-01 00:00:00.000Z"]
                    .iter()
                    .map(|s| json!(s))
                    .collect()
            }
        }
    }

    fn ops(kind: Kind) -> &'static [&'static str] {
        match kind {
            Kind::Num => &["=", "!=", ">", ">=", "<", "<="],
            Kind::Bool => &["=", "!="],
            _ => &["=", "!=", ">", ">=", "<", "<=", "~", "!~"],
        }
    }

    const PATTERNS: [&str; 7] = ["a%", "AB%", "%b", "a", "b%a", "%", "\u{e9}"];

    /// A filter over raw choices, resolved against the schema (so shrinking keeps it valid).
    #[derive(Debug, Clone)]
    enum Cond {
        Leaf(usize, usize, usize),
        And(Box<Cond>, Box<Cond>),
        Or(Box<Cond>, Box<Cond>),
    }

    fn cond() -> impl Strategy<Value = Cond> {
        let leaf = || (0usize..8, 0usize..8, 0usize..16).prop_map(|(f, o, l)| Cond::Leaf(f, o, l));
        let tree = leaf().prop_recursive(3, 8, 2, |inner| {
            prop_oneof![
                3 => (inner.clone(), inner.clone()).prop_map(|(a, b)| Cond::And(Box::new(a), Box::new(b))),
                1 => (inner.clone(), inner).prop_map(|(a, b)| Cond::Or(Box::new(a), Box::new(b))),
            ]
        });
        // Plain terms and `&&` chains are what indexes (and exact counts) serve: draw them often.
        prop_oneof![
            2 => leaf(),
            1 => (leaf(), leaf()).prop_map(|(a, b)| Cond::And(Box::new(a), Box::new(b))),
            2 => tree,
        ]
    }

    struct Leaf {
        field: usize,
        op: &'static str,
        literal: Value,
    }

    fn leaf(schema: &[Kind], f: usize, o: usize, l: usize) -> Leaf {
        let field = f % schema.len();
        let kind = schema[field];
        let op = ops(kind)[o % ops(kind).len()];
        let literal = if op == "~" || op == "!~" {
            json!(PATTERNS[l % PATTERNS.len()])
        } else {
            let p = pool(kind);
            p[l % p.len()].clone()
        };
        Leaf { field, op, literal }
    }

    fn source(c: &Cond, schema: &[Kind]) -> String {
        match c {
            Cond::Leaf(f, o, l) => {
                let leaf = leaf(schema, *f, *o, *l);
                let lit = match &leaf.literal {
                    Value::String(s) => format!("'{s}'"),
                    other => other.to_string(),
                };
                format!("f{} {} {lit}", leaf.field, leaf.op)
            }
            Cond::And(a, b) => format!("({} && {})", source(a, schema), source(b, schema)),
            Cond::Or(a, b) => format!("({} || {})", source(a, schema), source(b, schema)),
        }
    }

    /// SQL LIKE with only `%` wildcards, ASCII case-insensitive; without `%`, "contains".
    fn like(value: &str, pattern: &str) -> bool {
        let value = value.to_ascii_lowercase();
        let pattern = pattern.to_ascii_lowercase();
        if !pattern.contains('%') {
            return value.contains(&pattern);
        }
        let parts: Vec<&str> = pattern.split('%').collect();
        let (first, last) = (parts[0], parts[parts.len() - 1]);
        if !value.starts_with(first) || value.len() < first.len() + last.len() || !value.ends_with(last) {
            return false;
        }
        let mut rest = &value[first.len()..value.len() - last.len()];
        for middle in &parts[1..parts.len() - 1] {
            match rest.find(middle) {
                Some(i) => rest = &rest[i + middle.len()..],
                None => return false,
            }
        }
        true
    }

    fn cmp_values(a: &Value, b: &Value) -> Ordering {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => {
                x.as_f64().unwrap_or(0.0).partial_cmp(&y.as_f64().unwrap_or(0.0)).unwrap_or(Ordering::Equal)
            }
            (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
            (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
            // An empty relation sorts as null: before any value.
            (Value::Null, Value::Null) => Ordering::Equal,
            (Value::Null, _) => Ordering::Less,
            (_, Value::Null) => Ordering::Greater,
            _ => Ordering::Equal,
        }
    }

    fn holds(c: &Cond, schema: &[Kind], row: &Map<String, Value>) -> bool {
        match c {
            Cond::Leaf(f, o, l) => {
                let leaf = leaf(schema, *f, *o, *l);
                let v = &row[&format!("f{}", leaf.field)];
                let ord = cmp_values(v, &leaf.literal);
                match leaf.op {
                    "=" => ord == Ordering::Equal,
                    "!=" => ord != Ordering::Equal,
                    ">" => ord == Ordering::Greater,
                    ">=" => ord != Ordering::Less,
                    "<" => ord == Ordering::Less,
                    "<=" => ord != Ordering::Greater,
                    "~" => like(v.as_str().unwrap_or_default(), leaf.literal.as_str().unwrap_or_default()),
                    _ => !like(v.as_str().unwrap_or_default(), leaf.literal.as_str().unwrap_or_default()),
                }
            }
            Cond::And(a, b) => holds(a, schema, row) && holds(b, schema, row),
            Cond::Or(a, b) => holds(a, schema, row) || holds(b, schema, row),
        }
    }

    type Case = (Vec<usize>, Vec<Vec<usize>>, Vec<Vec<usize>>, Option<Cond>, Vec<(usize, bool)>, usize);

    fn case() -> impl Strategy<Value = Case> {
        (
            prop::collection::vec(0usize..KINDS.len(), 1..5),
            prop::collection::vec(prop::collection::vec(0usize..4, 1..4), 0..4),
            prop::collection::vec(prop::collection::vec(0usize..16, 4), 0..40),
            prop::option::weighted(0.8, cond()),
            // A first key of 6 or more asks for an index's own column order (served by it).
            prop::collection::vec((0usize..9, any::<bool>()), 0..3),
            1usize..8,
        )
    }

    /// How often each kind of plan answered a case's pages.
    #[derive(Debug, Default)]
    struct Seen {
        cases: usize,
        index: usize,
        range: usize,
        sorted: usize,
        exact_counts: usize,
    }

    #[test]
    fn any_plan_matches_the_model() {
        let seen = std::sync::Mutex::new(Seen::default());
        // A fixed seed: the coverage counts below are then the same on every run.
        let mut runner = proptest::test_runner::TestRunner::new_with_rng(
            ProptestConfig { cases: 160, ..ProptestConfig::default() },
            proptest::test_runner::TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
        );
        let result = runner.run(&case(), |c| run_case(c, &seen));
        if let Err(err) = result {
            panic!("{err}");
        }
        let seen = seen.into_inner().expect("stats");
        eprintln!("plans seen: {seen:?}");
        // The generator must reach the planner's paths, or the comparison proves little.
        assert!(seen.index * 4 >= seen.cases, "{seen:?}");
        assert!(seen.range > 0 && seen.sorted > 0 && seen.exact_counts > 0, "{seen:?}");
    }

    fn run_case(
        (kinds, indexes, rows, filter, sort, per_page): Case,
        stats: &std::sync::Mutex<Seen>,
    ) -> Result<(), TestCaseError> {
        let schema: Vec<Kind> = kinds.iter().map(|k| KINDS[*k]).collect();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = Store::open(&dir.path().join("data.redb"), &StoreOptions::default()).expect("store");
                let records = Records::open(store.clone(), PasswordHasher::new(1), Vec::new()).await.expect("records");
                let su = Principal::Superuser { id: "model".into() };
                let fields: Vec<Value> = schema.iter().enumerate().map(|(i, k)| match k {
                    Kind::Num => json!({"name": format!("f{i}"), "type": "number"}),
                    Kind::Text => json!({"name": format!("f{i}"), "type": "text"}),
                    Kind::Bool => json!({"name": format!("f{i}"), "type": "bool"}),
                    Kind::Select => json!({"name": format!("f{i}"), "type": "select", "values": ["x", "y", "z"], "maxSelect": 1}),
                    Kind::Date => json!({"name": format!("f{i}"), "type": "date"}),
                }).collect();
                // A relation to a small collection, for sorts by `rel.name`.
                records.collections().create(&su, json!({"name": "t", "fields": [{"name": "name", "type": "text"}]}), "").await.expect("t");
                let mut targets: Vec<(String, Value)> = Vec::new();
                for name in ["m", "a", "m"] {
                    let mut body = Map::new();
                    body.insert("name".into(), json!(name));
                    let t = records.create_record(&su, "t", RecordWrite::body(body), &RequestInfo::default()).await.expect("target");
                    targets.push((t["id"].as_str().unwrap_or_default().to_string(), json!(name)));
                }
                let mut fields = fields;
                fields.push(json!({"name": "rel", "type": "relation", "collectionId": "t", "maxSelect": 1}));
                let index_sql: Vec<String> = indexes.iter().enumerate().map(|(n, cols)| {
                    let mut names: Vec<String> = Vec::new();
                    for c in cols {
                        let name = format!("f{}", c % schema.len());
                        if !names.contains(&name) {
                            names.push(name);
                        }
                    }
                    format!("CREATE INDEX i{n} ON r ({})", names.join(", "))
                }).collect();
                records.collections().create(&su, json!({"name": "r", "fields": fields, "indexes": index_sql}), "").await.expect("collection");
                let mut model: Vec<Map<String, Value>> = Vec::new();
                for picks in &rows {
                    let mut body = Map::new();
                    for (i, kind) in schema.iter().enumerate() {
                        let p = pool(*kind);
                        body.insert(format!("f{i}"), p[picks[i] % p.len()].clone());
                    }
                    let rel = picks.iter().sum::<usize>() % (targets.len() + 1);
                    body.insert("rel".into(), json!(targets.get(rel).map(|(id, _)| id.as_str()).unwrap_or("")));
                    let created = records.create_record(&su, "r", RecordWrite::body(body), &RequestInfo::default()).await.expect("create");
                    // The model keeps what the engine stored (normalized), as it returned it.
                    let mut row = created.as_object().cloned().expect("object");
                    // What `rel.name` sorts by: the target's name, null without a target.
                    let rel_name = targets.iter().find(|(id, _)| Some(id.as_str()) == row["rel"].as_str()).map(|(_, n)| n.clone()).unwrap_or(Value::Null);
                    row.insert("rel.name".into(), rel_name);
                    model.push(row);
                }
                let index_columns: Vec<Vec<String>> = index_sql.iter().map(|sql| {
                    let inner = sql.split('(').nth(1).unwrap_or_default().trim_end_matches(')');
                    inner.split(", ").map(str::to_string).collect()
                }).collect();
                let keys: Vec<(String, bool)> = match sort.first() {
                    Some((k, d)) if *k >= 6 && !index_columns.is_empty() => {
                        index_columns[k % index_columns.len()].iter().map(|c| (c.clone(), *d)).collect()
                    }
                    _ => sort.iter().map(|(k, d)| {
                        let name = match k % (schema.len() + 3) {
                            i if i < schema.len() => format!("f{i}"),
                            i if i == schema.len() => "id".to_string(),
                            i if i == schema.len() + 1 => "rel.name".to_string(),
                            _ => "created".to_string(),
                        };
                        (name, *d)
                    }).collect(),
                };
                let mut expected: Vec<&Map<String, Value>> = model.iter().filter(|r| filter.as_ref().is_none_or(|c| holds(c, &schema, r))).collect();
                expected.sort_by(|a, b| {
                    for (name, desc) in &keys {
                        let ord = cmp_values(&a[name], &b[name]);
                        if ord != Ordering::Equal {
                            return if *desc { ord.reverse() } else { ord };
                        }
                    }
                    let by_id = cmp_values(&a["id"], &b["id"]);
                    if keys.last().is_some_and(|(_, d)| *d) { by_id.reverse() } else { by_id }
                });
                let want: Vec<String> = expected.iter().map(|r| r["id"].as_str().unwrap_or_default().to_string()).collect();
                let sort_param = keys.iter().map(|(n, d)| format!("{}{n}", if *d { "-" } else { "" })).collect::<Vec<_>>().join(",");
                let filter_src = filter.as_ref().map(|c| source(c, &schema));
                let context = format!("schema {schema:?} indexes {index_sql:?} filter {filter_src:?} sort {sort_param:?} perPage {per_page}");
                let pages = want.len().div_ceil(per_page).max(1);
                let mut seen = Vec::new();
                for page in 1..=pages {
                    let params = ListParams {
                        page: Some(page.to_string()),
                        per_page: Some(per_page.to_string()),
                        sort: Some(sort_param.clone()),
                        filter: filter_src.clone(),
                        explain: Some("1".into()),
                        ..ListParams::default()
                    };
                    let got = records.list_records(&su, "r", params, &RequestInfo::default()).await.expect("list");
                    prop_assert_eq!(got.total_items, Some(want.len() as u64), "{} plan {:?}", context, got.explain);
                    if page == 1 {
                        let plan = got.explain.clone().unwrap_or_default();
                        if let Ok(mut s) = stats.lock() {
                            s.cases += 1;
                            s.index += usize::from(plan["strategy"] == "index");
                            s.range += usize::from(plan["range"].is_object());
                            s.sorted += usize::from(plan["sortByIndex"] == true);
                            s.exact_counts += usize::from(plan["totalFromIndex"] == true);
                        }
                    }
                    let ids: Vec<String> = got.items.iter().map(|i| i["id"].as_str().unwrap_or_default().to_string()).collect();
                    let slice: Vec<String> = want.iter().skip((page - 1) * per_page).take(per_page).cloned().collect();
                    prop_assert_eq!(&ids, &slice, "page {} {} plan {:?}", page, context, got.explain);
                    seen.extend(ids);
                }
                prop_assert_eq!(&seen, &want, "{}", context);
                // Cursor paging walks the same order.
                let mut cursor = Some(String::new());
                let mut walked: Vec<String> = Vec::new();
                while let Some(token) = cursor.take() {
                    let params = ListParams {
                        per_page: Some(per_page.to_string()),
                        sort: Some(sort_param.clone()),
                        filter: filter_src.clone(),
                        cursor: Some(token),
                        skip_total: Some("1".into()),
                        ..ListParams::default()
                    };
                    let got = records.list_records(&su, "r", params, &RequestInfo::default()).await.expect("cursor page");
                    walked.extend(got.items.iter().map(|i| i["id"].as_str().unwrap_or_default().to_string()));
                    cursor = got.next_cursor.flatten();
                    prop_assert!(walked.len() <= want.len() + per_page, "cursor walk does not end: {}", context);
                }
                prop_assert_eq!(&walked, &want, "cursor {}", context);
                store.shutdown();
                Ok(())
            })
    }
}

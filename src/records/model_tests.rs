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
use crate::records::filter::RequestInfo;
use crate::records::list::ListParams;
use crate::records::rules::Principal;
use crate::records::Records;
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
            let records = Records::open(store.clone(), PasswordHasher::new(1)).await.expect("records");
            let su = Principal::Superuser { id: "model".into() };
            records.create_collection(&su, json!({"name": "m", "indexes": ["CREATE INDEX idx_n ON m (n)", "CREATE INDEX idx_tn ON m (t, n)"], "fields": [
                {"name": "n", "type": "number"},
                {"name": "t", "type": "text"},
                {"name": "tags", "type": "select", "values": ["x", "y", "z"], "maxSelect": 3}
            ]})).await.expect("collection");
            let mut model: Vec<Row> = Vec::new();
            for (n, t, tags) in rows {
                let mut body = Map::new();
                body.insert("n".into(), json!(n));
                body.insert("t".into(), json!(t));
                body.insert("tags".into(), json!(tags));
                let created = records.create_record(&su, "m", body, &RequestInfo::default()).await.expect("create");
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
                    records.create_record(&su, "m", body, &RequestInfo::default()).await.expect("insert between pages");
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

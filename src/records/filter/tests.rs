use serde_json::{json, Map, Value};

use super::eval::like_for_tests as like;
use super::*;
use crate::records::catalog::Catalog;
use crate::records::collection::{self, CollectionInput};

fn collection() -> Collection {
    let input = CollectionInput::parse(json!({
        "name": "posts",
        "fields": [
            {"name": "title", "type": "text"},
            {"name": "views", "type": "number"},
            {"name": "done", "type": "bool"},
            {"name": "tags", "type": "select", "values": ["a", "b", "c"], "maxSelect": 3},
            {"name": "status", "type": "select", "values": ["draft", "live"], "maxSelect": 1},
            {"name": "meta", "type": "json"},
            {"name": "secret", "type": "text", "hidden": true},
            {"name": "when", "type": "date"}
        ]
    }))
    .expect("input");
    collection::build(input, None, "c1".into(), "2024-01-01 00:00:00.000Z", &|_| None).expect("collection")
}

fn record(v: Value) -> Map<String, Value> {
    v.as_object().expect("object").clone()
}

fn check(filter: &str, rec: &Value) -> bool {
    let c = collection();
    let f =
        Filter::compile(filter, &c, &Catalog::default(), false).unwrap_or_else(|e| panic!("{filter}: {e}"));
    let now = Now(chrono::DateTime::parse_from_rfc3339("2024-06-15T12:00:00Z").expect("date").into());
    f.matches(&c, &record(rec.clone()), &RequestInfo::default(), &now, None)
}

fn error(filter: &str) -> FilterError {
    Filter::compile(filter, &collection(), &Catalog::default(), false).expect_err(filter)
}

#[test]
fn comparison_operators_on_scalars() {
    let r = json!({"title": "Hello World", "views": 10, "done": true, "when": "2024-05-01 00:00:00.000Z"});
    assert!(check("views = 10", &r));
    assert!(check("views != 11", &r));
    assert!(check("views > 9 && views >= 10 && views < 11 && views <= 10", &r));
    assert!(!check("views > 10", &r));
    assert!(check("views = '10'", &r), "numeric text compares numerically");
    assert!(check("title = 'Hello World'", &r));
    assert!(check("title = \"Hello World\"", &r));
    assert!(check("title ~ 'world'", &r), "contains, case-insensitive");
    assert!(check("title !~ 'planet'", &r));
    assert!(check("title ~ 'Hel%'", &r), "% makes it a pattern");
    assert!(!check("title ~ 'World%'", &r));
    assert!(check("done = true && done != false", &r));
    assert!(check("when < @now && when > '2024-01-01'", &r));
}

#[test]
fn precedence_grouping_and_comments() {
    let r = json!({"views": 1, "title": "x"});
    assert!(check("views = 2 && title = 'y' || views = 1", &r), "&& binds tighter than ||");
    assert!(!check("views = 2 && (title = 'y' || views = 1)", &r));
    assert!(check("(views = 1) // a comment\n && title = 'x'", &r));
}

#[test]
fn null_equals_empty() {
    let r = json!({"title": "", "meta": null});
    assert!(check("title = null", &r));
    assert!(check("title = ''", &r));
    assert!(check("meta = null && meta = ''", &r));
    assert!(!check("title != null", &r));
}

#[test]
fn multiple_selects_compare_as_json_text_unless_each() {
    let r = json!({"tags": ["a", "b"]});
    // As in PocketBase 0.40: the plain field is its JSON text.
    assert!(!check("tags ?= 'a'", &r));
    assert!(check("tags = '[\"a\",\"b\"]'", &r));
    assert!(check("tags ~ 'a'", &r));
    // `:each` matches item by item: all items, or any with `?`.
    assert!(check("tags:each ?= 'a'", &r));
    assert!(!check("tags:each = 'a'", &r), "without ? every item must match");
    assert!(check("tags:each != 'c'", &r), "no item equals c");
    assert!(!check("tags:each ?= 'c'", &r));
    assert!(check("tags:length = 2", &r));
    assert!(check("tags:each ~ '%'", &r));
    let empty = json!({"tags": []});
    assert!(check("tags:length = 0", &empty));
    assert!(check("tags = '[]'", &empty));
    assert!(check("tags:each = null", &empty));
    assert!(!check("tags:each ?= 'a'", &empty));
    assert!(check("tags:each != 'a'", &empty));
}

#[test]
fn json_paths_and_lower_modifier() {
    let r = json!({"meta": {"a": {"b": 5}, "list": [1, 2, 3]}, "title": "MiXeD"});
    assert!(check("meta.a.b = 5", &r));
    assert!(check("meta.list:length = 3", &r));
    assert!(check("meta.nope = null", &r));
    assert!(check("title:lower = 'mixed'", &r));
}

#[test]
fn date_macros() {
    let r = json!({"when": "2024-06-15 08:00:00.000Z"});
    assert!(check("when >= @todayStart && when <= @todayEnd", &r));
    assert!(check("when > @yesterday && when < @tomorrow", &r));
    assert!(check("when >= @monthStart && when <= @monthEnd && when >= @yearStart && when <= @yearEnd", &r));
    assert!(check("@year = 2024 && @month = 6 && @day = 15 && @hour = 12", &r));
}

#[test]
fn request_values() {
    let c = collection();
    let f = Filter::compile(
        "@request.auth.id != '' && @request.body.title:isset = true && @request.method = 'POST' && @request.headers.x_key = 'k'",
        &c,
        &Catalog::default(),
        false,
    )
    .expect("compile");
    let now = Now::current();
    let mut auth = Map::new();
    auth.insert("id".into(), json!("user1"));
    let request = RequestInfo {
        auth: Some(auth),
        method: "POST".into(),
        body: record(json!({"title": "x"})),
        headers: record(json!({"x_key": "k"})),
        ..RequestInfo::default()
    };
    assert!(f.matches(&c, &Map::new(), &request, &now, None));
    let anonymous = RequestInfo { auth: None, ..request };
    assert!(!f.matches(&c, &Map::new(), &anonymous, &now, None));
}

#[test]
fn errors_name_their_position() {
    assert_eq!(error("title = ").position, 8);
    assert_eq!(error("title").position, 5);
    assert_eq!(error("(title = 'x'").position, 0);
    assert_eq!(error("title = 'x' title").position, 12);
    assert_eq!(error("title = 'unterminated").position, 8);
    assert!(error("nosuch = 1").message.contains("unknown field"));
    assert!(error("secret = 'x'").message.contains("cannot be filtered"));
    assert!(error("title:bogus = 1").message.contains("modifier"));
    assert!(error("title = 1 ^ 2").message.contains("unexpected character"));
    assert!(error("@collection.other.x = 1").message.contains("unknown collection"));
    assert!(error("title.sub = 1").message.contains("not a relation or JSON"));
    assert!(error("").message.contains("empty"));
}

#[test]
fn limits_are_enforced() {
    let deep = format!("{}title = 'x'{}", "(".repeat(100), ")".repeat(100));
    assert!(error(&deep).message.contains("nesting"));
    let many = vec!["views = 1"; 300].join(" || ");
    assert!(error(&many).message.contains("comparisons"));
    let long = format!("title = '{}'", "x".repeat(10_000));
    assert!(error(&long).message.contains("longer"));
}

#[test]
fn like_patterns() {
    assert!(like("hello", "ell"));
    assert!(like("HELLO", "ell"));
    assert!(like("hello", "h%o"));
    assert!(like("hello", "h_llo%"));
    assert!(!like("hello", "h_lo%"));
    assert!(like("100%", "100\\%%"));
    assert!(like("a_b", "a\\_b"));
    assert!(!like("axb", "a\\_b%"));
    assert!(like("", ""));
}

#[test]
fn superusers_may_filter_hidden_fields() {
    let c = collection();
    assert!(Filter::compile("secret = 'x'", &c, &Catalog::default(), true).is_ok());
}

/// The backtracking matcher `like` replaced: the reference its answers must equal.
fn like_reference(value: &str, pattern: &str) -> bool {
    fn go(v: &[char], p: &[(bool, char)]) -> bool {
        match p.split_first() {
            None => v.is_empty(),
            Some(((true, '%'), rest)) => (0..=v.len()).any(|i| go(&v[i..], rest)),
            Some(((true, '_'), rest)) => !v.is_empty() && go(&v[1..], rest),
            Some(((_, c), rest)) => v.first() == Some(c) && go(&v[1..], rest),
        }
    }
    let mut tokens = Vec::new();
    let mut escaped = false;
    for c in pattern.chars() {
        if escaped {
            tokens.push((false, c.to_ascii_lowercase()));
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else {
            tokens.push((matches!(c, '%' | '_'), c.to_ascii_lowercase()));
        }
    }
    let value: Vec<char> = value.chars().map(|c| c.to_ascii_lowercase()).collect();
    if !tokens.contains(&(true, '%')) {
        let needle: Vec<char> = tokens.iter().map(|t| t.1).collect();
        return needle.is_empty() || value.windows(needle.len()).any(|w| w == needle.as_slice());
    }
    go(&value, &tokens)
}

proptest::proptest! {
    #[test]
    fn like_agrees_with_the_backtracking_reference(
        value in "[abAB_%é]{0,12}",
        pattern in "[ab_%\\\\é]{0,8}",
    ) {
        proptest::prop_assert_eq!(like(&value, &pattern), like_reference(&value, &pattern), "{:?} ~ {:?}", value, pattern);
    }

    #[test]
    fn like_finds_long_segments_with_wildcards(prefix in "[ab]{0,70}", middle in "[ab]{60,140}", suffix in "[ab]{0,70}") {
        // Segments longer than one 64-bit word, with `_` in them.
        let value = format!("{prefix}{middle}{suffix}");
        let pattern: String = middle.chars().enumerate().map(|(i, c)| if i % 7 == 3 { '_' } else { c }).collect();
        let wrapped = format!("%{pattern}%");
        proptest::prop_assert!(like(&value, &wrapped));
        proptest::prop_assert_eq!(like(&value, &wrapped), like_reference(&value, &wrapped));
    }
}

#[test]
fn like_cost_is_bounded_on_hostile_patterns() {
    // The audit's case: one 1 MiB value, an 8 KB pattern that backtracks at every position
    // (7.5 s of CPU with the old matcher). Now linear-ish: well under a second even in debug.
    let value = "a".repeat(1 << 20);
    let started = std::time::Instant::now();
    assert!(!like(&value, &format!("%{}b", "a".repeat(8 * 1024))));
    assert!(!like(&value, &format!("%{}b%", "a".repeat(8 * 1024))));
    // Segments with `_` cost |value| × ⌈|segment| / 64⌉ word operations.
    let shorter = &value[..128 * 1024];
    assert!(!like(shorter, &format!("%{}_b%", "a".repeat(8 * 1024))));
    assert!(like(shorter, &format!("%{}%", "a_".repeat(4 * 1024))));
    assert!(!like(&value, &format!("a{}b", "%a".repeat(4 * 1024))));
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());
}

use serde_json::{json, Value};

use super::*;

fn field(def: Value) -> Field {
    serde_json::from_value(def).expect("field definition")
}

fn code(f: &Field, input: Value) -> String {
    f.normalize(&input).expect_err("should be invalid").code
}

#[test]
fn text_limits_pattern_and_required() {
    let f = field(
        json!({"name": "t", "type": "text", "min": 2, "max": 4, "pattern": "^[a-z]+$", "required": true}),
    );
    assert_eq!(f.normalize(&json!("abc")).expect("valid"), json!("abc"));
    assert_eq!(code(&f, json!("a")), "validation_min_text_constraint");
    assert_eq!(code(&f, json!("abcde")), "validation_max_text_constraint");
    assert_eq!(code(&f, json!("AB")), "validation_invalid_format");
    assert_eq!(code(&f, json!("")), "validation_required");
    assert_eq!(code(&f, Value::Null), "validation_required");
    assert_eq!(code(&f, json!({"a": 1})), "validation_invalid_type");
    // Lengths count characters, not bytes.
    let g = field(json!({"name": "t", "type": "text", "max": 2}));
    assert_eq!(g.normalize(&json!("éé")).expect("two characters"), json!("éé"));
}

#[test]
fn number_casts_and_bounds() {
    let f = field(json!({"name": "n", "type": "number", "min": 1, "max": 10, "onlyInt": true}));
    assert_eq!(f.normalize(&json!("5")).expect("numeric string"), json!(5));
    assert_eq!(f.normalize(&json!(7.0)).expect("integral float"), json!(7));
    assert_eq!(code(&f, json!(0.5)), "validation_only_int_constraint");
    assert_eq!(code(&f, json!(0)), "validation_min_number_constraint");
    assert_eq!(code(&f, json!(11)), "validation_max_number_constraint");
    assert_eq!(code(&f, json!("ten")), "validation_invalid_type");
    assert_eq!(code(&f, json!([1])), "validation_invalid_type");
}

#[test]
fn bool_email_url_date() {
    let b = field(json!({"name": "b", "type": "bool"}));
    assert_eq!(b.normalize(&json!("true")).expect("cast"), json!(true));
    assert_eq!(code(&b, json!("maybe")), "validation_invalid_type");
    let e = field(json!({"name": "e", "type": "email", "onlyDomains": ["example.com"]}));
    assert_eq!(e.normalize(&json!("a@example.com")).expect("valid"), json!("a@example.com"));
    assert_eq!(code(&e, json!("not an email")), "validation_invalid_email");
    assert_eq!(code(&e, json!("a@other.com")), "validation_email_domain_not_allowed");
    let u = field(json!({"name": "u", "type": "url"}));
    assert_eq!(code(&u, json!("javascript:alert(1)")), "validation_invalid_url");
    assert!(u.normalize(&json!("https://example.com/x")).is_ok());
    let d = field(json!({"name": "d", "type": "date", "min": "2020-01-01"}));
    assert_eq!(d.normalize(&json!("2024-02-03T04:05:06Z")).expect("date"), json!("2024-02-03 04:05:06.000Z"));
    assert_eq!(code(&d, json!("2019-12-31")), "validation_min_date_constraint");
    assert_eq!(code(&d, json!("soon")), "validation_invalid_date");
}

#[test]
fn select_single_and_multiple() {
    let single = field(json!({"name": "s", "type": "select", "values": ["a", "b"], "maxSelect": 1}));
    assert_eq!(single.normalize(&json!("a")).expect("valid"), json!("a"));
    assert_eq!(single.normalize(&json!(["b"])).expect("one-element array"), json!("b"));
    assert_eq!(code(&single, json!("z")), "validation_invalid_value");
    assert_eq!(code(&single, json!(["a", "b"])), "validation_too_many_values");
    let multi = field(json!({"name": "m", "type": "select", "values": ["a", "b", "c"], "maxSelect": 2}));
    assert_eq!(multi.normalize(&json!(["a", "a", "b"])).expect("dedup"), json!(["a", "b"]));
    assert_eq!(multi.normalize(&json!("c")).expect("single string"), json!(["c"]));
    assert_eq!(code(&multi, json!(["a", "b", "c"])), "validation_too_many_values");
}

#[test]
fn json_size_limit() {
    let f = field(json!({"name": "j", "type": "json", "maxSize": 10}));
    assert_eq!(f.normalize(&json!([1, 2])).expect("small"), json!([1, 2]));
    assert_eq!(code(&f, json!({"long": "xxxxxxxxxxxxxxxx"})), "validation_json_size_limit");
}

#[test]
fn definitions_are_checked() {
    let bad = [
        json!({"name": "t", "type": "text", "min": 5, "max": 2}),
        json!({"name": "t", "type": "text", "pattern": "("}),
        json!({"name": "s", "type": "select", "values": []}),
        json!({"name": "s", "type": "select", "values": ["a"], "maxSelect": 2}),
        json!({"name": "n", "type": "number", "min": 3, "max": 1}),
        json!({"name": "d", "type": "date", "min": "whenever"}),
    ];
    for def in bad {
        assert!(field(def.clone()).check_definition().is_err(), "{def}");
    }
    assert!(serde_json::from_value::<Field>(json!({"name": "x", "type": "geoPoint"})).is_err());
}

//! The filter language: any text must compile or be refused with a position, never panic,
//! and a compiled filter must evaluate against a record without panicking.
#![no_main]

#[path = "common.rs"]
mod common;

use backbone::records::filter::{Filter, Now, RequestInfo};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else { return };
    let collection = common::collection();
    let catalog = common::catalog();
    let record: Map<String, Value> = match json!({
        "id": "abcdefghijklmno", "title": "Hello", "views": 3, "score": -1.5, "published": true,
        "contact": "a@b.co", "site": "https://x.io", "when": "2024-01-01 00:00:00.000Z",
        "status": "live", "tags": ["a", "c"], "meta": {"k": [1, 2, {"z": null}]}, "body": "<p>x</p>",
        "code": "ABC", "secret": "s", "parent": "", "related": ["abcdefghijklmno"],
        "created": "2024-01-01 00:00:00.000Z", "updated": "2024-01-01 00:00:00.000Z"
    }) {
        Value::Object(m) => m,
        _ => return,
    };
    let mut request = RequestInfo::default();
    request.auth = Some(record.clone());
    for privileged in [false, true] {
        if let Ok(filter) = Filter::compile(src, &collection, &catalog, privileged) {
            let _ = filter.matches(&collection, &record, &request, &Now::current(), None);
            let _ = filter.terms(&Now::current());
            let _ = filter.record_keys();
        }
    }
});

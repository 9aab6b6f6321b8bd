//! Record validation: any JSON body must become a stored record or field errors — never a
//! panic — for creates and for updates over an existing record.
#![no_main]

#[path = "common.rs"]
mod common;

use backbone::util::id::IdGenerator;
use backbone::records::record::{prepare_create, prepare_update, to_json, FieldsFilter};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(data) else { return };
    let collection = common::collection();
    let ids = IdGenerator::default();
    let now = "2026-01-01 00:00:00.000Z";
    if let Ok(created) = prepare_create(&collection, &body, &ids, now) {
        let _ = to_json(&collection, &created.stored, false, &FieldsFilter::default());
        if let Ok(updated) = prepare_update(&collection, &created.stored, &body, now) {
            let _ = to_json(&collection, &updated.stored, true, &FieldsFilter::default());
        }
    }
});

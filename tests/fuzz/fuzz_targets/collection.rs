//! Collection definitions: any JSON must build a collection (whose rules and indexes then
//! check out) or be refused with field errors — never a panic — as a create and as an update
//! of an existing collection.
#![no_main]

#[path = "common.rs"]
mod common;

use backbone::records::collection::{build, CollectionInput};
use backbone::records::{index, rules};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else { return };
    let existing = common::collection();
    let catalog = common::catalog();
    let resolve = |name: &str| (name == "posts").then(|| existing.id.clone());
    for current in [None, Some(&existing)] {
        let Ok(input) = CollectionInput::parse(value.clone()) else { continue };
        if let Ok(built) =
            build(input, current, "pbc_fuzz0000002".into(), "2026-01-01 00:00:00.000Z", &resolve)
        {
            let _ = rules::validate(&built, &catalog, "fuzz");
            let _ = index::parse_all(&built);
        }
    }
});

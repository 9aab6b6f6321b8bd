//! The collection every target works against: one field of each kind, a relation to
//! itself, a hidden field and an index.

use backbone::records::catalog::Catalog;
use backbone::records::collection::{self, Collection, CollectionInput};
use serde_json::json;

pub fn collection() -> Collection {
    let input = CollectionInput::parse(json!({
        "name": "posts",
        "fields": [
            {"name": "title", "type": "text", "required": true, "min": 1, "max": 100},
            {"name": "views", "type": "number", "onlyInt": true, "min": 0},
            {"name": "score", "type": "number"},
            {"name": "published", "type": "bool"},
            {"name": "contact", "type": "email"},
            {"name": "site", "type": "url"},
            {"name": "when", "type": "date"},
            {"name": "status", "type": "select", "values": ["draft", "live"], "maxSelect": 1},
            {"name": "tags", "type": "select", "values": ["a", "b", "c"], "maxSelect": 3},
            {"name": "meta", "type": "json", "maxSize": 2000},
            {"name": "body", "type": "editor"},
            {"name": "code", "type": "text", "pattern": "^[A-Z]{3}$"},
            {"name": "secret", "type": "text", "hidden": true},
            {"name": "parent", "type": "relation", "collectionId": "posts", "maxSelect": 1},
            {"name": "related", "type": "relation", "collectionId": "posts", "maxSelect": 5}
        ],
        "indexes": ["CREATE INDEX idx_status ON posts (status, views)"]
    }))
    .expect("fixed collection input parses");
    collection::build(input, None, "pbc_fuzz0000001".into(), "2026-01-01 00:00:00.000Z", &|_| None)
        .expect("fixed collection builds")
}

#[allow(dead_code)] // not every target needs it
pub fn catalog() -> Catalog {
    Catalog::default()
}

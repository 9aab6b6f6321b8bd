//! Leaf utilities shared by every layer: ids, timestamps, IP ranges, the TLS provider and
//! metric primitives. Nothing here imports another module of the crate (a test in
//! `tests/architecture.rs` holds that), so any module may use them without tying layers.

pub mod id;
pub mod invalid;
pub mod metrics;
pub mod net;
pub mod time;
pub mod tls;

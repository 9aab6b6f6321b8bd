//! Integration tests against the real `backbone` binary on port 0: every endpoint, and
//! every bad input with its status and problem+json shape.

#[path = "../common/mod.rs"]
mod common;

mod account_email;
mod auth;
mod batch;
mod cli;
mod collections;
mod data_dir;
mod errors;
mod files;
mod filter;
mod hardening;
mod health;
mod indexes;
mod jobs;
mod keys;
mod mail;
mod modifiers;
mod observe;
mod openapi;
mod realtime;
mod records;
mod relations;
mod rule_matrix;
mod sdk_shapes;
mod search;
mod security;
mod thumb_memory;
mod users;
mod webhooks;

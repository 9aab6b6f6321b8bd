//! Backbone: a backend in one static executable.
//!
//! See ARCHITECTURE.md for the bird's-eye view and the code map.

pub mod accounts;
pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod datadir;
pub mod files;
pub mod jobs;
pub mod mail;
pub mod observe;
pub mod realtime;
pub mod records;
pub mod search;
pub mod store;
pub mod util;
pub mod webhooks;

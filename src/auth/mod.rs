//! Who is calling and the credentials that prove it: the [`Principal`] of a request and API
//! key [`Scopes`], password hashing, signed tokens, and the rate limits that guard sign-in.
//!
//! This is the bottom of authentication: it imports no domain module, so the records rules,
//! files, search and the audit log can name the caller without depending on the sign-in
//! flows. The flows themselves (sign-in, refresh, verification, reset, one-time codes, API
//! key management) live in `accounts`, above `records`.

pub mod limits;
pub mod password;
pub mod principal;
pub mod token;

pub use principal::{Op, Principal, ScopeTarget, Scopes};

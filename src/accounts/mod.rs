//! Accounts: resolving the caller of a request, signing in, the account flows, API keys, and
//! the first-superuser setup. Built on `records` (accounts are records of auth collections)
//! and on `auth` (principal, passwords, tokens, rate limits).
//!
//! Superusers are records of the `_superusers` auth collection. Tokens are JWTs signed per
//! record (see [`crate::auth::token`]). There is no default account: while no superuser exists, the
//! server holds a one-time setup token (only its hash is stored) that creates the first one.
//!
//! # How it works
//!
//! - `accounts/mod.rs` — `Auth`: who is calling (`identify`: session token, or API key), password
//!   sign-in (checking the collection's `authRule`; success and failure audited), refresh
//!   (re-checks the `authRule`; impersonation tokens are not refreshable), sign-out (the token's hash goes into
//!   `revoked_tokens` until its expiry; `all` rotates the token key), impersonation, the
//!   first-superuser setup token (only its hash is stored) and superuser upsert. A verified
//!   token is remembered for up to 5 s so authenticated requests skip re-reading the auth
//!   record; `Records` bumps an auth generation on every auth-record write, delete, batch and
//!   schema change, and on every sign-out (so a request racing the sign-out cannot re-cache
//!   the revoked token), which invalidates all remembered tokens at once.
//! - `auth/token.rs` — HS256 JWTs signed with `HMAC(server secret, key)`; session tokens use the
//!   record's token key (rotated on password or email change, which revokes them all), each
//!   with a random `jti`.
//! - `accounts/flows.rs` — verification, password reset, email change and one-time codes, through the
//!   mail outbox. Purpose tokens are signed with the token key plus the state they change
//!   (unverified email, password hash, current email), so each works once without being
//!   stored; the confirming update re-checks the token inside a guarded update
//!   ([`Records::update_record`] with a guard), so two concurrent confirmations cannot both win.
//!   OTPs are stored hashed with the queued email in one transaction; 5 wrong tries burn one.
//!   `api::auth` answers these requests before looking the account up (the lookup and the
//!   fsync'd enqueue run in a spawned task, as PocketBase sends in the background), so the
//!   answer's timing says nothing about who has an account; `limits.rs` bounds the emails
//!   per address. A code that signs an unverified account in also replaces its password by
//!   a random one (account pre-hijacking: the registrant's password is unproven).
//! - `accounts/keys.rs` — API keys (`bbk_<id>_<secret>`, SHA-256 stored, all held in memory), scopes
//!   (collections × operations) and capabilities (`mail.send`); [`Principal::ApiKey`] passes the
//!   rules within its scopes and nothing else. No scope reaches a system collection
//!   (`_superusers`): `*` skips them and a scope naming one is refused.
//! - `auth/limits.rs` — `governor` token buckets per client IP (global, auth endpoints, per-path
//!   rules), per sign-in identity, and per address for account emails
//!   (`mail_per_account`); the client IP honours `X-Forwarded-For` only from
//!   trusted proxies (right-most untrusted entry). Idle buckets are swept every minute.
//! - `auth/password.rs` — Argon2id on the blocking pool behind a semaphore; unknown accounts verify
//!   against a decoy hash so failures take the same time.
//!
//! Rules live in [`crate::records::rules`] (`Op`, `Principal` and `Scopes` in [`crate::auth::principal`]): `access(op, principal, ...)`
//! decides (superuser: allow; API key: its scopes; others: the collection's rule), and
//! `can_manage` evaluates an auth collection's `manageRule`. [`record::check_protected`] keeps
//! `verified` and `email` for managers; a non-manager's password change needs `oldPassword`.

pub mod flows;
pub mod keys;

use std::sync::Arc;

use rand::RngCore;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::audit::{self, Actor, Event};
use crate::auth::{token, Principal};
use crate::records::collection::SUPERUSERS_ID;
use crate::records::filter::{Env, Filter, Now, RequestInfo};
use crate::records::record::{self, FieldsFilter, Stored};
use crate::records::{FieldError, RecordWrite, Records, RecordsError};
use crate::store::{ScanControl, Table, WriteTx};

const META_SERVER_SECRET: &[u8] = b"server_secret";
const META_SETUP_TOKEN_HASH: &[u8] = b"setup_token_hash";

/// Errors of sign-in and setup, mapped to HTTP by `api/`.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Wrong identity or password (deliberately not saying which).
    #[error("Failed to authenticate.")]
    InvalidCredentials,
    /// The request needs a signed-in caller.
    #[error("The request requires valid record authorization token.")]
    Unauthenticated,
    /// Setup token missing, wrong, or already used.
    #[error("{0}")]
    SetupRefused(String),
    /// Signed in, but not allowed to do this.
    #[error("{0}")]
    Forbidden(String),
    /// Anything from the records layer (validation, storage).
    #[error(transparent)]
    Records(RecordsError),
    /// An email could not be queued.
    #[error(transparent)]
    Mail(#[from] crate::mail::MailError),
}

impl From<RecordsError> for AuthError {
    fn from(err: RecordsError) -> Self {
        AuthError::Records(err)
    }
}

impl From<crate::store::StoreError> for AuthError {
    fn from(err: crate::store::StoreError) -> Self {
        AuthError::Records(RecordsError::Store(err))
    }
}

/// A signed-in session: the token and the record JSON, as PocketBase returns them.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub record: Value,
}

/// A verified token, remembered for a few seconds so authenticated reads do not pay a
/// second store read each. Valid only while the records' auth generation is unchanged (any
/// write to an auth record, delete, batch or schema change invalidates every entry), and
/// never past the token's own expiry.
#[derive(Clone)]
struct Verified {
    principal: Principal,
    record: Stored,
    generation: u64,
    until: std::time::Instant,
}

/// How long a verified token is remembered.
const VERIFIED_TTL: std::time::Duration = std::time::Duration::from_secs(5);
/// Most remembered tokens; the cache is emptied when full.
const VERIFIED_MAX: usize = 10_000;

/// Authentication service.
#[derive(Clone)]
pub struct Auth {
    records: Records,
    secret: Arc<Vec<u8>>,
    setup_lock: Arc<tokio::sync::Mutex<()>>,
    /// API keys (server-to-server callers).
    pub keys: keys::Keys,
    verified: Arc<std::sync::Mutex<std::collections::HashMap<String, Verified>>>,
    /// Password sign-ins that succeeded and failed (for `/metrics`).
    pub logins: Arc<LoginCounters>,
}

/// Sign-in outcomes since start.
#[derive(Debug, Default)]
pub struct LoginCounters {
    pub ok: crate::util::metrics::Counter,
    pub failed: crate::util::metrics::Counter,
}

impl LoginCounters {
    /// `backbone_auth_logins_total`: password sign-ins by outcome.
    pub fn render_metrics(&self, out: &mut crate::util::metrics::Exposition) {
        out.family("backbone_auth_logins_total", "counter", "Password sign-ins by outcome.");
        out.sample("backbone_auth_logins_total", &[("outcome", "ok")], self.ok.get() as f64);
        out.sample("backbone_auth_logins_total", &[("outcome", "failed")], self.failed.get() as f64);
    }
}

fn sha256_hex(input: &[u8]) -> String {
    Sha256::digest(input).iter().map(|b| format!("{b:02x}")).collect()
}

fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Auth {
    /// Loads (or creates on first start) the server secret.
    pub async fn open(records: Records) -> Result<Auth, AuthError> {
        let secret = records
            .store()
            .write(|tx: &mut WriteTx<'_>| -> Result<Vec<u8>, AuthError> {
                if let Some(existing) = tx.get(Table::Meta, META_SERVER_SECRET)? {
                    return Ok(existing);
                }
                let mut secret = vec![0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut secret);
                tx.put(Table::Meta, META_SERVER_SECRET, secret.clone());
                Ok(secret)
            })
            .await?;
        let keys = keys::Keys::open(records.store().clone()).await?;
        Ok(Auth {
            keys,
            records,
            secret: Arc::new(secret),
            setup_lock: Arc::new(tokio::sync::Mutex::new(())),
            verified: Arc::new(std::sync::Mutex::new(std::collections::HashMap::new())),
            logins: Arc::default(),
        })
    }

    /// Who is calling, from an `Authorization` header value (`<token>` or `Bearer <token>`).
    /// Invalid or expired tokens make the caller anonymous.
    pub async fn principal(&self, header: Option<&str>) -> Principal {
        self.identify(header).await.0
    }

    /// Like [`Auth::principal`], plus the caller's record as `@request.auth` sees it (with
    /// `collectionId` and `collectionName`; secrets removed).
    pub async fn identify(&self, header: Option<&str>) -> (Principal, Option<Stored>) {
        let anonymous = (Principal::Anonymous, None);
        let Some(raw) = header.map(str::trim).filter(|h| !h.is_empty()) else {
            return anonymous;
        };
        let token = bare_token(raw);
        if token.starts_with(keys::PREFIX) {
            return match self.keys.authenticate(token) {
                Some(principal) => (principal, None),
                None => anonymous,
            };
        }
        let Some(claims) = token::peek(token) else {
            return anonymous;
        };
        if claims.kind != "auth" {
            return anonymous;
        }
        // The generation is read before the record, so a write racing this lookup makes the
        // cached entry stale rather than letting an old record outlive it.
        let generation = self.records.auth_generation();
        if let Ok(cache) = self.verified.lock() {
            if let Some(hit) = cache.get(token) {
                if hit.generation == generation && hit.until > std::time::Instant::now() {
                    return (hit.principal.clone(), Some(hit.record.clone()));
                }
            }
        }
        if self.is_revoked(token, claims.exp).await {
            return anonymous;
        }
        let Ok(Some(mut stored)) = self.records.load_stored(&claims.collection_id, &claims.id).await else {
            return anonymous;
        };
        let token_key = stored.get("tokenKey").and_then(Value::as_str).unwrap_or_default();
        if token_key.is_empty() || token::verify(token, &self.secret, token_key, now_unix()).is_none() {
            return anonymous;
        }
        stored.remove("password");
        stored.remove("tokenKey");
        stored.insert("collectionId".into(), Value::String(claims.collection_id.clone()));
        if let Ok(entry) = self.records.collection(&claims.collection_id) {
            stored.insert("collectionName".into(), Value::String(entry.collection.name.clone()));
        }
        let seconds_left = u64::try_from(claims.exp - now_unix()).unwrap_or(0);
        let until =
            std::time::Instant::now() + VERIFIED_TTL.min(std::time::Duration::from_secs(seconds_left));
        let principal = if claims.collection_id == SUPERUSERS_ID {
            Principal::Superuser { id: claims.id }
        } else {
            Principal::Record { collection_id: claims.collection_id, id: claims.id }
        };
        if let Ok(mut cache) = self.verified.lock() {
            if cache.len() >= VERIFIED_MAX {
                cache.clear();
            }
            cache.insert(
                token.to_string(),
                Verified { principal: principal.clone(), record: stored.clone(), generation, until },
            );
        }
        (principal, Some(stored))
    }

    /// Why [`Auth::identify`] treats the credentials in `header` as anonymous, for a 401 that
    /// says what to do; `None` when there are none or they are accepted. Only called on a
    /// request already refused, so the extra lookups cost nothing on the happy path.
    pub async fn rejection(&self, header: Option<&str>) -> Option<String> {
        let raw = header.map(str::trim).filter(|h| !h.is_empty())?;
        let token = bare_token(raw);
        if token.starts_with(keys::PREFIX) {
            return self
                .keys
                .authenticate(token)
                .is_none()
                .then(|| "The API key is unknown, revoked or expired.".to_string());
        }
        let Some(claims) = token::peek(token) else {
            return Some(
                "The authorization token is malformed: send the token a sign-in returned (or an API key)."
                    .into(),
            );
        };
        if claims.kind != "auth" {
            return Some(format!(
                "The token is a {:?} token, not an auth token from a sign-in.",
                claims.kind
            ));
        }
        if claims.exp <= now_unix() {
            return Some("The authorization token has expired; sign in again.".into());
        }
        if self.is_revoked(token, claims.exp).await {
            return Some("The authorization token was revoked (signed out); sign in again.".into());
        }
        let Ok(Some(stored)) = self.records.load_stored(&claims.collection_id, &claims.id).await else {
            return Some("The account the authorization token was issued for no longer exists.".into());
        };
        let token_key = stored.get("tokenKey").and_then(Value::as_str).unwrap_or_default();
        if token_key.is_empty() || token::verify(token, &self.secret, token_key, now_unix()).is_none() {
            return Some(
                "The authorization token's signature does not match (the password changed, or another server issued it); sign in again."
                    .into(),
            );
        }
        None
    }

    /// A short-lived file token for the caller (`POST /api/files/token`): a `file` JWT
    /// signed with the record's token key, so a password change revokes it too.
    pub async fn file_token(&self, principal: &Principal, ttl_secs: u64) -> Result<String, AuthError> {
        let (collection_id, id) = match principal {
            Principal::Superuser { id } => (SUPERUSERS_ID.to_string(), id.clone()),
            Principal::Record { collection_id, id } => (collection_id.clone(), id.clone()),
            Principal::Anonymous | Principal::ApiKey { .. } => return Err(AuthError::Unauthenticated),
        };
        let stored =
            self.records.load_stored(&collection_id, &id).await?.ok_or(AuthError::Unauthenticated)?;
        let token_key = stored.get("tokenKey").and_then(Value::as_str).unwrap_or_default();
        let claims = token::Claims {
            id,
            collection_id,
            kind: "file".into(),
            refreshable: false,
            exp: now_unix() + i64::try_from(ttl_secs).unwrap_or(i64::MAX / 2),
            jti: crate::util::id::random_string(12),
            email: String::new(),
        };
        Ok(token::sign(&claims, &self.secret, token_key))
    }

    /// The holder of a file token (the `token` query parameter of a download), with what
    /// `@request.auth` sees; anonymous when the token is invalid, expired or revoked.
    pub async fn identify_file_token(&self, token: &str) -> (Principal, Option<Stored>) {
        let anonymous = (Principal::Anonymous, None);
        let Some(claims) = token::peek(token).filter(|c| c.kind == "file") else {
            return anonymous;
        };
        let Ok(Some(mut stored)) = self.records.load_stored(&claims.collection_id, &claims.id).await else {
            return anonymous;
        };
        let token_key = stored.get("tokenKey").and_then(Value::as_str).unwrap_or_default();
        if token_key.is_empty()
            || token::verify_kind(token, &self.secret, token_key, now_unix(), "file").is_none()
        {
            return anonymous;
        }
        stored.remove("password");
        stored.remove("tokenKey");
        stored.insert("collectionId".into(), Value::String(claims.collection_id.clone()));
        if let Ok(entry) = self.records.collection(&claims.collection_id) {
            stored.insert("collectionName".into(), Value::String(entry.collection.name.clone()));
        }
        let principal = if claims.collection_id == SUPERUSERS_ID {
            Principal::Superuser { id: claims.id }
        } else {
            Principal::Record { collection_id: claims.collection_id, id: claims.id }
        };
        (principal, Some(stored))
    }

    fn session(&self, collection_id: &str, stored: &Stored) -> Result<Session, AuthError> {
        let entry = self.records.collection(collection_id)?;
        let duration = entry.collection.auth.as_ref().map(|a| a.auth_token.duration).unwrap_or(86_400);
        self.session_for(collection_id, stored, duration, true)
    }

    fn session_for(
        &self,
        collection_id: &str,
        stored: &Stored,
        duration: u64,
        refreshable: bool,
    ) -> Result<Session, AuthError> {
        let entry = self.records.collection(collection_id)?;
        let id = stored.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
        let token_key = stored.get("tokenKey").and_then(Value::as_str).unwrap_or_default();
        let claims = token::Claims {
            id,
            collection_id: entry.collection.id.clone(),
            kind: "auth".into(),
            refreshable,
            exp: now_unix() + i64::try_from(duration).unwrap_or(i64::MAX / 2),
            jti: crate::util::id::random_string(12),
            email: String::new(),
        };
        let token = token::sign(&claims, &self.secret, token_key);
        // The auth response shows the signed-in record its own email whatever its
        // emailVisibility, as PocketBase does.
        let record = record::to_json(&entry.collection, stored, true, &FieldsFilter::default());
        Ok(Session { token, record })
    }

    /// Appends an audit entry in its own small write; a failure is logged, not returned (the
    /// caller's answer does not depend on it).
    async fn audit(&self, event: Event) {
        let result = self
            .records
            .store()
            .write(move |tx: &mut WriteTx<'_>| -> Result<(), crate::store::StoreError> {
                audit::append(tx, event)
            })
            .await;
        if let Err(err) = result {
            tracing::warn!(error = %err, "could not write an audit entry");
        }
    }

    /// Whether the record may sign in under its collection's auth rule (see [`auth_rule_refusal`]).
    async fn passes_auth_rule(&self, collection_id: &str, stored: &Stored, request: &RequestInfo) -> bool {
        let Ok(entry) = self.records.collection(collection_id) else {
            return false;
        };
        let rule = entry.collection.auth.as_ref().and_then(|a| a.auth_rule.clone());
        let Some(rule) = rule else {
            return collection_id == SUPERUSERS_ID;
        };
        if rule.trim().is_empty() {
            return true;
        }
        let catalog = self.records.catalog();
        let Ok(filter) = Filter::compile(&rule, &entry.collection, &catalog, true) else {
            return false;
        };
        let (stored, request) = (stored.clone(), request.clone());
        self.records
            .store()
            .read(move |tx| -> Result<bool, AuthError> {
                let env = Env { catalog: &catalog, source: tx };
                Ok(filter.matches(&entry.collection, &stored, &request, &Now::current(), Some(&env)))
            })
            .await
            .unwrap_or(false)
    }

    /// Password sign-in to an auth collection. Success and failure go to the audit log.
    pub async fn login(
        &self,
        collection: &str,
        identity: &str,
        password: &str,
        request: &RequestInfo,
        ip: &str,
    ) -> Result<Session, AuthError> {
        let entry = self.records.collection(collection)?;
        let Some(settings) = entry.collection.auth.as_ref() else {
            return Err(AuthError::Records(RecordsError::BadRequest(format!(
                "{} is not an auth collection.",
                entry.collection.name
            ))));
        };
        if !settings.password_auth.enabled {
            return Err(AuthError::Forbidden("Password sign-in is disabled for this collection.".into()));
        }
        let collection_id = entry.collection.id.clone();
        // Each identity field in order (PocketBase's passwordAuth.identityFields); the hash
        // check below runs whether or not one matched, so unknown accounts take as long.
        let mut stored = None;
        for field in &settings.password_auth.identity_fields {
            stored = self.records.find_by_identity(&collection_id, field, identity.trim()).await?;
            if stored.is_some() {
                break;
            }
        }
        let hash = stored.as_ref().and_then(|s| s.get("password")).and_then(Value::as_str).map(String::from);
        let ok = self.records.hasher().verify(password.to_string(), hash).await;
        let target = identity.trim().to_lowercase();
        match stored {
            Some(stored) if ok => {
                let id = stored.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
                let actor = actor_for(&collection_id, &id);
                if !self.passes_auth_rule(&collection_id, &stored, request).await {
                    self.audit(
                        Event::new("auth.login", actor, ip, target)
                            .failed()
                            .detail(json!({"collectionId": collection_id, "reason": "authRule"})),
                    )
                    .await;
                    self.logins.failed.inc();
                    return Err(auth_rule_refusal());
                }
                self.audit(
                    Event::new("auth.login", actor, ip, target)
                        .detail(json!({"collectionId": collection_id})),
                )
                .await;
                tracing::info!(collection = %entry.collection.name, "sign-in succeeded");
                self.logins.ok.inc();
                self.session(&collection_id, &stored)
            }
            _ => {
                self.audit(
                    Event::new(
                        "auth.login",
                        Actor { kind: "anonymous".into(), ..Actor::default() },
                        ip,
                        target,
                    )
                    .failed()
                    .detail(json!({"collectionId": collection_id, "reason": "credentials"})),
                )
                .await;
                tracing::info!(collection = %entry.collection.name, "sign-in failed");
                self.logins.failed.inc();
                Err(AuthError::InvalidCredentials)
            }
        }
    }

    /// A fresh token for the caller's own record, if it still passes its collection's auth
    /// rule (a record banned since its sign-in gets no new token). Impersonation tokens are
    /// not refreshable.
    pub async fn refresh(
        &self,
        header: Option<&str>,
        collection: &str,
        request: &RequestInfo,
    ) -> Result<Session, AuthError> {
        let entry = self.records.collection(collection)?;
        let (principal, _) = self.identify(header).await;
        let (collection_id, id) = match &principal {
            Principal::Superuser { id } => (SUPERUSERS_ID.to_string(), id.clone()),
            Principal::Record { collection_id, id } => (collection_id.clone(), id.clone()),
            Principal::Anonymous | Principal::ApiKey { .. } => return Err(AuthError::Unauthenticated),
        };
        if collection_id != entry.collection.id {
            return Err(AuthError::Unauthenticated);
        }
        if header.map(bare_token).and_then(token::peek).is_some_and(|c| !c.refreshable) {
            return Err(AuthError::Forbidden("This token cannot be refreshed.".into()));
        }
        let stored =
            self.records.load_stored(&collection_id, &id).await?.ok_or(AuthError::Unauthenticated)?;
        if !self.passes_auth_rule(&collection_id, &stored, request).await {
            return Err(auth_rule_refusal());
        }
        self.session(&collection_id, &stored)
    }

    /// Signs out: revokes the presented token until it would have expired, or with `all`,
    /// every token of the record (its token key is rotated).
    pub async fn logout(&self, header: Option<&str>, all: bool, ip: &str) -> Result<(), AuthError> {
        let (principal, _) = self.identify(header).await;
        let (collection_id, id) = match &principal {
            Principal::Superuser { id } => (SUPERUSERS_ID.to_string(), id.clone()),
            Principal::Record { collection_id, id } => (collection_id.clone(), id.clone()),
            Principal::Anonymous | Principal::ApiKey { .. } => return Err(AuthError::Unauthenticated),
        };
        let token = header.map(bare_token).unwrap_or_default().to_string();
        let claims = token::peek(&token).ok_or(AuthError::Unauthenticated)?;
        let event = Event::new("auth.logout", actor_for(&collection_id, &id), ip, id.clone())
            .detail(json!({"collectionId": collection_id, "all": all}));
        if all {
            self.records.rotate_token_key(&collection_id, &id, Some(event)).await?;
            return Ok(());
        }
        let key = revoked_key(&token, claims.exp);
        self.records
            .store()
            .write(move |tx: &mut WriteTx<'_>| -> Result<(), AuthError> {
                tx.put(Table::RevokedTokens, &key, Vec::new());
                prune_revoked(tx)?;
                audit::append(tx, event)?;
                Ok(())
            })
            .await?;
        // Forget every remembered verification, so the revoked token fails at once; the new
        // generation also voids an entry a request racing this one inserts after the removal
        // (it read the generation before the revocation was committed).
        self.records.note_token_revoked();
        if let Ok(mut cache) = self.verified.lock() {
            cache.remove(&token);
        }
        Ok(())
    }

    async fn is_revoked(&self, token: &str, exp: i64) -> bool {
        let key = revoked_key(token, exp);
        self.records
            .store()
            .read(move |tx| tx.get(Table::RevokedTokens, &key).map_err(AuthError::from))
            .await
            .map(|v| v.is_some())
            .unwrap_or(true)
    }

    /// A superuser signs in as another account: a non-refreshable token for `duration`
    /// seconds (default: the collection's token duration).
    pub async fn impersonate(
        &self,
        principal: &Principal,
        collection: &str,
        record_id: &str,
        duration: Option<u64>,
        ip: &str,
    ) -> Result<Session, AuthError> {
        if !principal.is_superuser() {
            return Err(AuthError::Forbidden("Only superusers can impersonate.".into()));
        }
        let entry = self.records.collection(collection)?;
        let Some(settings) = entry.collection.auth.as_ref() else {
            return Err(AuthError::Records(RecordsError::BadRequest(format!(
                "{} is not an auth collection.",
                entry.collection.name
            ))));
        };
        let duration = duration.filter(|d| *d > 0).unwrap_or(settings.auth_token.duration).min(31_536_000);
        let stored = self
            .records
            .load_stored(&entry.collection.id, record_id)
            .await?
            .ok_or_else(|| RecordsError::NotFound("The requested resource wasn't found.".into()))?;
        self.audit(
            Event::new("auth.impersonate", Actor::of(principal), ip, record_id.to_string())
                .detail(json!({"collectionId": entry.collection.id, "duration": duration})),
        )
        .await;
        self.session_for(&entry.collection.id, &stored, duration, false)
    }

    /// Creates the superuser, or sets the password of the existing one with that email.
    pub async fn upsert_superuser(&self, email: &str, password: &str) -> Result<Value, AuthError> {
        let cli = Principal::Superuser { id: String::new() };
        let mut body = Map::new();
        body.insert("password".into(), json!(password));
        body.insert("passwordConfirm".into(), json!(password));
        match self.records.find_auth_record(SUPERUSERS_ID, email).await? {
            Some(existing) => {
                let id = existing.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
                Ok(self
                    .records
                    .update_record(
                        &cli,
                        SUPERUSERS_ID,
                        &id,
                        RecordWrite::body(body),
                        &RequestInfo::default(),
                        None,
                    )
                    .await?)
            }
            None => {
                body.insert("email".into(), json!(email));
                body.insert("verified".into(), json!(true));
                let record = self
                    .records
                    .create_record(&cli, SUPERUSERS_ID, RecordWrite::body(body), &RequestInfo::default())
                    .await?;
                self.clear_setup_token().await?;
                Ok(record)
            }
        }
    }

    /// True while no superuser exists.
    pub async fn setup_needed(&self) -> Result<bool, AuthError> {
        Ok(self.records.count(SUPERUSERS_ID).await? == 0)
    }

    /// When no superuser exists, makes a new one-time setup token (replacing any older one)
    /// and returns it; its hash is stored. Returns `None` when setup is done.
    pub async fn issue_setup_token(&self) -> Result<Option<String>, AuthError> {
        if !self.setup_needed().await? {
            return Ok(None);
        }
        let mut raw = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let hash = sha256_hex(token.as_bytes());
        self.records
            .store()
            .write(move |tx: &mut WriteTx<'_>| -> Result<(), AuthError> {
                tx.put(Table::Meta, META_SETUP_TOKEN_HASH, hash.into_bytes());
                Ok(())
            })
            .await?;
        Ok(Some(token))
    }

    async fn clear_setup_token(&self) -> Result<(), AuthError> {
        self.records
            .store()
            .write(|tx: &mut WriteTx<'_>| -> Result<(), AuthError> {
                tx.delete(Table::Meta, META_SETUP_TOKEN_HASH);
                Ok(())
            })
            .await
    }

    /// Uses the setup token once to create the first superuser, and signs them in.
    pub async fn complete_setup(
        &self,
        setup_token: &str,
        email: &str,
        password: &str,
    ) -> Result<Session, AuthError> {
        let _guard = self.setup_lock.lock().await;
        if !self.setup_needed().await? {
            return Err(AuthError::SetupRefused("Setup is already complete.".into()));
        }
        let stored_hash = self
            .records
            .store()
            .read(|tx| tx.get(Table::Meta, META_SETUP_TOKEN_HASH).map_err(AuthError::from))
            .await?;
        let given = sha256_hex(setup_token.trim().as_bytes());
        let matches = stored_hash.is_some_and(|h| constant_time_eq(&h, given.as_bytes()));
        if !matches {
            return Err(AuthError::SetupRefused("The setup token is invalid or was already used.".into()));
        }
        if email.trim().is_empty() {
            return Err(AuthError::Records(RecordsError::field(
                "Failed to create the superuser.",
                "email",
                FieldError::new("validation_required", "Cannot be blank."),
            )));
        }
        self.upsert_superuser(email.trim(), password).await?;
        self.login(SUPERUSERS_ID, email.trim(), password, &RequestInfo::default(), "").await
    }
}

/// The token in an `Authorization` value (`<token>` or `Bearer <token>`).
fn bare_token(raw: &str) -> &str {
    let raw = raw.trim();
    raw.strip_prefix("Bearer ").or_else(|| raw.strip_prefix("bearer ")).unwrap_or(raw).trim()
}

fn actor_for(collection_id: &str, id: &str) -> Actor {
    if collection_id == SUPERUSERS_ID {
        Actor { kind: "superuser".into(), id: id.to_string(), ..Actor::default() }
    } else {
        Actor { kind: "record".into(), id: id.to_string(), collection_id: collection_id.to_string() }
    }
}

/// `RevokedTokens` key: expiry (i64 BE, so expired entries come first) + SHA-256 of the token.
fn revoked_key(token: &str, exp: i64) -> Vec<u8> {
    let mut key = exp.to_be_bytes().to_vec();
    key.extend_from_slice(&Sha256::digest(token.as_bytes()));
    key
}

/// Deletes a few revoked-token entries whose tokens have expired anyway.
fn prune_revoked(tx: &mut WriteTx<'_>) -> Result<(), AuthError> {
    let now = now_unix().to_be_bytes();
    let mut expired = Vec::new();
    tx.scan_prefix(Table::RevokedTokens, b"", None, |k, _| {
        if k.len() < 8 || k[..8] >= now[..] || expired.len() >= 64 {
            return ScanControl::Stop;
        }
        expired.push(k.to_vec());
        ScanControl::Continue
    })?;
    for k in expired {
        tx.delete(Table::RevokedTokens, &k);
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The answer to a correct password (or code) whose record fails the collection's
/// `authRule`: PocketBase's 403, with the likeliest cause named, since the credentials are
/// right and "failed to authenticate" would send the user hunting for a typo.
pub(crate) fn auth_rule_refusal() -> AuthError {
    AuthError::Forbidden(
        "The request doesn't satisfy the collection requirements to authenticate (its authRule; \
         for example `verified = true` while the email is not verified yet)."
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::password::PasswordHasher;
    use crate::store::{Store, StoreOptions};

    /// A request that verified a token before a sign-out committed, and caches it after the
    /// sign-out cleared the cache, must not keep the token alive.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_verification_cached_by_a_request_racing_sign_out_is_void() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data.redb");
        let store = tokio::task::spawn_blocking(move || Store::open(&path, &StoreOptions::default()))
            .await
            .expect("join")
            .expect("store");
        let records = Records::open(store, PasswordHasher::new(1), Vec::new()).await.expect("records");
        let auth = Auth::open(records).await.expect("auth");
        auth.upsert_superuser("root@example.com", "a-long-password").await.expect("superuser");
        let session = auth
            .login("_superusers", "root@example.com", "a-long-password", &RequestInfo::default(), "")
            .await
            .expect("login");
        let header = session.token.clone();
        let (principal, record) = auth.identify(Some(&header)).await;
        assert!(principal.is_superuser());
        // What the racing request holds: its verification, with the generation it read
        // before the revocation was committed.
        let stale = Verified {
            principal,
            record: record.expect("record"),
            generation: auth.records.auth_generation(),
            until: std::time::Instant::now() + VERIFIED_TTL,
        };
        auth.logout(Some(&header), false, "").await.expect("logout");
        // The racing request inserts after the sign-out removed the entry.
        auth.verified.lock().expect("cache").insert(header.clone(), stale);
        let (after, _) = auth.identify(Some(&header)).await;
        assert_eq!(after, Principal::Anonymous, "a revoked token answered from the cache");
    }
}

//! Account flows that go through email: verification, password reset, email change and
//! one-time codes (OTP sign-in).
//!
//! Verification, reset and email-change tokens are JWTs signed with a key derived from the
//! record's token key *and the state the token changes* (the unverified email, the current
//! password hash, the current email). Using a token changes that state, so every token is
//! single-use without storing it; each also expires (the collection's token durations). The
//! confirming update re-checks the token against the record it writes (a guarded update), so
//! two concurrent confirmations cannot both succeed.
//!
//! One-time codes are stored (hashed) in `auth_otps` together with the queued email in one
//! transaction; a code works once, for the collection's OTP duration, and is deleted after
//! five wrong tries.
//!
//! Request endpoints answer the same whether or not the account exists.

use std::sync::Arc;

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::{actor_for, now_unix, token, Auth, AuthError, Session};
use crate::audit::{Actor, Event};
use crate::auth::Principal;
use crate::mail::{Mail, OutgoingMail, Template};
use crate::records::collection::SUPERUSERS_ID;
use crate::records::filter::RequestInfo;
use crate::records::record::{self, FieldsFilter, Stored};
use crate::records::service::RecordGuard;
use crate::records::RecordWrite;
use crate::records::{FieldError, RecordsError};
use crate::store::{Table, WriteTx};
use crate::util::id;

/// Wrong codes after which a one-time password is deleted.
const OTP_MAX_TRIES: u32 = 5;

/// A stored one-time password.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Otp {
    pub collection_id: String,
    pub record_id: String,
    /// SHA-256 (hex) of `otp id` + `code`.
    pub hash: String,
    /// Unix seconds.
    pub expires: i64,
    pub tries: u32,
}

/// What a purpose token is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Verification,
    PasswordReset,
    EmailChange,
}

impl Purpose {
    fn kind(self) -> &'static str {
        match self {
            Purpose::Verification => "verification",
            Purpose::PasswordReset => "passwordReset",
            Purpose::EmailChange => "emailChange",
        }
    }

    /// The signing key: the record's token key plus the state this token will change.
    fn key(self, stored: &Stored) -> String {
        let field = |name: &str| stored.get(name).and_then(Value::as_str).unwrap_or_default().to_string();
        let state = match self {
            Purpose::Verification => format!("{}|{}", field("email").to_lowercase(), stored_verified(stored)),
            Purpose::PasswordReset => field("password"),
            Purpose::EmailChange => field("email").to_lowercase(),
        };
        format!("{}|{}|{state}", field("tokenKey"), self.kind())
    }
}

fn email_of(stored: &Stored) -> String {
    stored.get("email").and_then(Value::as_str).unwrap_or_default().to_string()
}

fn stored_verified(stored: &Stored) -> bool {
    stored.get("verified").and_then(Value::as_bool).unwrap_or(false)
}

fn sha256_hex(input: &[u8]) -> String {
    Sha256::digest(input).iter().map(|b| format!("{b:02x}")).collect()
}

fn invalid_token() -> AuthError {
    AuthError::Records(RecordsError::field(
        "Invalid or expired token.",
        "token",
        FieldError::new("validation_invalid_token", "Invalid or expired token."),
    ))
}

fn su() -> Principal {
    Principal::Superuser { id: String::new() }
}

impl Auth {
    fn purpose_token(
        &self,
        purpose: Purpose,
        collection_id: &str,
        stored: &Stored,
        email: &str,
        secs: u64,
    ) -> String {
        let claims = token::Claims {
            id: stored.get("id").and_then(Value::as_str).unwrap_or_default().to_string(),
            collection_id: collection_id.to_string(),
            kind: purpose.kind().into(),
            refreshable: false,
            exp: now_unix() + i64::try_from(secs).unwrap_or(i64::MAX / 2),
            jti: id::random_string(12),
            email: email.to_string(),
        };
        token::sign(&claims, &self.secret, &purpose.key(stored))
    }

    /// Reads a purpose token's claims (unverified) for a collection, or the 400.
    fn peek_purpose(
        &self,
        raw: &str,
        collection_id: &str,
        purpose: Purpose,
    ) -> Result<token::Claims, AuthError> {
        let claims = token::peek(raw.trim()).ok_or_else(invalid_token)?;
        if claims.kind != purpose.kind() || claims.collection_id != collection_id {
            return Err(invalid_token());
        }
        Ok(claims)
    }

    /// A guard that accepts the record only while `raw` is a valid token for its state.
    fn token_guard(&self, raw: &str, purpose: Purpose) -> RecordGuard {
        let (secret, raw) = (self.secret.clone(), raw.trim().to_string());
        Arc::new(move |current: &Stored| {
            token::verify_kind(&raw, &secret, &purpose.key(current), now_unix(), purpose.kind())
                .map(|_| ())
                .ok_or_else(|| match invalid_token() {
                    AuthError::Records(e) => e,
                    _ => RecordsError::BadRequest("Invalid or expired token.".into()),
                })
        })
    }

    fn auth_collection(
        &self,
        collection: &str,
    ) -> Result<Arc<crate::records::catalog::CatalogEntry>, AuthError> {
        let entry = self.records.collection(collection)?;
        if !entry.collection.is_auth() {
            return Err(AuthError::Records(RecordsError::BadRequest(format!(
                "{} is not an auth collection.",
                entry.collection.name
            ))));
        }
        Ok(entry)
    }

    fn settings(&self, collection_id: &str) -> crate::records::collection::AuthSettings {
        self.records
            .collection(collection_id)
            .ok()
            .and_then(|e| e.collection.auth.clone())
            .unwrap_or_default()
    }

    fn record_vars(&self, collection_id: &str, stored: &Stored) -> Value {
        match self.records.collection(collection_id) {
            Ok(entry) => record::to_json(&entry.collection, stored, false, &FieldsFilter::default()),
            Err(_) => Value::Object(Map::new()),
        }
    }

    /// Emails `purpose`'s token for `stored` to `to` with `template` (`record` extended by
    /// `extra` in the template variables).
    #[allow(clippy::too_many_arguments)]
    async fn send_token(
        &self,
        mail: &Mail,
        collection_id: &str,
        stored: &Stored,
        purpose: Purpose,
        template: Template,
        to: String,
        seconds: u64,
        extra: Option<(&str, Value)>,
    ) -> Result<(), AuthError> {
        let token = self.purpose_token(purpose, collection_id, stored, &to, seconds);
        let mut record_vars = self.record_vars(collection_id, stored);
        if let (Some(map), Some((key, value))) = (record_vars.as_object_mut(), extra) {
            map.insert(key.to_string(), value);
        }
        let mut vars = Map::new();
        vars.insert("token".into(), json!(token));
        vars.insert("record".into(), record_vars);
        mail.enqueue(OutgoingMail::template(to, template, vars)).await?;
        Ok(())
    }

    /// Applies `body` to the record a `purpose` token names, if the token still holds for it
    /// (checked inside the update); audits `action` when given.
    async fn confirm_token(
        &self,
        collection: &str,
        raw: &str,
        purpose: Purpose,
        body: impl FnOnce(&token::Claims) -> Map<String, Value>,
        audit: Option<(&'static str, &str)>,
    ) -> Result<(), AuthError> {
        let entry = self.auth_collection(collection)?;
        let claims = self.peek_purpose(raw, &entry.collection.id, purpose)?;
        let guard = self.token_guard(raw, purpose);
        let request = RequestInfo::default();
        self.records
            .update_record(
                &su(),
                &entry.collection.id,
                &claims.id,
                RecordWrite::body(body(&claims)),
                &request,
                Some(guard),
            )
            .await
            .map_err(hide_missing)?;
        if let Some((action, ip)) = audit {
            let actor = actor_for(&entry.collection.id, &claims.id);
            let event = Event::new(action, actor, ip, claims.id.clone())
                .detail(json!({"collectionId": entry.collection.id}));
            self.audit(event).await;
        }
        Ok(())
    }

    /// The account an email-addressed request names, or `None` (the request then does nothing).
    async fn account(&self, collection: &str, email: &str) -> Result<Option<(String, Stored)>, AuthError> {
        let entry = self.auth_collection(collection)?;
        Ok(self
            .records
            .find_auth_record(&entry.collection.id, email.trim())
            .await?
            .map(|stored| (entry.collection.id.clone(), stored)))
    }

    /// Emails a verification link to an unverified account (silently nothing otherwise).
    pub async fn request_verification(
        &self,
        mail: &Mail,
        collection: &str,
        email: &str,
    ) -> Result<(), AuthError> {
        let Some((collection_id, stored)) = self.account(collection, email).await? else {
            return Ok(());
        };
        if stored_verified(&stored) {
            return Ok(());
        }
        let seconds = self.settings(&collection_id).verification_token.duration;
        let to = email_of(&stored);
        let (purpose, template) = (Purpose::Verification, Template::Verification);
        self.send_token(mail, &collection_id, &stored, purpose, template, to, seconds, None).await
    }

    /// Marks the account verified, once.
    pub async fn confirm_verification(&self, collection: &str, raw: &str) -> Result<(), AuthError> {
        let body = |_: &token::Claims| Map::from_iter([("verified".to_string(), json!(true))]);
        self.confirm_token(collection, raw, Purpose::Verification, body, None).await
    }

    /// Emails a password-reset link (silently nothing for unknown accounts).
    pub async fn request_password_reset(
        &self,
        mail: &Mail,
        collection: &str,
        email: &str,
    ) -> Result<(), AuthError> {
        let Some((collection_id, stored)) = self.account(collection, email).await? else {
            return Ok(());
        };
        let seconds = self.settings(&collection_id).password_reset_token.duration;
        let to = email_of(&stored);
        let (purpose, template) = (Purpose::PasswordReset, Template::PasswordReset);
        self.send_token(mail, &collection_id, &stored, purpose, template, to, seconds, None).await
    }

    /// Sets a new password with a reset token; every earlier token of the account dies.
    pub async fn confirm_password_reset(
        &self,
        collection: &str,
        raw: &str,
        password: &str,
        confirm: &str,
        ip: &str,
    ) -> Result<(), AuthError> {
        let body = |_: &token::Claims| {
            Map::from_iter([
                ("password".to_string(), json!(password)),
                ("passwordConfirm".to_string(), json!(confirm)),
            ])
        };
        self.confirm_token(collection, raw, Purpose::PasswordReset, body, Some(("auth.passwordReset", ip)))
            .await
    }

    /// Emails a confirmation link for a new address to that address (signed-in owners only).
    pub async fn request_email_change(
        &self,
        mail: &Mail,
        principal: &Principal,
        collection: &str,
        new_email: &str,
    ) -> Result<(), AuthError> {
        let entry = self.auth_collection(collection)?;
        let Principal::Record { collection_id, id } = principal else {
            return Err(match principal {
                Principal::Anonymous => AuthError::Unauthenticated,
                _ => AuthError::Forbidden("Only the account's owner can change its email.".into()),
            });
        };
        if *collection_id != entry.collection.id {
            return Err(AuthError::Forbidden("The token belongs to another collection.".into()));
        }
        let new_email = new_email.trim().to_string();
        let email_field = entry.collection.field("email").cloned();
        if let Some(field) = email_field {
            field.normalize(&json!(new_email)).map_err(|e| {
                AuthError::Records(RecordsError::field("Failed to request the email change.", "newEmail", e))
            })?;
        }
        if self.records.find_auth_record(&entry.collection.id, &new_email).await?.is_some() {
            return Err(AuthError::Records(RecordsError::field(
                "Failed to request the email change.",
                "newEmail",
                FieldError::new("validation_email_exists", "The email is already in use."),
            )));
        }
        let stored =
            self.records.load_stored(&entry.collection.id, id).await?.ok_or(AuthError::Unauthenticated)?;
        let seconds = self.settings(&entry.collection.id).email_change_token.duration;
        let extra = Some(("newEmail", json!(new_email)));
        let (purpose, template) = (Purpose::EmailChange, Template::EmailChange);
        self.send_token(
            mail,
            &entry.collection.id,
            &stored,
            purpose,
            template,
            new_email.clone(),
            seconds,
            extra,
        )
        .await
    }

    /// Switches to the new email (with the account password); the account becomes verified
    /// and every earlier token dies.
    pub async fn confirm_email_change(
        &self,
        collection: &str,
        raw: &str,
        password: &str,
        ip: &str,
    ) -> Result<(), AuthError> {
        let entry = self.auth_collection(collection)?;
        let claims = self.peek_purpose(raw, &entry.collection.id, Purpose::EmailChange)?;
        let stored =
            self.records.load_stored(&entry.collection.id, &claims.id).await?.ok_or_else(invalid_token)?;
        let hash = stored.get("password").and_then(Value::as_str).map(String::from);
        if !self.records.hasher().verify(password.to_string(), hash).await {
            return Err(AuthError::Records(RecordsError::field(
                "Failed to confirm the email change.",
                "password",
                FieldError::new("validation_invalid_password", "Missing or invalid account password."),
            )));
        }
        let body = |c: &token::Claims| {
            Map::from_iter([("email".to_string(), json!(c.email)), ("verified".to_string(), json!(true))])
        };
        self.confirm_token(collection, raw, Purpose::EmailChange, body, Some(("auth.emailChange", ip))).await
    }

    /// The id of the auth collection an email-addressed request (verification, password
    /// reset, one-time code) names, after the checks that do not depend on the account: the
    /// rest runs after the answer (see `api::auth`), so the answer's timing cannot tell
    /// whether an account exists.
    pub fn account_request_target(&self, collection: &str, otp: bool) -> Result<String, AuthError> {
        let entry = self.auth_collection(collection)?;
        if otp && !entry.collection.auth.as_ref().is_some_and(|a| a.otp.enabled) {
            return Err(AuthError::Forbidden(
                "One-time password sign-in is disabled for this collection.".into(),
            ));
        }
        Ok(entry.collection.id.clone())
    }

    /// A new OTP id. Unknown accounts get one too (that never works), so the answer does not
    /// reveal who has an account.
    pub fn new_otp_id(&self) -> String {
        id::random_string(15)
    }

    /// Emails a one-time code for `otp_id` (from [`Auth::new_otp_id`]) to the account, if
    /// there is one.
    pub async fn request_otp(
        &self,
        mail: &Mail,
        collection: &str,
        email: &str,
        otp_id: String,
    ) -> Result<(), AuthError> {
        let entry = self.auth_collection(collection)?;
        let settings = entry.collection.auth.clone().unwrap_or_default();
        if !settings.otp.enabled {
            return Err(AuthError::Forbidden(
                "One-time password sign-in is disabled for this collection.".into(),
            ));
        }
        let Some(stored) = self.records.find_auth_record(&entry.collection.id, email.trim()).await? else {
            return Ok(());
        };
        let code: String = {
            let mut rng = rand::thread_rng();
            (0..settings.otp.length).map(|_| char::from(b'0' + rng.gen_range(0..10u8))).collect()
        };
        let otp = Otp {
            collection_id: entry.collection.id.clone(),
            record_id: stored.get("id").and_then(Value::as_str).unwrap_or_default().to_string(),
            hash: sha256_hex(format!("{otp_id}{code}").as_bytes()),
            expires: now_unix() + i64::try_from(settings.otp.duration).unwrap_or(180),
            tries: 0,
        };
        let to = stored.get("email").and_then(Value::as_str).unwrap_or_default().to_string();
        let mut vars = Map::new();
        vars.insert("otp".into(), json!(code));
        vars.insert("record".into(), self.record_vars(&entry.collection.id, &stored));
        let outgoing = OutgoingMail::template(to, Template::Otp, vars);
        let bytes = serde_json::to_vec(&otp)
            .map_err(|e| AuthError::Records(RecordsError::Internal(e.to_string())))?;
        let (mail, key) = (mail.clone(), otp_id.clone());
        self.records
            .store()
            .write(move |tx: &mut WriteTx<'_>| -> Result<(), AuthError> {
                tx.put(Table::AuthOtps, key.as_bytes(), bytes);
                mail.enqueue_in(tx, outgoing)?;
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// Signs in with a one-time code (once). A correct code also verifies the account: it
    /// proves the email reaches its owner.
    pub async fn auth_with_otp(
        &self,
        collection: &str,
        otp_id: &str,
        code: &str,
        request: &RequestInfo,
        ip: &str,
    ) -> Result<Session, AuthError> {
        let entry = self.auth_collection(collection)?;
        let collection_id = entry.collection.id.clone();
        let (key, given) =
            (otp_id.trim().to_string(), sha256_hex(format!("{}{}", otp_id.trim(), code.trim()).as_bytes()));
        let now = now_unix();
        let outcome = self
            .records
            .store()
            .write(move |tx: &mut WriteTx<'_>| -> Result<Option<String>, AuthError> {
                let Some(bytes) = tx.get(Table::AuthOtps, key.as_bytes())? else {
                    return Ok(None);
                };
                let mut otp: Otp = serde_json::from_slice(&bytes)
                    .map_err(|e| AuthError::Records(RecordsError::Internal(e.to_string())))?;
                if otp.expires <= now || otp.collection_id != collection_id {
                    tx.delete(Table::AuthOtps, key.as_bytes());
                    return Ok(None);
                }
                if !super::constant_time_eq(otp.hash.as_bytes(), given.as_bytes()) {
                    otp.tries += 1;
                    if otp.tries >= OTP_MAX_TRIES {
                        tx.delete(Table::AuthOtps, key.as_bytes());
                    } else {
                        let bytes = serde_json::to_vec(&otp)
                            .map_err(|e| AuthError::Records(RecordsError::Internal(e.to_string())))?;
                        tx.put(Table::AuthOtps, key.as_bytes(), bytes);
                    }
                    return Ok(None);
                }
                tx.delete(Table::AuthOtps, key.as_bytes());
                Ok(Some(otp.record_id))
            })
            .await?;
        let failed = |reason: &str| {
            Event::new(
                "auth.otp",
                Actor { kind: "anonymous".into(), ..Actor::default() },
                ip,
                otp_id.to_string(),
            )
            .failed()
            .detail(json!({"collectionId": entry.collection.id, "reason": reason}))
        };
        let Some(record_id) = outcome else {
            self.audit(failed("code")).await;
            return Err(AuthError::InvalidCredentials);
        };
        let Some(mut stored) = self.records.load_stored(&entry.collection.id, &record_id).await? else {
            return Err(AuthError::InvalidCredentials);
        };
        if !self.passes_auth_rule(&entry.collection.id, &stored, request).await {
            self.audit(failed("authRule")).await;
            return Err(super::auth_rule_refusal());
        }
        if !stored_verified(&stored) {
            // The code proves who owns the email; the password (if any) was set by whoever
            // registered the address, unproven. Account pre-hijacking: an attacker signs up
            // with the victim's email first and keeps a working password. So verifying by
            // code also replaces the password with a random one (the owner sets their own
            // by password reset) and, through it, rotates the token key (ending every other
            // session), as PocketBase does for unverified accounts linked by OAuth2.
            let mut body = Map::new();
            body.insert("verified".into(), json!(true));
            if stored.get("password").and_then(Value::as_str).is_some_and(|p| !p.is_empty()) {
                let random = id::random_string(40);
                body.insert("password".into(), json!(random));
                body.insert("passwordConfirm".into(), json!(random));
            }
            self.records
                .update_record(
                    &su(),
                    &entry.collection.id,
                    &record_id,
                    RecordWrite::body(body),
                    &RequestInfo::default(),
                    None,
                )
                .await?;
            stored = self
                .records
                .load_stored(&entry.collection.id, &record_id)
                .await?
                .ok_or(AuthError::InvalidCredentials)?;
        }
        self.audit(
            Event::new("auth.otp", actor_for(&entry.collection.id, &record_id), ip, record_id.clone())
                .detail(json!({"collectionId": entry.collection.id})),
        )
        .await;
        self.session(&entry.collection.id, &stored)
    }
}

/// A confirmation for a record that no longer exists is just an invalid token.
fn hide_missing(err: RecordsError) -> AuthError {
    match err {
        RecordsError::NotFound(_) => invalid_token(),
        other => AuthError::Records(other),
    }
}

/// The `backbone superuser create|update|delete|otp` operations (PocketBase's), beside
/// [`Auth::upsert_superuser`].
impl Auth {
    /// Creates a superuser; refused when one with this email exists.
    pub async fn create_superuser(&self, email: &str, password: &str) -> Result<Value, AuthError> {
        if self.records.find_auth_record(SUPERUSERS_ID, email.trim()).await?.is_some() {
            return Err(AuthError::Forbidden(format!(
                "A superuser with the email {email:?} already exists."
            )));
        }
        self.upsert_superuser(email, password).await
    }

    /// Sets the password of an existing superuser; refused when there is none.
    pub async fn update_superuser(&self, email: &str, password: &str) -> Result<Value, AuthError> {
        if self.records.find_auth_record(SUPERUSERS_ID, email.trim()).await?.is_none() {
            return Err(missing_superuser(email));
        }
        self.upsert_superuser(email, password).await
    }

    /// Deletes a superuser; the only one cannot be deleted (nobody could administer).
    pub async fn delete_superuser(&self, email: &str) -> Result<(), AuthError> {
        let Some(stored) = self.records.find_auth_record(SUPERUSERS_ID, email.trim()).await? else {
            return Err(missing_superuser(email));
        };
        if self.records.count(SUPERUSERS_ID).await? <= 1 {
            return Err(AuthError::Forbidden("The only superuser cannot be deleted.".into()));
        }
        let id = stored.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
        let cli = Principal::Superuser { id: String::new() };
        self.records.delete_record(&cli, SUPERUSERS_ID, &id, &RequestInfo::default()).await?;
        self.records.note_token_revoked();
        Ok(())
    }

    /// A one-time code for a superuser, for `auth-with-otp` (not emailed: the operator
    /// reads it); needs OTP sign-in enabled on `_superusers`. Returns (otp id, code).
    pub async fn superuser_otp(&self, email: &str) -> Result<(String, String), AuthError> {
        let entry = self.auth_collection(SUPERUSERS_ID)?;
        let settings = entry.collection.auth.clone().unwrap_or_default();
        if !settings.otp.enabled {
            return Err(AuthError::Forbidden(
                "One-time password sign-in is disabled for _superusers; enable otp on the collection first."
                    .into(),
            ));
        }
        let Some(stored) = self.records.find_auth_record(SUPERUSERS_ID, email.trim()).await? else {
            return Err(missing_superuser(email));
        };
        let otp_id = self.new_otp_id();
        let code: String = {
            let mut rng = rand::thread_rng();
            (0..settings.otp.length).map(|_| char::from(b'0' + rng.gen_range(0..10u8))).collect()
        };
        let otp = Otp {
            collection_id: SUPERUSERS_ID.to_string(),
            record_id: stored.get("id").and_then(Value::as_str).unwrap_or_default().to_string(),
            hash: sha256_hex(format!("{otp_id}{code}").as_bytes()),
            expires: now_unix() + i64::try_from(settings.otp.duration).unwrap_or(180),
            tries: 0,
        };
        let bytes = serde_json::to_vec(&otp)
            .map_err(|e| AuthError::Records(RecordsError::Internal(e.to_string())))?;
        let key = otp_id.clone();
        self.records
            .store()
            .write(move |tx: &mut WriteTx<'_>| -> Result<(), AuthError> {
                tx.put(Table::AuthOtps, key.as_bytes(), bytes);
                Ok(())
            })
            .await?;
        Ok((otp_id, code))
    }
}

fn missing_superuser(email: &str) -> AuthError {
    AuthError::Records(RecordsError::NotFound(format!("No superuser with the email {email:?}.")))
}

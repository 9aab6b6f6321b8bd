//! Auth tokens: HS256 JWTs, so the PocketBase SDKs can read their expiry.
//!
//! The signing key is `HMAC(server secret, record tokenKey)`: rotating a record's tokenKey
//! (on password change) revokes all of its tokens; rotating the server secret revokes all.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Claims of an auth token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    pub id: String,
    pub collection_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub refreshable: bool,
    pub exp: i64,
    /// A random token id, so two tokens issued in the same second differ (one can be
    /// signed out without the other).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jti: String,
    /// The address an email-change token moves the account to (other tokens: empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub email: String,
}

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

fn mac_for(key: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length")
}

fn signing_key(server_secret: &[u8], token_key: &str) -> Vec<u8> {
    let mut mac = mac_for(server_secret);
    mac.update(token_key.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Signs `claims`.
pub fn sign(claims: &Claims, server_secret: &[u8], token_key: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(HEADER);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signing_input = format!("{header}.{payload}");
    let mut mac = mac_for(&signing_key(server_secret, token_key));
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// Reads the claims without checking the signature (to find whose key to check with).
pub fn peek(token: &str) -> Option<Claims> {
    let mut parts = token.split('.');
    let (header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
        return None;
    }
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

/// Checks signature and expiry of an auth (session) token; returns the claims when valid.
pub fn verify(token: &str, server_secret: &[u8], token_key: &str, now_unix: i64) -> Option<Claims> {
    verify_kind(token, server_secret, token_key, now_unix, "auth")
}

/// Checks signature, expiry and type (`auth`, `verification`, `passwordReset`, ...).
pub fn verify_kind(
    token: &str,
    server_secret: &[u8],
    token_key: &str,
    now_unix: i64,
    kind: &str,
) -> Option<Claims> {
    let claims = peek(token)?;
    let (signing_input, signature) = token.rsplit_once('.')?;
    let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
    let mut mac = mac_for(&signing_key(server_secret, token_key));
    mac.update(signing_input.as_bytes());
    mac.verify_slice(&signature).ok()?;
    (claims.exp > now_unix && claims.kind == kind).then_some(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            id: "abc".into(),
            collection_id: "c".into(),
            kind: "auth".into(),
            refreshable: true,
            exp,
            jti: String::new(),
            email: String::new(),
        }
    }

    #[test]
    fn valid_token_round_trips() {
        let t = sign(&claims(2_000), b"secret", "key1");
        assert_eq!(verify(&t, b"secret", "key1", 1_000), Some(claims(2_000)));
    }

    #[test]
    fn rotated_key_expiry_and_tampering_are_rejected() {
        let t = sign(&claims(2_000), b"secret", "key1");
        assert_eq!(verify(&t, b"secret", "key2", 1_000), None, "rotated token key");
        assert_eq!(verify(&t, b"other", "key1", 1_000), None, "other server secret");
        assert_eq!(verify(&t, b"secret", "key1", 2_000), None, "expired");
        let forged = sign(&claims(9_999), b"guess", "key1");
        let (head, _) = forged.rsplit_once('.').expect("three parts");
        let (_, sig) = t.rsplit_once('.').expect("three parts");
        assert_eq!(verify(&format!("{head}.{sig}"), b"secret", "key1", 1_000), None, "swapped payload");
        assert_eq!(verify("a.b", b"secret", "key1", 1_000), None);
    }
}

//! Webhook signatures, Stripe-style: `X-Backbone-Signature: t=<unix seconds>,v1=<hex>`
//! where the hex is HMAC-SHA256 keyed with the secret (its UTF-8 bytes, prefix included)
//! over `"<t>.<body>"`. The timestamp is inside the signed bytes, so a receiver that
//! rejects old timestamps (say, over 5 minutes) also rejects replays; every attempt is
//! signed afresh. [`verify`] is what a receiver does, for tests and documentation.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The signature header's name.
pub const HEADER: &str = "X-Backbone-Signature";
/// Prefix of generated secrets.
pub const SECRET_PREFIX: &str = "whsec_";

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length.
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| text.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
        .collect()
}

/// The header value for `body` sent at `timestamp` (Unix seconds).
pub fn header_value(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let digest = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", to_hex(&digest))
}

/// What a receiver checks: some `v1` signature matches (in constant time) and `t` is
/// within `tolerance_secs` of `now`.
pub fn verify(secret: &str, header: &str, body: &[u8], now: i64, tolerance_secs: i64) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", hex)) => signatures.extend(from_hex(hex)),
            _ => {}
        }
    }
    let Some(t) = timestamp else { return false };
    if (now - t).abs() > tolerance_secs {
        return false;
    }
    signatures.iter().any(|sig| mac(secret, t, body).verify_slice(sig).is_ok())
}

/// A fresh secret: `whsec_` and 32 random characters `[a-z0-9]` (about 165 bits).
pub fn generate_secret() -> String {
    format!("{SECRET_PREFIX}{}", crate::util::id::random_string(32))
}

/// What a rule shows instead of its secret: the last four characters.
pub fn hint(secret: &str) -> String {
    let tail: String = secret.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        // A known answer from an independent implementation, Python's `hmac` module:
        // hmac.new(b"Jefe", b"0.what do ya want for nothing?", "sha256").hexdigest()
        let header = header_value("Jefe", 0, b"what do ya want for nothing?");
        assert_eq!(header, "t=0,v1=37f471929915ccd2cbbe79feb84ffcff4f2bb25e15fc41c2506687331ae179cc");
    }

    #[test]
    fn verify_accepts_its_own_signature_and_refuses_tampering_and_old_timestamps() {
        let body = br#"{"event":"alert.firing"}"#;
        let header = header_value("whsec_test", 1_700_000_000, body);
        assert!(verify("whsec_test", &header, body, 1_700_000_100, 300));
        assert!(!verify("whsec_other", &header, body, 1_700_000_100, 300), "wrong secret");
        assert!(!verify("whsec_test", &header, br#"{"event":"alert.resolved"}"#, 1_700_000_100, 300));
        assert!(!verify("whsec_test", &header, body, 1_700_000_400, 300), "too old: a replay");
        let moved = header.replace("t=1700000000", "t=1700000300");
        assert!(!verify("whsec_test", &moved, body, 1_700_000_300, 300), "the timestamp is signed");
        assert!(!verify("whsec_test", "v1=zz", body, 0, 300));
    }

    #[test]
    fn secrets_are_random_and_hinted_by_their_tail() {
        let (a, b) = (generate_secret(), generate_secret());
        assert!(a.starts_with("whsec_") && a.len() == 38 && a != b, "{a} {b}");
        assert_eq!(hint("whsec_abcdefgh1234"), "…1234");
    }
}

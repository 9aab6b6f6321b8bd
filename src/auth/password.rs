//! Password hashing with Argon2id (OWASP parameters: m=19 MiB, t=2, p=1).
//!
//! Hashing is CPU-heavy (~50 ms) and runs on the blocking pool behind a semaphore, so a
//! login flood cannot starve the executor or exhaust memory.

use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::Argon2;
use tokio::sync::Semaphore;

/// Hashes and verifies passwords off the executor, a bounded number at a time.
#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
}

/// A valid hash of a random password, verified against when an account does not exist so
/// that unknown and known identities take the same time.
const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2Yt6gJmMbr6n8Q3e6E2oeYbt0u6oQ7bJx1E2m1CqgVQ";

impl PasswordHasher {
    /// At most `concurrency` hashes run at once.
    pub fn new(concurrency: usize) -> PasswordHasher {
        PasswordHasher { permits: Arc::new(Semaphore::new(concurrency.max(1))) }
    }

    /// Hashes `plain` into a PHC string.
    pub async fn hash(&self, plain: String) -> Result<String, String> {
        let _permit = self.permits.acquire().await.map_err(|e| e.to_string())?;
        tokio::task::spawn_blocking(move || hash_blocking(&plain)).await.map_err(|e| e.to_string())?
    }

    /// True when `plain` matches `hash`. With no hash, verifies against a decoy and fails.
    pub async fn verify(&self, plain: String, hash: Option<String>) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        tokio::task::spawn_blocking(move || {
            let matched = verify_blocking(&plain, hash.as_deref().unwrap_or(DECOY_HASH));
            matched && hash.is_some()
        })
        .await
        .unwrap_or(false)
    }
}

/// Hashes on the current thread (CLI use).
pub fn hash_blocking(plain: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(plain.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

fn verify_blocking(plain: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| Argon2::default().verify_password(plain.as_bytes(), &parsed).is_ok())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_only_the_same_password() {
        let hash = hash_blocking("correct horse").expect("hash");
        assert!(verify_blocking("correct horse", &hash));
        assert!(!verify_blocking("wrong horse", &hash));
        assert!(!verify_blocking("correct horse", "not a hash"));
    }
}

//! Record and collection ids: 15 characters of `[a-z0-9]`, time-ordered.
//!
//! The first 9 characters are the creation time in milliseconds (base 36, big-endian), the
//! last 6 a random suffix. Within one millisecond the suffix increases, so ids taken from one
//! generator are strictly increasing: key order in the store is creation order.

use std::sync::Mutex;

use rand::Rng;

/// Length of every generated id.
pub const ID_LENGTH: usize = 15;
const TIME_CHARS: usize = 9;
const SUFFIX_CHARS: usize = ID_LENGTH - TIME_CHARS;
const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
const SUFFIX_SPACE: u64 = 36u64.pow(SUFFIX_CHARS as u32);

/// Hands out strictly increasing ids.
#[derive(Debug, Default)]
pub struct IdGenerator {
    last: Mutex<(u64, u64)>,
}

impl IdGenerator {
    /// A fresh id for "now".
    pub fn next(&self) -> String {
        let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
        let mut rng = rand::thread_rng();
        let (ms, suffix) = match self.last.lock() {
            Ok(mut last) => {
                let (last_ms, last_suffix) = *last;
                let next = if now_ms > last_ms {
                    (now_ms, rng.gen_range(0..SUFFIX_SPACE / 2))
                } else {
                    // Same (or an earlier, if the clock stepped back) millisecond: keep order.
                    let bumped = last_suffix + rng.gen_range(1..1024);
                    if bumped < SUFFIX_SPACE {
                        (last_ms, bumped)
                    } else {
                        (last_ms + 1, rng.gen_range(0..SUFFIX_SPACE / 2))
                    }
                };
                *last = next;
                next
            }
            Err(_) => (now_ms, rng.gen_range(0..SUFFIX_SPACE)),
        };
        let mut out = [0u8; ID_LENGTH];
        encode_base36(ms, &mut out[..TIME_CHARS]);
        encode_base36(suffix, &mut out[TIME_CHARS..]);
        out.iter().map(|&b| b as char).collect()
    }
}

fn encode_base36(mut value: u64, out: &mut [u8]) {
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(value % 36) as usize];
        value /= 36;
    }
}

/// True when `id` has the shape of a record id: 15 characters of `[a-z0-9]`.
pub fn is_valid_record_id(id: &str) -> bool {
    id.len() == ID_LENGTH && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// A random string of `len` characters of `[a-z0-9]`, for field ids and token keys.
pub fn random_string(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len).map(|_| ALPHABET[rng.gen_range(0..36)] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_valid_and_strictly_increasing() {
        let generator = IdGenerator::default();
        let ids: Vec<String> = (0..10_000).map(|_| generator.next()).collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{} !< {}", pair[0], pair[1]);
        }
        assert!(ids.iter().all(|id| is_valid_record_id(id)));
    }

    #[test]
    fn invalid_ids_are_rejected() {
        assert!(!is_valid_record_id("short"));
        assert!(!is_valid_record_id("ABCDEFGHIJKLMNO"));
        assert!(!is_valid_record_id("abcdefghijklmn-"));
        assert!(is_valid_record_id("abcdefghijklmno"));
    }
}

//! Rate limits: token buckets per client IP (every request, auth endpoints, configured path
//! prefixes) and per sign-in identity, and the client IP itself (trusted proxies).
//!
//! Buckets live in memory (`governor`, keyed, lock-sharded); idle keys are dropped by
//! [`Limiter::forget_idle`], which the server calls every minute, so a scan from many
//! addresses cannot grow memory without bound.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::config::{Rate, RateLimits};
use crate::util::metrics::Counter;
use crate::util::net::{self, IpRange};

type Bucket<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

/// A refused request: try again after this many seconds (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after_secs: u64,
}

/// Every limit of the running server.
pub struct Limiter {
    enabled: bool,
    clock: DefaultClock,
    global: Bucket<IpAddr>,
    auth_ip: Bucket<IpAddr>,
    identity: Bucket<String>,
    account_mail: Bucket<String>,
    rules: Vec<(String, Bucket<IpAddr>)>,
    trusted: Vec<IpRange>,
    /// Requests and sign-in attempts refused by any bucket (for `/metrics`).
    pub refused: Counter,
}

fn bucket<K: Hash + Eq + Clone>(rate: &Rate) -> Result<Bucket<K>, String> {
    let burst = NonZeroU32::new(rate.count).ok_or_else(|| format!("{rate}: the count must be at least 1"))?;
    let period = Duration::from_secs(rate.secs) / rate.count;
    let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
        .ok_or_else(|| format!("{rate}: the period must not be zero"))?
        .allow_burst(burst);
    Ok(RateLimiter::keyed(quota))
}

/// Paths of sign-in and account-recovery endpoints (the `auth_per_ip` bucket).
pub fn is_auth_path(path: &str) -> bool {
    if path == "/api/setup" {
        return true;
    }
    let Some(rest) = path.strip_prefix("/api/collections/") else {
        return false;
    };
    let action = rest.rsplit('/').next().unwrap_or_default();
    rest.contains('/')
        && (action.starts_with("auth-with-")
            || action.starts_with("request-")
            || action.starts_with("confirm-"))
}

impl Limiter {
    /// Builds the buckets from the (already validated) config.
    pub fn new(config: &RateLimits) -> Result<Limiter, String> {
        let mut rules = Vec::new();
        for (prefix, limit) in &config.rules {
            rules.push((prefix.clone(), bucket(limit)?));
        }
        Ok(Limiter {
            enabled: config.enabled,
            clock: DefaultClock::default(),
            global: bucket(&config.global)?,
            auth_ip: bucket(&config.auth_per_ip)?,
            identity: bucket(&config.auth_per_identity)?,
            account_mail: bucket(&config.mail_per_account)?,
            rules,
            trusted: config.trusted_proxies.clone(),
            refused: Counter::default(),
        })
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        net::any_contains(&self.trusted, ip)
    }

    /// The client's address: the peer, unless the peer is a trusted proxy, in which case the
    /// right-most `X-Forwarded-For` entry that is not itself a trusted proxy (entries to its
    /// left are client-supplied and cannot be believed).
    pub fn client_ip(&self, peer: Option<IpAddr>, forwarded_for: Option<&str>) -> Option<IpAddr> {
        let peer = peer?;
        if !self.is_trusted(peer) {
            return Some(peer);
        }
        let Some(header) = forwarded_for else {
            return Some(peer);
        };
        let mut client = peer;
        for part in header.rsplit(',') {
            match part.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !self.is_trusted(ip) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        Some(client)
    }

    fn check<K: Hash + Eq + Clone>(&self, bucket: &Bucket<K>, key: &K) -> Result<(), Limited> {
        bucket.check_key(key).map_err(|not_until| {
            self.refused.inc();
            let wait = not_until.wait_time_from(self.clock.now());
            Limited { retry_after_secs: (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1) }
        })
    }

    /// Counts one request of `ip` to `path` against every bucket it falls in.
    pub fn check_request(&self, ip: IpAddr, path: &str) -> Result<(), Limited> {
        if !self.enabled {
            return Ok(());
        }
        self.check(&self.global, &ip)?;
        for (prefix, bucket) in &self.rules {
            if path.starts_with(prefix.as_str()) {
                self.check(bucket, &ip)?;
            }
        }
        if is_auth_path(path) {
            self.check(&self.auth_ip, &ip)?;
        }
        Ok(())
    }

    /// Counts one sign-in attempt for an identity (collection id + lower-cased identity).
    pub fn check_identity(&self, collection_id: &str, identity: &str) -> Result<(), Limited> {
        if !self.enabled {
            return Ok(());
        }
        self.check(&self.identity, &format!("{collection_id}\u{0}{}", identity.trim().to_lowercase()))
    }

    /// Counts one account email (verification, password reset, one-time code) requested for
    /// an address (collection id + lower-cased email), from any IP.
    pub fn check_account_mail(&self, collection_id: &str, email: &str) -> Result<(), Limited> {
        if !self.enabled {
            return Ok(());
        }
        self.check(&self.account_mail, &format!("{collection_id}\u{0}{}", email.trim().to_lowercase()))
    }

    /// Drops buckets that are full again (clients idle long enough to be forgotten).
    pub fn forget_idle(&self) {
        self.global.retain_recent();
        self.auth_ip.retain_recent();
        self.identity.retain_recent();
        self.account_mail.retain_recent();
        for (_, bucket) in &self.rules {
            bucket.retain_recent();
        }
    }

    /// `backbone_rate_limited_total`: requests and sign-in attempts refused.
    pub fn render_metrics(&self, out: &mut crate::util::metrics::Exposition) {
        out.single(
            "backbone_rate_limited_total",
            "counter",
            "Requests and sign-in attempts refused by a rate limit (429).",
            self.refused.get() as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(global: &str, proxies: &[&str]) -> Limiter {
        let config = RateLimits {
            global: global.parse().expect("rate"),
            trusted_proxies: proxies.iter().map(|s| s.parse().expect("range")).collect(),
            ..RateLimits::default()
        };
        Limiter::new(&config).expect("limiter")
    }

    #[test]
    fn a_burst_is_allowed_then_refused_with_a_wait() {
        let l = limiter("3/60s", &[]);
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        for _ in 0..3 {
            assert_eq!(l.check_request(ip, "/api/health"), Ok(()));
        }
        let refused = l.check_request(ip, "/api/health").expect_err("fourth request refused");
        assert!((1..=20).contains(&refused.retry_after_secs), "{refused:?}");
        // Another client has its own bucket.
        assert_eq!(l.check_request("10.0.0.2".parse().expect("ip"), "/api/health"), Ok(()));
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let l = limiter("10/1s", &["10.0.0.0/8", "::1"]);
        let proxy: IpAddr = "10.1.2.3".parse().expect("ip");
        let stranger: IpAddr = "203.0.113.9".parse().expect("ip");
        assert_eq!(l.client_ip(Some(stranger), Some("1.2.3.4")), Some(stranger));
        assert_eq!(l.client_ip(Some(proxy), Some("1.2.3.4")), Some("1.2.3.4".parse().expect("ip")));
        // A spoofed left-most entry does not win over the address the proxy saw.
        assert_eq!(
            l.client_ip(Some(proxy), Some("6.6.6.6, 198.51.100.7, 10.0.0.5")),
            Some("198.51.100.7".parse().expect("ip"))
        );
        assert_eq!(l.client_ip(Some(proxy), None), Some(proxy));
        assert_eq!(l.client_ip(Some(proxy), Some("garbage")), Some(proxy));
    }

    #[test]
    fn auth_paths_are_recognised() {
        assert!(is_auth_path("/api/collections/users/auth-with-password"));
        assert!(is_auth_path("/api/collections/users/request-password-reset"));
        assert!(is_auth_path("/api/collections/users/confirm-verification"));
        assert!(!is_auth_path("/api/collections/users/records"));
        assert!(!is_auth_path("/api/collections/request-x"));
    }
}

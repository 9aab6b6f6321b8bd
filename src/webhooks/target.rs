//! Where a webhook may go: URL checks and the address policy that keeps outbound requests
//! out of the server's own network (SSRF).
//!
//! A target is refused when its host is, or resolves to, an address that is not public
//! unicast ([`non_public_range`]): loopback, private (RFC 1918), link-local (the cloud
//! metadata address 169.254.169.254 among them), CGNAT, unique-local and site-local IPv6,
//! multicast, documentation and other reserved ranges, and IPv6 forms that embed such an
//! IPv4 address (IPv4-mapped, NAT64, 6to4). `[webhooks] allow_private_targets` lifts the
//! check; `allowed_private_ranges` lifts it for chosen ranges.
//!
//! The check runs when a URL is saved ([`TargetPolicy::parse_url`] without DNS, then
//! [`TargetPolicy::check_resolved`]) and again at every delivery: the HTTP client resolves
//! names only through [`GuardedResolver`] and connects to the addresses that passed, so a
//! name that pointed at a public address when it was saved and at 127.0.0.1 later (DNS
//! rebinding) is refused at delivery. Literal addresses never reach a resolver, so the
//! delivery checks them with [`TargetPolicy::check_literal`]. Must not: send requests
//! (`deliver.rs` does).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::config::WebhooksSection;
use crate::util::net::{self, IpRange};

/// Longest accepted webhook URL, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// Why a URL cannot be a webhook target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Not an absolute http(s) URL with a host (the message says what is wrong).
    #[error("{0}")]
    Invalid(String),
    /// The host is, or resolves to, a non-public address the policy does not allow.
    #[error(
        "{host} is {addr}, a non-public address ({range}); webhooks into the server's own network are refused unless [webhooks] allow_private_targets or allowed_private_ranges allow it"
    )]
    Forbidden { host: String, addr: IpAddr, range: &'static str },
}

/// The non-public range `ip` lies in, by name, or `None` for a public unicast address.
/// IPv6 addresses that carry an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, NAT64
/// `64:ff9b::a.b.c.d`, 6to4 `2002:AABB:CCDD::`) are judged by that IPv4 address.
pub fn non_public_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_range(v4),
        IpAddr::V6(v6) => v6_range(v6),
    }
}

fn v4_range(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => "\"this network\" 0.0.0.0/8",
        (10, _, _) => "private 10.0.0.0/8",
        (100, 64..=127, _) => "shared address space (CGNAT) 100.64.0.0/10",
        (127, _, _) => "loopback 127.0.0.0/8",
        (169, 254, _) => "link-local 169.254.0.0/16",
        (172, 16..=31, _) => "private 172.16.0.0/12",
        (192, 0, 0) => "IETF protocol assignments 192.0.0.0/24",
        (192, 0, 2) => "documentation 192.0.2.0/24",
        (192, 88, 99) => "6to4 relay anycast 192.88.99.0/24",
        (192, 168, _) => "private 192.168.0.0/16",
        (198, 18..=19, _) => "benchmarking 198.18.0.0/15",
        (198, 51, 100) => "documentation 198.51.100.0/24",
        (203, 0, 113) => "documentation 203.0.113.0/24",
        (224..=239, _, _) => "multicast 224.0.0.0/4",
        (240..=255, _, _) => "reserved 240.0.0.0/4 (and broadcast)",
        _ => return None,
    })
}

fn v6_range(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified ::");
    }
    if ip.is_loopback() {
        return Some("loopback ::1");
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_range(v4);
    }
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    // NAT64 well-known prefix: DNS64 gives v4-only hosts these addresses on IPv6-only
    // networks, so they are public exactly when the IPv4 address is.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return v4_range(embedded(s[6], s[7]));
    }
    if s[0] & 0xe000 != 0x2000 {
        // Outside global unicast 2000::/3.
        return Some(match s[0] {
            0xfc00..=0xfdff => "unique local fc00::/7",
            0xfe80..=0xfebf => "link-local fe80::/10",
            0xfec0..=0xfeff => "site-local fec0::/10",
            0xff00..=0xffff => "multicast ff00::/8",
            0x64 if s[1] == 0xff9b => "local-use NAT64 64:ff9b:1::/48",
            0x100 if s[1..4] == [0, 0, 0] => "discard-only 100::/64",
            _ => "reserved (outside global unicast 2000::/3)",
        });
    }
    match (s[0], s[1]) {
        (0x2001, 0x0db8) => Some("documentation 2001:db8::/32"),
        (0x3fff, 0x0000..=0x0fff) => Some("documentation 3fff::/20"),
        (0x2001, 0x0000) => Some("Teredo 2001::/32"),
        (0x2001, 0x0002) if s[2] == 0 => Some("benchmarking 2001:2::/48"),
        (0x2001, 0x0010..=0x002f) => Some("ORCHID 2001:10::/28, 2001:20::/28"),
        (0x2002, _) => v4_range(embedded(s[1], s[2])),
        _ => None,
    }
}

/// Which targets deliveries may reach (from `[webhooks]`).
#[derive(Debug, Clone, Default)]
pub struct TargetPolicy {
    allow_private: bool,
    allowed: Vec<IpRange>,
}

impl TargetPolicy {
    pub fn from_config(config: &WebhooksSection) -> TargetPolicy {
        TargetPolicy {
            allow_private: config.allow_private_targets,
            allowed: config.allowed_private_ranges.clone(),
        }
    }

    /// A policy that allows every address (`allow_private_targets = true`).
    pub fn allow_all() -> TargetPolicy {
        TargetPolicy { allow_private: true, allowed: Vec::new() }
    }

    /// True when every address is allowed (no resolution needed to decide).
    pub fn allows_everything(&self) -> bool {
        self.allow_private
    }

    /// Ok when `addr` (an address of `host`) may be connected to.
    pub fn check_ip(&self, host: &str, addr: IpAddr) -> Result<(), TargetError> {
        if self.allow_private {
            return Ok(());
        }
        let addr = addr.to_canonical();
        let Some(range) = non_public_range(addr) else { return Ok(()) };
        if net::any_contains(&self.allowed, addr) {
            return Ok(());
        }
        Err(TargetError::Forbidden { host: host.to_string(), addr, range })
    }

    /// Parses and checks a webhook URL without DNS: absolute `http`/`https` with a host, no
    /// user name or password (credentials belong in the signing secret or the receiver's
    /// URL path, not in a URL every rule listing shows), at most [`MAX_URL_LEN`] bytes, and
    /// a literal address host must be allowed.
    pub fn parse_url(&self, raw: &str) -> Result<url::Url, TargetError> {
        if raw.len() > MAX_URL_LEN {
            return Err(TargetError::Invalid(format!("A URL of at most {MAX_URL_LEN} bytes.")));
        }
        let url = url::Url::parse(raw.trim())
            .map_err(|e| TargetError::Invalid(format!("Not a valid absolute URL ({e}).")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(TargetError::Invalid(format!(
                "Only http and https URLs can receive webhooks, not {}:.",
                url.scheme()
            )));
        }
        if url.host().is_none() {
            return Err(TargetError::Invalid("The URL has no host.".into()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(TargetError::Invalid(
                "Credentials in the URL are not accepted; the receiver checks the signature instead.".into(),
            ));
        }
        self.check_literal(&url)?;
        Ok(url)
    }

    /// Checks a URL whose host is a literal address (a resolver never sees those); names
    /// pass (they are checked as they resolve).
    pub fn check_literal(&self, url: &url::Url) -> Result<(), TargetError> {
        let addr = match url.host() {
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
            Some(url::Host::Domain(_)) => return Ok(()),
            None => return Err(TargetError::Invalid("The URL has no host.".into())),
        };
        self.check_ip(url.host_str().unwrap_or_default(), addr)
    }

    /// Resolves `url`'s host (at most `within`) and checks every address it has: one
    /// forbidden address refuses the URL (a mixed answer is how rebinding attacks hedge).
    /// A name that does not resolve (now) passes: deliveries check again and retry.
    pub async fn check_resolved(&self, url: &url::Url, within: Duration) -> Result<(), TargetError> {
        self.check_literal(url)?;
        let Some(url::Host::Domain(name)) = url.host() else { return Ok(()) };
        if self.allow_private {
            return Ok(());
        }
        match tokio::time::timeout(within, tokio::net::lookup_host((name, 0))).await {
            Ok(Ok(mut addrs)) => addrs.try_for_each(|a| self.check_ip(name, a.ip())),
            Ok(Err(_)) | Err(_) => Ok(()),
        }
    }

    /// Filters a name's resolved addresses for a delivery: all must be allowed.
    fn admit(&self, name: &str, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, TargetError> {
        for addr in &addrs {
            self.check_ip(name, addr.ip())?;
        }
        Ok(addrs)
    }
}

/// The HTTP client's only resolver: the system's, then the policy on every address, so the
/// client connects to nothing the policy did not see.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<TargetPolicy>,
}

impl GuardedResolver {
    pub fn new(policy: Arc<TargetPolicy>) -> GuardedResolver {
        GuardedResolver { policy }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let name = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(format!("{name} has no addresses").into());
            }
            let admitted = policy.admit(&name, addrs)?;
            Ok(Box::new(admitted.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn private_loopback_link_local_and_reserved_ipv4_ranges_are_not_public() {
        for addr in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "169.254.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(non_public_range(ip(addr)).is_some(), "{addr} must be refused");
        }
    }

    #[test]
    fn public_ipv4_addresses_next_to_the_ranges_pass() {
        for addr in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
        ] {
            assert_eq!(non_public_range(ip(addr)), None, "{addr} is public");
        }
    }

    #[test]
    fn non_public_ipv6_ranges_and_embedded_private_ipv4_are_refused() {
        for addr in [
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "100::1",
            "2001:db8::1",
            "2001::1",
            "2001:2::1",
            "2001:10::1",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
            "3fff::1",
            "fc00::1",
            "fd12:3456:789a::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "4000::1",
        ] {
            assert!(non_public_range(ip(addr)).is_some(), "{addr} must be refused");
        }
    }

    #[test]
    fn public_ipv6_and_embedded_public_ipv4_pass() {
        for addr in [
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:db9::1",
            "2001:3::1",
        ] {
            assert_eq!(non_public_range(ip(addr)), None, "{addr} is public");
        }
    }

    #[test]
    fn urls_need_http_or_https_a_host_and_no_credentials() {
        let policy = TargetPolicy::default();
        for ok in ["https://hooks.example.com/alerts?x=1", "http://8.8.8.8:8080/", "https://[2606:4700::1]/"]
        {
            assert!(policy.parse_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "gopher://example.com/",
            "example.com/hook",
            "https://",
            "https://user:pass@example.com/",
            "http:// spaces .com/",
        ] {
            assert!(matches!(policy.parse_url(bad), Err(TargetError::Invalid(_))), "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(matches!(policy.parse_url(&long), Err(TargetError::Invalid(_))));
    }

    #[test]
    fn literal_private_hosts_are_refused_in_every_spelling() {
        let policy = TargetPolicy::default();
        // The URL parser normalizes the odd IPv4 forms browsers accept.
        for bad in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://0/",
            "http://[::1]:8080/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.1.2.3/",
        ] {
            assert!(matches!(policy.parse_url(bad), Err(TargetError::Forbidden { .. })), "{bad}");
        }
    }

    #[test]
    fn allowed_private_ranges_and_the_switch_lift_the_check() {
        let config = WebhooksSection {
            allowed_private_ranges: vec![
                "192.168.1.0/24".parse().expect("range"),
                "10.9.9.9".parse().expect("range"),
            ],
            ..WebhooksSection::default()
        };
        let policy = TargetPolicy::from_config(&config);
        assert!(policy.parse_url("http://192.168.1.20/hook").is_ok());
        assert!(policy.parse_url("http://[::ffff:192.168.1.20]/hook").is_ok(), "mapped form matches too");
        assert!(policy.parse_url("http://10.9.9.9/hook").is_ok());
        assert!(policy.parse_url("http://10.9.9.10/hook").is_err());
        assert!(policy.parse_url("http://127.0.0.1/hook").is_err());
        assert!(TargetPolicy::allow_all().parse_url("http://127.0.0.1/hook").is_ok());
    }

    #[tokio::test]
    async fn names_are_judged_by_what_they_resolve_to() {
        let policy = TargetPolicy::default();
        // `localhost` resolves from /etc/hosts, without a DNS query.
        let url = policy.parse_url("http://localhost:9/hook").expect("names pass the syntax check");
        let err = policy.check_resolved(&url, Duration::from_secs(5)).await.expect_err("loopback");
        assert!(matches!(err, TargetError::Forbidden { .. }), "{err}");
        assert!(TargetPolicy::allow_all().check_resolved(&url, Duration::from_secs(5)).await.is_ok());
    }

    #[tokio::test]
    async fn the_delivery_resolver_refuses_names_that_resolve_to_private_addresses() {
        use reqwest::dns::Resolve;
        let resolver = GuardedResolver::new(Arc::new(TargetPolicy::default()));
        let name: reqwest::dns::Name = "localhost".parse().expect("name");
        let err = resolver.resolve(name).await.err().expect("refused");
        let forbidden = err.downcast_ref::<TargetError>().expect("a TargetError");
        assert!(matches!(forbidden, TargetError::Forbidden { .. }), "{forbidden}");
        let open = GuardedResolver::new(Arc::new(TargetPolicy::allow_all()));
        let name: reqwest::dns::Name = "localhost".parse().expect("name");
        let addrs: Vec<SocketAddr> = open.resolve(name).await.expect("allowed").collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty(), "{addrs:?}");
    }
}

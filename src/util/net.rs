//! IP address ranges from configuration: a single address (`10.0.0.5`, `::1`) or a CIDR
//! range (`10.0.0.0/8`), parsed once when the config is read.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One address or CIDR range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange(IpNet);

impl IpRange {
    /// True when `ip` lies in the range. An IPv4 range never matches an IPv6 address
    /// (IPv4-mapped addresses included) and the other way round.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip)
    }
}

/// True when any of `ranges` contains `ip`.
pub fn any_contains(ranges: &[IpRange], ip: IpAddr) -> bool {
    ranges.iter().any(|range| range.contains(ip))
}

impl FromStr for IpRange {
    type Err = String;

    fn from_str(raw: &str) -> Result<IpRange, String> {
        let text = raw.trim();
        let net = if text.contains('/') {
            text.parse::<IpNet>().ok()
        } else {
            text.parse::<IpAddr>().ok().map(IpNet::from)
        };
        net.map(IpRange).ok_or_else(|| format!("{raw:?} is not an IP address or CIDR range"))
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.prefix_len() == self.0.max_prefix_len() {
            write!(f, "{}", self.0.addr())
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl Serialize for IpRange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<IpRange, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(raw: &str) -> IpRange {
        raw.parse().expect("range")
    }

    #[test]
    fn addresses_and_ranges_parse_and_match() {
        let lan = range("192.168.1.0/24");
        assert!(lan.contains("192.168.1.200".parse().expect("ip")));
        assert!(!lan.contains("192.168.2.1".parse().expect("ip")));
        let one = range(" 10.0.0.5 ");
        assert!(one.contains("10.0.0.5".parse().expect("ip")));
        assert!(!one.contains("10.0.0.6".parse().expect("ip")));
        assert!(range("0.0.0.0/0").contains("8.8.8.8".parse().expect("ip")));
        assert!(!range("0.0.0.0/0").contains("::1".parse().expect("ip")));
        assert!(range("fd00::/8").contains("fd12::1".parse().expect("ip")));
        assert_eq!(one.to_string(), "10.0.0.5");
        assert_eq!(lan.to_string(), "192.168.1.0/24");
    }

    #[test]
    fn malformed_ranges_are_refused_with_the_input_named() {
        for bad in ["", "10.0.0", "10.0.0.0/33", "::1/129", "host.example", "10.0.0.0/x"] {
            let err = bad.parse::<IpRange>().expect_err(bad);
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }
}

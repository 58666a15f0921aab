//! host-local address ranges: parsing, the reference plugin's defaults (start `.1`,
//! end = last address minus the IPv4 broadcast, gateway `.1`) and address arithmetic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::Deserialize;

/// One range as written (`subnet`, optional `rangeStart`, `rangeEnd`, `gateway`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeConfig {
    /// The subnet addresses come from.
    pub subnet: IpNet,
    /// First allocatable address (inclusive).
    #[serde(default, rename = "rangeStart")]
    pub range_start: Option<IpAddr>,
    /// Last allocatable address (inclusive).
    #[serde(default, rename = "rangeEnd")]
    pub range_end: Option<IpAddr>,
    /// Gateway; never allocated.
    #[serde(default)]
    pub gateway: Option<IpAddr>,
}

/// A range with every default filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Range {
    pub subnet: IpNet,
    pub start: IpAddr,
    pub end: IpAddr,
    pub gateway: IpAddr,
}

impl Range {
    /// Canonicalises like the reference `Range.Canonicalize`.
    pub fn canonical(cfg: &RangeConfig) -> Result<Range, String> {
        let subnet = cfg.subnet.trunc();
        if subnet.prefix_len() + 2 > subnet.max_prefix_len() {
            return Err(format!("network {subnet} too small to allocate from"));
        }
        let first = next_ip(subnet.network());
        let gateway = match cfg.gateway {
            None => first,
            Some(g) if subnet.contains(&g) => g,
            Some(g) => return Err(format!("gateway {g} not in network {subnet}")),
        };
        let mut r = Range {
            subnet,
            start: first,
            end: last_ip(subnet),
            gateway,
        };
        if let Some(s) = cfg.range_start {
            r.check_in(s)?;
            r.start = s;
        }
        if let Some(e) = cfg.range_end {
            r.check_in(e)?;
            r.end = e;
        }
        Ok(r)
    }

    fn check_in(&self, ip: IpAddr) -> Result<(), String> {
        if ip.is_ipv4() != self.subnet.addr().is_ipv4() {
            return Err(format!(
                "IP {ip} is not the same protocol as subnet {}",
                self.subnet
            ));
        }
        if !self.subnet.contains(&ip) {
            return Err(format!("{ip} not in network {}", self.subnet));
        }
        Ok(())
    }

    /// True when `ip` is inside the subnet and between start and end.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.start.is_ipv4()
            && self.subnet.contains(&ip)
            && to_u128(ip) >= to_u128(self.start)
            && to_u128(ip) <= to_u128(self.end)
    }

    /// True when the two ranges overlap (same family only).
    pub fn overlaps(&self, other: &Range) -> bool {
        self.start.is_ipv4() == other.start.is_ipv4()
            && (self.contains(other.start)
                || self.contains(other.end)
                || other.contains(self.start)
                || other.contains(self.end))
    }
}

/// The numeric value of an address.
pub(crate) fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The next address, wrapping within the family.
pub(crate) fn next_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(1))),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(1))),
    }
}

/// The last address of a subnet, minus the broadcast for IPv4.
fn last_ip(subnet: IpNet) -> IpAddr {
    match subnet {
        IpNet::V4(n) => IpAddr::V4(Ipv4Addr::from(u32::from(n.broadcast()) - 1)),
        IpNet::V6(n) => IpAddr::V6(n.broadcast()),
    }
}

/// `start-end,start-end` of a range set, for messages.
pub(super) fn describe_set(set: &[Range]) -> String {
    let parts: Vec<String> = set
        .iter()
        .map(|r| format!("{}-{}", r.start, r.end))
        .collect();
    parts.join(",")
}

/// Round-robin iterator of the reference `RangeIter`: starts after the last reserved
/// address when it is inside the set, else at the first range's start; skips gateways;
/// stops after one full cycle.
pub(super) struct RangeIter<'a> {
    set: &'a [Range],
    idx: usize,
    cur: Option<IpAddr>,
    start: Option<IpAddr>,
}

impl<'a> RangeIter<'a> {
    pub(super) fn new(set: &'a [Range], last: Option<IpAddr>) -> Self {
        let mut it = RangeIter {
            set,
            idx: 0,
            cur: None,
            start: None,
        };
        if let Some(last) = last
            && let Some(i) = set.iter().position(|r| r.contains(last))
        {
            it.idx = i;
            it.cur = Some(last);
        } else {
            it.start = Some(set[0].start);
        }
        it
    }

    pub(super) fn next(&mut self) -> Option<(IpAddr, usize)> {
        loop {
            let r = &self.set[self.idx];
            let Some(cur) = self.cur else {
                self.cur = Some(r.start);
                self.start = Some(r.start);
                if r.start == r.gateway {
                    continue;
                }
                return Some((r.start, self.idx));
            };
            if cur == r.end {
                self.idx = (self.idx + 1) % self.set.len();
                self.cur = Some(self.set[self.idx].start);
            } else {
                self.cur = Some(next_ip(cur));
            }
            let cur = self.cur.expect("set above");
            match self.start {
                None => self.start = Some(cur),
                Some(s) if s == cur => return None,
                Some(_) => {}
            }
            if cur == self.set[self.idx].gateway {
                continue;
            }
            return Some((cur, self.idx));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(s: &str) -> RangeConfig {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn defaults_match_the_reference_plugin() {
        let r = Range::canonical(&cfg(r#"{"subnet":"10.1.2.77/24"}"#)).unwrap();
        assert_eq!(r.subnet.to_string(), "10.1.2.0/24");
        assert_eq!(r.start.to_string(), "10.1.2.1");
        assert_eq!(r.end.to_string(), "10.1.2.254");
        assert_eq!(r.gateway.to_string(), "10.1.2.1");
        let r6 = Range::canonical(&cfg(r#"{"subnet":"fd00::/120"}"#)).unwrap();
        assert_eq!(r6.start.to_string(), "fd00::1");
        assert_eq!(r6.end.to_string(), "fd00::ff");
    }

    #[test]
    fn rejects_tiny_subnets_and_foreign_gateways() {
        assert!(Range::canonical(&cfg(r#"{"subnet":"10.0.0.0/31"}"#)).is_err());
        assert!(Range::canonical(&cfg(r#"{"subnet":"10.0.0.0/30"}"#)).is_ok());
        let e = Range::canonical(&cfg(r#"{"subnet":"10.0.0.0/24","gateway":"10.0.1.1"}"#));
        assert_eq!(
            e.unwrap_err(),
            "gateway 10.0.1.1 not in network 10.0.0.0/24"
        );
        let e = Range::canonical(&cfg(r#"{"subnet":"10.0.0.0/24","rangeStart":"fd00::1"}"#));
        assert!(e.is_err());
    }

    #[test]
    fn containment_and_overlap() {
        let a = Range::canonical(&cfg(
            r#"{"subnet":"10.0.0.0/24","rangeStart":"10.0.0.10","rangeEnd":"10.0.0.20"}"#,
        ))
        .unwrap();
        let b = Range::canonical(&cfg(
            r#"{"subnet":"10.0.0.0/24","rangeStart":"10.0.0.21","rangeEnd":"10.0.0.30"}"#,
        ))
        .unwrap();
        assert!(a.contains("10.0.0.10".parse().unwrap()));
        assert!(!a.contains("10.0.0.9".parse().unwrap()));
        assert!(!a.overlaps(&b));
        let c = Range::canonical(&cfg(r#"{"subnet":"10.0.0.0/16"}"#)).unwrap();
        assert!(a.overlaps(&c));
    }
}

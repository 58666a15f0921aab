//! `static` IPAM: addresses, routes and DNS exactly as configured (plus the `IP=` /
//! `GATEWAY=` CNI args and requested `ips`), nothing stored, nothing to release.

use std::net::IpAddr;

use ipnet::IpNet;
use plexus_core::cni::{Dns, IpConfig};
use serde::Deserialize;

use super::{Allocation, Request, RouteConfig, parse_ip_or_cidr, too_many_per_family};
use crate::error::{Error, Result};

/// A `static` IPAM section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    /// Always `static`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Addresses to assign.
    #[serde(default)]
    pub addresses: Vec<StaticAddress>,
    /// Routes returned in the result.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// DNS returned in the result.
    #[serde(default)]
    pub dns: Option<DnsConfig>,
}

/// One configured address.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticAddress {
    /// Address with prefix length (`10.1.2.3/24`).
    pub address: String,
    /// Gateway for this address.
    #[serde(default)]
    pub gateway: Option<IpAddr>,
}

/// DNS as written in a config (`types.DNS`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// Name servers.
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// Local domain.
    #[serde(default)]
    pub domain: String,
    /// Search list.
    #[serde(default)]
    pub search: Vec<String>,
    /// Options.
    #[serde(default)]
    pub options: Vec<String>,
}

impl StaticConfig {
    pub(super) fn allocate(&self, req: &Request) -> Result<Allocation> {
        let invalid = |reason: String| Error::InvalidIpam {
            network: req.network_name.to_string(),
            reason,
        };
        let mut ips = Vec::new();
        let cidr = |s: &str| -> Result<IpNet> {
            match parse_ip_or_cidr(s) {
                Some((ip, Some(net))) => IpNet::new(ip, net.prefix_len())
                    .map_err(|e| invalid(format!("invalid CIDR {s}: {e}"))),
                _ => Err(invalid(format!("invalid CIDR {s}"))),
            }
        };
        for a in &self.addresses {
            ips.push(IpConfig {
                interface: None,
                address: cidr(&a.address)?,
                gateway: a.gateway,
            });
        }
        // v1.1.1 `LoadIPAMConfig`: `IP=` entries are appended, `GATEWAY=` applies to them;
        // `args.cni.ips`, then runtimeConfig `ips`, replace everything before them.
        let mut from_arg = Vec::new();
        if let Some(arg) = &req.ip_arg {
            for item in arg.split(',') {
                from_arg.push(IpConfig {
                    interface: None,
                    address: cidr(item.trim())?,
                    gateway: None,
                });
            }
        }
        if let Some(gws) = &req.gateway_arg {
            for g in gws.split(',') {
                let gw: IpAddr = g
                    .trim()
                    .parse()
                    .map_err(|_| invalid(format!("invalid gateway address: {g}")))?;
                for ip in from_arg.iter_mut() {
                    if ip.address.trunc().contains(&gw) {
                        ip.gateway = Some(gw);
                    }
                }
            }
        }
        ips.extend(from_arg);
        for list in [&req.args_ips, &req.runtime_ips] {
            if list.is_empty() {
                continue;
            }
            ips = Vec::new();
            for item in list {
                let address = cidr(item.trim()).map_err(|_| {
                    invalid(format!(
                        "an entry in the 'ips' field is NOT in CIDR notation, got: '{item}'"
                    ))
                })?;
                ips.push(IpConfig {
                    interface: None,
                    address,
                    gateway: None,
                });
            }
        }
        if too_many_per_family(&req.cni_version, &ips) {
            return Err(invalid(format!(
                "CNI version {} does not support more than 1 address per family",
                req.cni_version
            )));
        }
        let dns = self.dns.clone().unwrap_or_default();
        Ok(Allocation {
            ips,
            routes: self.routes.iter().map(RouteConfig::to_route).collect(),
            dns: Dns {
                nameservers: dns.nameservers,
                domain: dns.domain,
                search: dns.search,
                options: dns.options,
            },
        })
    }
}

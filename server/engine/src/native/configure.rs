//! Puts an IPAM result on an interface the way the reference plugins' `ipam.ConfigureIface`
//! does: enable IPv6 on `lo` and the interface when an IPv6 address comes, add every
//! address attributed to the interface, bring it up (the drivers create their links up, and
//! then nothing is asked), then add the routes (a route without `gw` uses the first gateway
//! of its family).

use std::net::IpAddr;

use plexus_core::cni;
use plexus_netlink::{Handle, Link, OnExists, RouteSpec};

use crate::error::{Error, Result};

/// Configures `link` (named `ifname` in `result.interfaces`) in `pod`.
pub(crate) async fn configure_iface(pod: &Handle, link: &Link, result: &cni::Result) -> Result<()> {
    let nl = |op: String| {
        move |source| Error::Netlink {
            op,
            source: Box::new(source),
        }
    };
    let mut v4gw: Option<IpAddr> = None;
    let mut v6gw: Option<IpAddr> = None;
    let mut ipv6_enabled = false;
    for ipc in &result.ips {
        let Some(idx) = ipc.interface else { continue };
        if result.interfaces.get(idx).map(|i| i.name.as_str()) != Some(link.name.as_str()) {
            continue;
        }
        if !ipv6_enabled && ipc.address.addr().is_ipv6() {
            for iface in ["lo", link.name.as_str()] {
                let key = format!("net/ipv6/conf/{iface}/disable_ipv6");
                match pod.sysctl(&key).await {
                    Ok(v) if v.trim() != "0" => pod
                        .set_sysctl(&key, "0")
                        .await
                        .map_err(nl(format!("enable ipv6 on {iface}")))?,
                    _ => {}
                }
            }
            ipv6_enabled = true;
        }
        pod.add_address(link, ipc.address)
            .await
            .map_err(nl(format!("add address {} to {}", ipc.address, link.name)))?;
        match ipc.gateway {
            Some(g @ IpAddr::V4(_)) if v4gw.is_none() => v4gw = Some(g),
            Some(g @ IpAddr::V6(_)) if v6gw.is_none() => v6gw = Some(g),
            _ => {}
        }
    }
    // The drivers create their links up; asking again would only queue for the rtnl lock.
    if !link.up {
        pod.set_up(link)
            .await
            .map_err(nl(format!("set {} up", link.name)))?;
    }
    for r in &result.routes {
        let gw = r.gw.or(if r.dst.addr().is_ipv4() { v4gw } else { v6gw });
        let mut spec = RouteSpec::new(r.dst);
        if let Some(gw) = gw {
            spec = spec.via(gw);
        }
        spec.mtu = r.mtu;
        spec.advmss = r.advmss;
        spec.priority = r.priority;
        spec.table = r.table;
        spec.scope = r.scope.and_then(|s| u8::try_from(s).ok());
        pod.add_route(link, &spec, OnExists::Fail)
            .await
            .map_err(nl(format!("add route {} on {}", r.dst, link.name)))?;
    }
    Ok(())
}

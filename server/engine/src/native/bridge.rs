//! Native `bridge` + veth (reference plugin v1.1.1 keys). IPAM runs first here (the
//! gateway address the bridge gets comes from it); the links, result and sysctls match the
//! reference plugin. `ipMasq` (iptables) and `macspoofchk` (nftables) are not built in:
//! configs asking for them go to the exec path.

use std::net::IpAddr;

use ipnet::IpNet;
use plexus_core::cni;
use plexus_netlink::link::PodLink;
use plexus_netlink::link::bridge::{self, BridgeSpec, DEFAULT_BRIDGE};
use plexus_netlink::{Handle, Link};
use serde::Deserialize;

use super::{Ctx, NativeConfig, allocate, configure_iface, mtu, nl};
use crate::error::{Error, Result};
use crate::ipam::{self, Allocation, next_ip};

/// The bridge-specific keys.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conf {
    /// Bridge name (default `cni0`).
    #[serde(default)]
    pub bridge: Option<String>,
    /// Put the gateway address on the bridge.
    #[serde(default, rename = "isGateway")]
    pub is_gateway: bool,
    /// Also route the pod's default route via the bridge (implies `isGateway`).
    #[serde(default, rename = "isDefaultGateway")]
    pub is_default_gateway: bool,
    /// Replace a conflicting bridge address.
    #[serde(default, rename = "forceAddress")]
    pub force_address: bool,
    /// Masquerade (not built in).
    #[serde(default, rename = "ipMasq")]
    pub ip_masq: bool,
    /// MTU of bridge and veth (0: default).
    #[serde(default)]
    pub mtu: Option<i64>,
    /// Hairpin on the host port.
    #[serde(default, rename = "hairpinMode")]
    pub hairpin_mode: bool,
    /// Promiscuous bridge.
    #[serde(default, rename = "promiscMode")]
    pub promisc_mode: bool,
    /// Access vlan of the port.
    #[serde(default)]
    pub vlan: Option<i64>,
    /// MAC spoof check (not built in).
    #[serde(default)]
    pub macspoofchk: bool,
    /// Keep IPv6 DAD on.
    #[serde(default)]
    pub enabledad: bool,
}

impl Conf {
    /// True when no key asks for something the native path does not do.
    pub fn is_supported(&self) -> bool {
        !self.ip_masq && !self.macspoofchk
    }
}

fn default_dst(v6: bool) -> IpNet {
    if v6 { "::/0" } else { "0.0.0.0/0" }
        .parse()
        .expect("literal")
}

/// The reference `calcGatewayIP`: the first address of the subnet (wrapping at the top of
/// the address space, where a /32 or /128 of the last address has no "next" one).
fn first_ip(addr: &IpNet) -> IpAddr {
    next_ip(addr.network())
}

/// The pure part of an add: the gateway addresses the bridge gets and the default
/// routes it adds to `alloc` (reference `calcGateways`), and the bridge and veth spec.
/// No link exists yet; nothing here touches the host.
pub(super) fn plan(
    c: &Conf,
    cfg: &NativeConfig,
    ifname: &str,
    link_group: u32,
    alloc: Option<&mut Allocation>,
) -> Result<BridgeSpec> {
    let invalid = |reason: String| Error::InvalidConfig {
        network: cfg.name.to_string(),
        kind: "bridge".into(),
        reason,
    };
    let is_gw = c.is_gateway || c.is_default_gateway;
    let mut gateways = Vec::new();
    let layer3 = alloc.is_some();
    if let Some(a) = alloc {
        let mut default_routes = Vec::new();
        let mut seen_v4 = false;
        let mut seen_v6 = false;
        for ip in a.ips.iter_mut() {
            if ip.gateway.is_none() && is_gw {
                ip.gateway = Some(first_ip(&ip.address));
            }
            let Some(gw) = ip.gateway else { continue };
            let v6 = gw.is_ipv6();
            if v6 != ip.address.addr().is_ipv6() {
                return Err(invalid(format!(
                    "gateway {gw} is not of the same IP family as its address {}; accepted: an IPv4 gateway for an IPv4 address, an IPv6 gateway for an IPv6 address",
                    ip.address
                )));
            }
            if is_gw && !(if v6 { seen_v6 } else { seen_v4 }) {
                // Same family as the address (checked above), so the prefix fits.
                let net = IpNet::new(gw, ip.address.prefix_len())
                    .map_err(|e| invalid(format!("gateway {gw}: {e}")))?;
                gateways.push(net);
                if c.is_default_gateway {
                    default_routes.push((v6, gw));
                }
            }
            if v6 { seen_v6 = true } else { seen_v4 = true }
        }
        for (v6, gw) in default_routes {
            let exists = a
                .routes
                .iter()
                .any(|r| r.dst.prefix_len() == 0 && r.dst.addr().is_ipv6() == v6);
            if !exists {
                a.routes.push(cni::Route::new(default_dst(v6), Some(gw)));
            }
        }
    }
    let vlan = match c.vlan {
        None | Some(0) => None,
        Some(v) => Some(
            u16::try_from(v)
                .ok()
                .filter(|v| *v <= 4094)
                .ok_or_else(|| {
                    invalid(format!("invalid VLAN ID {v} (must be between 0 and 4094)"))
                })?,
        ),
    };
    let mut link = PodLink::new(ifname);
    link.mtu = mtu(&cfg.name, "bridge", c.mtu)?;
    link.mac = cfg.mac;
    link.group = link_group;
    let mut spec = BridgeSpec::new(
        c.bridge.clone().unwrap_or_else(|| DEFAULT_BRIDGE.into()),
        link,
    );
    spec.promisc = c.promisc_mode;
    spec.hairpin = c.hairpin_mode;
    spec.vlan = vlan;
    spec.gateways = gateways;
    spec.force_address = c.force_address;
    spec.layer3 = layer3;
    spec.enable_dad = c.enabledad;
    Ok(spec)
}

pub(super) async fn add(
    c: &Conf,
    cfg: &NativeConfig,
    ifname: &str,
    ctx: &Ctx<'_>,
    pod: &Handle,
    step: &mut (dyn FnMut(&str) + Send),
) -> Result<cni::Result> {
    // DHCP runs on the pod's veth end, so it needs the links first. Other IPAM runs first
    // when the bridge's gateway address comes from it, and otherwise while the links are
    // made: both may wait (for the lease directory, for the rtnl lock) on a busy node. A
    // failure of either leaves what the other made to the attachment's undo, which the
    // intent record names in full.
    let dhcp = match &cfg.ipam {
        Some(ipam::Config::Dhcp(d)) => Some(d),
        _ => None,
    };
    let create = |spec: BridgeSpec| async move {
        bridge::add(ctx.host, pod, &spec).await.map_err(nl(format!(
            "create veth {ifname} on bridge {}",
            spec.bridge
        )))
    };
    let (made, mut alloc) = if dhcp.is_some() {
        let mut spec = plan(c, cfg, ifname, ctx.link_group, None)?;
        spec.layer3 = true;
        let made = create(spec).await?;
        step("link");
        (made, None)
    } else if c.is_gateway || c.is_default_gateway {
        let mut alloc = allocate(cfg, ifname, ctx).await?;
        step("ipam");
        let spec = plan(c, cfg, ifname, ctx.link_group, alloc.as_mut())?;
        let made = create(spec).await?;
        step("link");
        (made, alloc)
    } else {
        let mut spec = plan(c, cfg, ifname, ctx.link_group, None)?;
        spec.layer3 = cfg.ipam.is_some();
        let made = async {
            let made = create(spec).await?;
            step("link");
            Ok::<_, Error>(made)
        };
        let (made, alloc) = tokio::join!(made, allocate(cfg, ifname, ctx));
        let (made, mut alloc) = (made?, alloc?);
        step("ipam");
        // The checks of the addresses (a gateway of the other family); without isGateway
        // nothing else of the plan depends on them.
        plan(c, cfg, ifname, ctx.link_group, alloc.as_mut())?;
        (made, alloc)
    };
    let mut dns = cfg.dns.clone();
    if let Some(d) = dhcp {
        let store = ipam::dhcp::LeaseStore::new(ctx.dhcp_lease_dir);
        let lease = ipam::dhcp::attach(
            d,
            &cfg.name,
            ctx.container_id,
            &made.pod_link,
            ctx.netns_path,
            pod,
            &store,
        )
        .await?;
        step("ipam");
        // The server's name servers when the config names none, as for the single-link
        // drivers.
        if dns == cni::Dns::default() {
            dns = lease.dns.clone();
        }
        alloc = Some(lease);
    }
    let iface = |l: &Link, sandbox: String| cni::Interface {
        name: l.name.clone(),
        mac: l.mac.map(|m| m.to_string()).unwrap_or_default(),
        sandbox,
        ..Default::default()
    };
    let mut result = cni::Result {
        cni_version: cfg.cni_version.clone(),
        interfaces: vec![
            iface(&made.bridge, String::new()),
            iface(&made.host_veth, String::new()),
            iface(&made.pod_link, ctx.netns_path.display().to_string()),
        ],
        dns,
        ..Default::default()
    };
    if let Some(a) = alloc {
        result.ips = a
            .ips
            .into_iter()
            .map(|mut ip| {
                ip.interface = Some(2);
                ip
            })
            .collect();
        result.routes = a.routes;
        // The bridge's MAC (interface 0) is as `bridge::add` found it after the gateway
        // address went on and the MAC was pinned: the pod's addresses do not change it.
        configure_iface(pod, &made.pod_link, &result).await?;
    }
    step("addr");
    Ok(result)
}

//! bridge driver: a host bridge (created when missing) and a veth pair whose host end is a
//! port of the bridge and whose other end is the pod interface.
//!
//! Mirrors the reference `bridge` plugin (containernetworking/plugins v1.1.1):
//! - bridge (default `cni0`): created with the configured MTU, `vlan_filtering` when a
//!   vlan is set, promiscuous when `promiscMode`, `net.ipv6.conf.<br>.accept_ra=0`, up;
//!   an existing link of that name that is not a bridge is an error;
//! - veth: the pod end gets the requested name, MTU and MAC, the host end a random
//!   `veth%08x` name, the same MTU and `accept_ra=0`, up, enslaved to the bridge, hairpin when
//!   `hairpinMode`, and with `vlan` an untagged PVID entry for that vlan on the port;
//! - layer 3: in the pod `net.ipv6.conf.<if>.accept_dad=0` (or `enhanced_dad=1` +
//!   `accept_dad=1` with `enabledad`) and `net.ipv4.conf.<if>.arp_notify=1`;
//! - `isGateway`: the gateway address(es) go on the bridge (`forceAddress` replaces a
//!   conflicting one), the bridge MAC is pinned to its current value so it stops following
//!   its ports, and forwarding is enabled in the host netns.
//!
//! The pod end is created from the pod netns with its peer placed in the host netns in
//! the same request (`IFLA_NET_NS_FD` inside the veth peer info, veth_newlink in
//! drivers/net/veth.c). `ipMasq` (iptables) is not done here: callers must not request it.

use std::net::IpAddr;

use ipnet::IpNet;
use rtnetlink::packet_route::link::{BridgeVlanInfoFlags, InfoData, InfoVeth};
use rtnetlink::{LinkBridge, LinkBridgePort, LinkBridgeVlan, LinkUnspec, LinkVeth};

use super::{Link, PodLink, best_effort_sysctl, create_in_pod};
use crate::error::{Error, Result};
use crate::handle::{Handle, LinkChange};
use crate::mac::random_bytes;

/// The reference plugin's default bridge name.
pub const DEFAULT_BRIDGE: &str = "cni0";

/// What to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSpec {
    /// Bridge name in the host netns.
    pub bridge: String,
    /// Set the bridge promiscuous (`promiscMode`).
    pub promisc: bool,
    /// Hairpin mode on the host port (`hairpinMode`).
    pub hairpin: bool,
    /// Access vlan of the port (`vlan`, 1..=4094); enables vlan filtering on a new bridge.
    pub vlan: Option<u16>,
    /// Gateway addresses to put on the bridge (`isGateway`): the gateway IP with the pod
    /// address's prefix length, e.g. `10.1.0.1/24`. Empty when not a gateway.
    pub gateways: Vec<IpNet>,
    /// Replace a conflicting bridge address instead of failing (`forceAddress`).
    pub force_address: bool,
    /// IPAM will configure addresses (sets the dad/arp sysctls in the pod).
    pub layer3: bool,
    /// Keep IPv6 DAD on (`enabledad`).
    pub enable_dad: bool,
    /// Pod end: name, mtu (also used for the bridge and the host end), mac, group.
    pub link: PodLink,
}

impl BridgeSpec {
    /// A layer-2 attachment of `link` to bridge `bridge` with reference defaults.
    pub fn new(bridge: impl Into<String>, link: PodLink) -> BridgeSpec {
        BridgeSpec {
            bridge: bridge.into(),
            promisc: false,
            hairpin: false,
            vlan: None,
            gateways: Vec::new(),
            force_address: false,
            layer3: false,
            enable_dad: false,
            link,
        }
    }
}

/// What [`add`] made, for the CNI result (`interfaces`: bridge, host veth, pod end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeAttachment {
    /// The bridge (host netns), re-read after the port was added.
    pub bridge: Link,
    /// The host end of the veth (host netns).
    pub host_veth: Link,
    /// The pod end (pod netns).
    pub pod_link: Link,
}

/// Creates or reuses the bridge, creates the veth pair and wires it up.
pub async fn add(host: &Handle, pod: &Handle, spec: &BridgeSpec) -> Result<BridgeAttachment> {
    validate(spec)?;
    // Independent until the host end goes on the bridge: made at once, so a node busy
    // with many pods queues for the rtnl lock once for both.
    let (bridge, veth) = tokio::join!(ensure_bridge(host, spec), create_veth(host, pod, spec));
    let (pod_link, host_name) = veth?;
    let wired = match bridge {
        Ok(bridge) => wire(host, pod, spec, &bridge, &pod_link, &host_name)
            .await
            .map(|()| bridge),
        Err(e) => Err(e),
    };
    match wired {
        Ok(bridge) => {
            // Both as they are now: the bridge's MAC may have followed its new port. Read
            // by ioctl (index, name, MTU, MAC, flags), without the rtnl lock.
            let peek = |name: &str| {
                host.peek_link(name)?.ok_or_else(|| Error::LinkNotFound {
                    name: name.to_string(),
                    netns: host.ns_name(),
                })
            };
            let (bridge, host_veth) = (peek(&bridge.name)?, peek(&host_name)?);
            Ok(BridgeAttachment {
                bridge,
                host_veth,
                pod_link,
            })
        }
        Err(e) => {
            // Undo: deleting the pod end removes the host end too.
            if let Err(undo) = pod.delete_link(&pod_link).await {
                tracing::warn!(error = %undo, link = %pod_link.name, "undo of veth failed");
            }
            Err(e)
        }
    }
}

/// Deletes the pod end `name` (its host peer goes with it); already gone is success.
/// The bridge is left in place, like the reference plugin.
pub async fn del(pod: &Handle, name: &str) -> Result<()> {
    pod.delete_link_by_name(name).await.map(|_| ())
}

fn validate(spec: &BridgeSpec) -> Result<()> {
    let invalid = |reason: &str| {
        Err(Error::InvalidSpec {
            kind: "bridge",
            reason: reason.to_string(),
        })
    };
    if spec.hairpin && spec.promisc {
        return invalid("hairpinMode and promiscMode cannot be set at the same time");
    }
    if let Some(v) = spec.vlan {
        if !(1..=4094).contains(&v) {
            return invalid("vlan must be between 1 and 4094");
        }
        if !spec.gateways.is_empty() {
            return invalid(
                "isGateway together with vlan (gateway vlan interface) is not supported by the native bridge driver",
            );
        }
    }
    Ok(())
}

/// The bridge, made if missing, up. Returned as found before it was set up: callers use
/// its index and name (`add` looks it up again once wired, for its final MAC).
async fn ensure_bridge(host: &Handle, spec: &BridgeSpec) -> Result<Link> {
    let br = match host.try_find_link(&spec.bridge).await? {
        Some(br) => br,
        None => {
            let mut b = LinkBridge::new(&spec.bridge);
            if let Some(mtu) = spec.link.mtu {
                b = b.mtu(mtu);
            }
            if spec.vlan.is_some() {
                b = b.vlan_filtering(true);
            }
            match host.create_link("bridge", &spec.bridge, b.build()).await {
                Ok(()) => {}
                // Another attachment created it concurrently.
                Err(e) if e.is_exists() => {}
                Err(e) => return Err(e),
            }
            host.find_link(&spec.bridge).await?
        }
    };
    if br.kind.as_deref() != Some("bridge") {
        return Err(Error::InvalidSpec {
            kind: "bridge",
            reason: format!("{:?} already exists but is not a bridge", spec.bridge),
        });
    }
    best_effort_sysctl(host, &format!("net/ipv6/conf/{}/accept_ra", br.name), "0").await;
    // Every request takes the rtnl lock, which a node starting many pods at once keeps
    // busy: a bridge that is already up (and promiscuous when asked) is left as it is.
    if !br.up || (spec.promisc && !br.promisc) {
        let mut change = LinkChange::new().up(true);
        if spec.promisc {
            change = change.promisc(true);
        }
        host.set_link(&br, &change).await?;
    }
    Ok(br)
}

/// A random host-side veth name like the reference `ip.RandomVethName` (`veth%08x`).
pub fn random_veth_name() -> String {
    let b = random_bytes::<4>();
    format!("veth{:02x}{:02x}{:02x}{:02x}", b[0], b[1], b[2], b[3])
}

async fn create_veth(host: &Handle, pod: &Handle, spec: &BridgeSpec) -> Result<(Link, String)> {
    use std::os::fd::{AsFd, AsRawFd};
    let mut last = None;
    for _ in 0..5 {
        let host_name = random_veth_name();
        // The peer cannot be brought up in the creating request: veth_open answers
        // ENOTCONN until both ends are registered (drivers/net/veth.c); `wire` does it.
        let mut peer =
            LinkUnspec::new_with_name(&host_name).setns_by_fd(host.netns().as_fd().as_raw_fd());
        if let Some(mtu) = spec.link.mtu {
            peer = peer.mtu(mtu);
        }
        let builder = LinkVeth::new(&spec.link.name, &host_name)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())));
        match create_in_pod(pod, pod, "veth", builder, &spec.link).await {
            Ok(link) => return Ok((link, host_name)),
            // EEXIST for the random host name: retry with another (makeVeth does too).
            Err(e) if e.is_exists() && pod.try_find_link(&spec.link.name).await?.is_none() => {
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or(Error::InvalidSpec {
        kind: "bridge",
        reason: "could not pick a free host veth name".into(),
    }))
}

async fn wire(
    host: &Handle,
    pod: &Handle,
    spec: &BridgeSpec,
    bridge: &Link,
    pod_link: &Link,
    host_name: &str,
) -> Result<()> {
    // The pod end's sysctls while the host end is put on the bridge: different netns,
    // independent.
    let (host_side, ()) = tokio::join!(
        async {
            // The host end's index, read without the rtnl lock.
            let veth = host
                .peek_link(host_name)?
                .ok_or_else(|| Error::LinkNotFound {
                    name: host_name.to_string(),
                    netns: host.ns_name(),
                })?;
            // The plugin's veth setup turns off router advertisements on the host end.
            best_effort_sysctl(host, &format!("net/ipv6/conf/{host_name}/accept_ra"), "0").await;
            host.set_link(
                &veth,
                &LinkChange::new().master(Some(bridge.index)).up(true),
            )
            .await?;
            Ok::<Link, Error>(veth)
        },
        pod_sysctls(pod, spec, pod_link)
    );
    let veth = host_side?;
    if spec.hairpin {
        let msg = LinkBridgePort::new(veth.index).hairpin(true).build();
        host.rtnetlink()
            .link()
            .set_port(msg)
            .execute()
            .await
            .map_err(|source| Error::SetLink {
                name: veth.name.clone(),
                what: "hairpin",
                source,
            })?;
    }
    if let Some(vid) = spec.vlan {
        let msg = LinkBridgeVlan::new(veth.index)
            .vlan(
                vid,
                BridgeVlanInfoFlags::Pvid | BridgeVlanInfoFlags::Untagged,
            )
            .build();
        host.rtnetlink()
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|source| Error::SetLink {
                name: veth.name.clone(),
                what: "bridge vlan",
                source,
            })?;
    }
    for gw in &spec.gateways {
        ensure_gateway_addr(host, bridge, *gw, spec.force_address).await?;
    }
    if spec.gateways.iter().any(|g| g.addr().is_ipv4()) {
        host.set_sysctl("net/ipv4/ip_forward", "1").await?;
    }
    if spec.gateways.iter().any(|g| g.addr().is_ipv6()) {
        host.set_sysctl("net/ipv6/conf/all/forwarding", "1").await?;
    }
    Ok(())
}

/// The pod end's DAD and ARP sysctls when it gets addresses (`layer3`).
async fn pod_sysctls(pod: &Handle, spec: &BridgeSpec, pod_link: &Link) {
    if !spec.layer3 {
        return;
    }
    let name = &pod_link.name;
    if spec.enable_dad {
        best_effort_sysctl(pod, &format!("net/ipv6/conf/{name}/enhanced_dad"), "1").await;
        best_effort_sysctl(pod, &format!("net/ipv6/conf/{name}/accept_dad"), "1").await;
    } else {
        best_effort_sysctl(pod, &format!("net/ipv6/conf/{name}/accept_dad"), "0").await;
    }
    best_effort_sysctl(pod, &format!("net/ipv4/conf/{name}/arp_notify"), "1").await;
}

/// Puts `gw` on the bridge like the reference `ensureAddr`: already there is fine; an
/// IPv4 address, or an overlapping IPv6 one, that differs is replaced with
/// `force_address` and an error otherwise. Then pins the bridge MAC to its current value.
async fn ensure_gateway_addr(host: &Handle, bridge: &Link, gw: IpNet, force: bool) -> Result<()> {
    let existing = host.addresses(Some(bridge.index)).await?;
    let same_family = |a: &IpNet| a.addr().is_ipv4() == gw.addr().is_ipv4();
    let mut present = false;
    for a in existing.iter().map(|a| a.addr).filter(same_family) {
        if a == gw {
            present = true;
            continue;
        }
        let is_link_local =
            matches!(a.addr(), IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
        let conflicts = gw.addr().is_ipv4()
            || (!is_link_local && (a.contains(&gw.addr()) || gw.contains(&a.addr())));
        if conflicts {
            if !force {
                return Err(Error::InvalidSpec {
                    kind: "bridge",
                    reason: format!(
                        "{:?} already has an IP address different from {gw} ({a}); set forceAddress to replace it",
                        bridge.name
                    ),
                });
            }
            host.delete_address(bridge, a).await?;
        }
    }
    if !present {
        match host.add_address(bridge, gw).await {
            Ok(()) => {}
            Err(e) if e.is_exists() => {}
            Err(e) => return Err(e),
        }
    }
    let br = host.find_link(&bridge.name).await?;
    if let Some(mac) = br.mac {
        host.set_link(&br, &LinkChange::new().mac(mac)).await?;
    }
    Ok(())
}

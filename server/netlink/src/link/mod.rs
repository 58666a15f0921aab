//! Links: the [`Link`] snapshot type and the native drivers, one file per link kind.
//!
//! A driver creates its link so that it lands in the pod netns with its final name in one
//! `RTM_NEWLINK` where the kernel allows it (`IFLA_NET_NS_FD` + `IFLA_IFNAME`, applied by
//! `rtnl_newlink` in the target netns), sets mtu/mac/group in the same request, and brings
//! it up. Drivers do not assign IP addresses or routes: that is IPAM's job in the engine.
//! Every link a driver creates in a pod carries the attachment's link group (see
//! [`DEFAULT_LINK_GROUP`] and [`crate::Handle::delete_group`]) except host devices, which
//! are moved back out on teardown instead of deleted.

pub mod bridge;
pub mod host_device;
pub mod ipvlan;
pub mod macvlan;
pub mod vlan;

#[cfg(test)]
mod tests;

use rtnetlink::packet_route::link::{
    InfoBridge, InfoBridgePort, InfoData, InfoIpVlan, InfoMacVlan, InfoPortData, InfoVlan,
    LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};

pub use bridge::{BridgeAttachment, BridgeSpec};
pub use host_device::{HostDeviceAttachment, HostDeviceSpec};
pub use ipvlan::{IpvlanFlag, IpvlanMode, IpvlanSpec};
pub use macvlan::{MacvlanMode, MacvlanSpec};
pub use vlan::VlanSpec;

use crate::mac::MacAddr;

/// The link group plexus puts every link it creates in a pod netns into ("plx").
pub const DEFAULT_LINK_GROUP: u32 = 0x0070_6c78;

/// A link as the kernel reports it (one `RTM_NEWLINK` reply), in domain terms.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Link {
    /// Interface index in its netns.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// `IFLA_INFO_KIND` (`macvlan`, `veth`, `bridge`, ...); `None` for physical/loopback.
    pub kind: Option<String>,
    /// MTU.
    pub mtu: u32,
    /// Hardware address, when the link has a 6-byte one.
    pub mac: Option<MacAddr>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Promiscuous mode (`IFF_PROMISC`).
    pub promisc: bool,
    /// Index of the master (bridge) this link is enslaved to.
    pub master: Option<u32>,
    /// Link group (`IFLA_GROUP`), 0 by default.
    pub group: u32,
    /// Parent link index (`IFLA_LINK`: macvlan/ipvlan/vlan lower device, veth peer).
    pub parent: Option<u32>,
    /// The peer/lower device's netns id relative to this netns (`IFLA_LINK_NETNSID`).
    pub parent_netns_id: Option<i32>,
    /// macvlan mode, for macvlan links.
    pub macvlan_mode: Option<MacvlanMode>,
    /// ipvlan mode and flag, for ipvlan links.
    pub ipvlan: Option<(IpvlanMode, IpvlanFlag)>,
    /// 802.1q id, for vlan links.
    pub vlan_id: Option<u16>,
    /// Interface alias (`IFLA_IFALIAS`); host-device stores the host name there.
    pub alias: Option<String>,
    /// Hairpin mode, for bridge ports.
    pub hairpin: Option<bool>,
    /// VLAN filtering, for bridges.
    pub vlan_filtering: Option<bool>,
}

impl Link {
    /// Reads a link reply.
    pub(crate) fn from_message(msg: &LinkMessage) -> Link {
        let mut link = Link {
            index: msg.header.index,
            up: msg.header.flags.contains(LinkFlags::Up),
            promisc: msg.header.flags.contains(LinkFlags::Promisc),
            ..Link::default()
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => link.name = n.clone(),
                LinkAttribute::Mtu(m) => link.mtu = *m,
                LinkAttribute::Address(a) => link.mac = MacAddr::from_slice(a),
                LinkAttribute::Controller(m) if *m != 0 => link.master = Some(*m),
                LinkAttribute::Group(g) => link.group = *g,
                LinkAttribute::Link(p) if *p != 0 => link.parent = Some(*p),
                LinkAttribute::LinkNetNsId(id) => link.parent_netns_id = Some(*id),
                LinkAttribute::LinkInfo(infos) => link.read_info(infos),
                LinkAttribute::IfAlias(a) => link.alias = Some(a.clone()),
                _ => {}
            }
        }
        link
    }

    fn read_info(&mut self, infos: &[LinkInfo]) {
        for info in infos {
            match info {
                LinkInfo::Kind(k) => self.kind = Some(k.to_string()),
                LinkInfo::Data(InfoData::MacVlan(d)) => {
                    for i in d {
                        if let InfoMacVlan::Mode(m) = i {
                            self.macvlan_mode = MacvlanMode::from_kernel(*m);
                        }
                    }
                }
                LinkInfo::Data(InfoData::IpVlan(d)) => {
                    let mut mode = None;
                    let mut flag = IpvlanFlag::Bridge;
                    for i in d {
                        match i {
                            InfoIpVlan::Mode(m) => mode = IpvlanMode::from_kernel(*m),
                            InfoIpVlan::Flags(f) => flag = IpvlanFlag::from_kernel(*f),
                            _ => {}
                        }
                    }
                    self.ipvlan = mode.map(|m| (m, flag));
                }
                LinkInfo::Data(InfoData::Vlan(d)) => {
                    for i in d {
                        if let InfoVlan::Id(id) = i {
                            self.vlan_id = Some(*id);
                        }
                    }
                }
                LinkInfo::Data(InfoData::Bridge(d)) => {
                    for i in d {
                        if let InfoBridge::VlanFiltering(v) = i {
                            self.vlan_filtering = Some(*v);
                        }
                    }
                }
                LinkInfo::PortData(InfoPortData::BridgePort(d)) => {
                    for i in d {
                        if let InfoBridgePort::HairpinMode(h) = i {
                            self.hairpin = Some(*h);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// Where and how a driver's link ends up in the pod: final name, optional mtu and mac,
/// and the link group (0 leaves the kernel default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLink {
    /// Final interface name inside the pod (`net1`).
    pub name: String,
    /// MTU; `None` keeps the kernel's (inherited from the parent for macvlan/ipvlan/vlan).
    pub mtu: Option<u32>,
    /// MAC; `None` lets the kernel pick a random one.
    pub mac: Option<MacAddr>,
    /// Link group for fast teardown.
    pub group: u32,
}

impl PodLink {
    /// A pod link named `name`, default mtu and mac, in [`DEFAULT_LINK_GROUP`].
    pub fn new(name: impl Into<String>) -> PodLink {
        PodLink {
            name: name.into(),
            mtu: None,
            mac: None,
            group: DEFAULT_LINK_GROUP,
        }
    }
}

/// Creates a link described by `builder` (already carrying kind, final name and parent)
/// so that it lands in `pod` named, sized, grouped and up, in one `RTM_NEWLINK`.
///
/// `creator` is the handle whose netns holds the parent device; when it is not the pod's,
/// `IFLA_NET_NS_FD` makes the kernel register the new device directly in the pod netns
/// (the parent index is resolved in the creator's netns, `rtnl_newlink` / `link_net`),
/// so the name never exists in the host and cannot collide there. Returns the link as
/// seen in the pod by [`Handle::peek_link`](crate::Handle::peek_link) (index, name, MTU,
/// MAC, flags), with the requested kind and group.
pub(crate) async fn create_in_pod<T>(
    creator: &crate::Handle,
    pod: &crate::Handle,
    kind: &str,
    builder: rtnetlink::LinkMessageBuilder<T>,
    spec: &PodLink,
) -> crate::Result<Link> {
    use std::os::fd::{AsFd, AsRawFd};
    let mut b = builder;
    if let Some(mtu) = spec.mtu {
        b = b.mtu(mtu);
    }
    if let Some(mac) = spec.mac {
        b = b.address(mac.0.to_vec());
    }
    if spec.group != 0 {
        b = b.link_group(spec.group);
    }
    b = b.up();
    let same_ns = creator.netns().inode()? == pod.netns().inode()?;
    let fd = pod.netns().as_fd();
    if !same_ns {
        b = b.setns_by_fd(fd.as_raw_fd());
    }
    creator.create_link(kind, &spec.name, b.build()).await?;
    // Read back without the rtnl lock: what callers use (index, MTU, MAC, up) comes from
    // ioctls; the kind and group are the request's.
    let link = pod
        .peek_link(&spec.name)?
        .ok_or_else(|| crate::Error::LinkNotFound {
            name: spec.name.clone(),
            netns: pod.ns_name(),
        })?;
    Ok(Link {
        kind: Some(kind.to_string()),
        group: spec.group,
        ..link
    })
}

/// The master named `name`, or (when `None`) the link of the first default route in
/// `handle`'s netns, like the reference plugins' `getDefaultRouteInterfaceName`.
pub(crate) async fn resolve_master(
    handle: &crate::Handle,
    kind: &'static str,
    name: Option<&str>,
) -> crate::Result<Link> {
    if let Some(n) = name {
        // Its index, name and MTU are all that is used: read without the rtnl lock.
        return handle
            .peek_link(n)?
            .ok_or_else(|| crate::Error::LinkNotFound {
                name: n.to_string(),
                netns: handle.ns_name(),
            });
    }
    let routes = handle.routes().await?;
    let oif = routes
        .iter()
        .filter(|r| r.is_default() && r.kind == 1)
        .find_map(|r| r.oif)
        .ok_or_else(|| crate::Error::InvalidSpec {
            kind,
            reason: format!(
                "no master given and no default route in {} to take it from",
                handle.ns_name()
            ),
        })?;
    handle
        .try_link_by_index(oif)
        .await?
        .ok_or_else(|| crate::Error::LinkNotFound {
            name: format!("#{oif}"),
            netns: handle.ns_name(),
        })
}

/// Checks a requested MTU against the master's, as the reference plugins do
/// ("invalid MTU %d, must be [0, master MTU(%d)]").
pub(crate) fn check_mtu(kind: &'static str, mtu: Option<u32>, master: &Link) -> crate::Result<()> {
    match mtu {
        Some(m) if m > master.mtu => Err(crate::Error::InvalidSpec {
            kind,
            reason: format!(
                "mtu {m} is larger than the mtu {} of master {}; accepted: 0..={}",
                master.mtu, master.name, master.mtu
            ),
        }),
        _ => Ok(()),
    }
}

/// Writes a sysctl the reference plugins set while ignoring failures (e.g. IPv6 disabled
/// in the netns); failures are logged.
pub(crate) async fn best_effort_sysctl(handle: &crate::Handle, key: &str, value: &str) {
    if let Err(e) = handle.set_sysctl(key, value).await {
        tracing::debug!(key, value, error = %e, "sysctl not set");
    }
}

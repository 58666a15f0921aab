//! The pure half of a native add: from a classified config (and, for bridge, its IPAM
//! allocation) to the exact links that will be created, without touching netlink or the
//! host. Every check a user's NAD can fail happens here, so it is unit-tested and fuzzed
//! (`server/fuzz`, target `native_plan`) without root.

use plexus_netlink::link::bridge::BridgeSpec;
use plexus_netlink::link::host_device::HostDeviceSpec;
use plexus_netlink::link::ipvlan::IpvlanSpec;
use plexus_netlink::link::macvlan::MacvlanSpec;
use plexus_netlink::link::vlan::VlanSpec;

use super::{Kind, NativeConfig, bridge, ipvlan, macvlan, vlan};
use crate::error::Result;
use crate::ipam::Allocation;

/// The links a native attachment creates, decided before any of them exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkPlan {
    /// A macvlan on a host master.
    Macvlan(MacvlanSpec),
    /// An ipvlan on a host master.
    Ipvlan(IpvlanSpec),
    /// An 802.1q vlan on a host master.
    Vlan(VlanSpec),
    /// A host device moved into the pod.
    HostDevice(HostDeviceSpec),
    /// A veth pair with its host end on a bridge (with the bridge's gateway addresses).
    Bridge(BridgeSpec),
}

/// Plans the links of `cfg` for the pod interface `ifname`. `alloc` is the IPAM
/// allocation when the config has IPAM; the bridge driver takes its gateway addresses from
/// it and adds its default routes to it (reference `calcGateways`), the others ignore it
/// (they allocate after the link exists). Pure: an invalid config is an
/// [`Error::InvalidConfig`](crate::Error::InvalidConfig) naming the network and what is
/// accepted, never a panic.
pub fn plan_links(
    cfg: &NativeConfig,
    ifname: &str,
    link_group: u32,
    alloc: Option<&mut Allocation>,
) -> Result<LinkPlan> {
    Ok(match &cfg.kind {
        Kind::Macvlan(c) => LinkPlan::Macvlan(macvlan::spec(c, cfg, ifname, link_group)?),
        Kind::Ipvlan(c) => LinkPlan::Ipvlan(ipvlan::spec(c, cfg, ifname, link_group)?),
        Kind::Vlan(c) => LinkPlan::Vlan(vlan::spec(c, cfg, ifname, link_group)?),
        Kind::HostDevice(c) => LinkPlan::HostDevice(HostDeviceSpec::Name(c.device.clone())),
        Kind::Bridge(c) => LinkPlan::Bridge(bridge::plan(c, cfg, ifname, link_group, alloc)?),
    })
}

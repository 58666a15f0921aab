//! Native `vlan` (reference plugin v1.1.1 keys: `master`, `vlanId`, `mtu`).

use plexus_core::cni;
use plexus_netlink::Handle;
use plexus_netlink::link::PodLink;
use plexus_netlink::link::vlan::{self, VlanSpec};
use serde::Deserialize;

use super::{Ctx, NativeConfig, finish_single, mtu, nl_named};
use crate::error::{Error, Result};

/// The vlan-specific keys.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conf {
    /// Master link in the host netns.
    pub master: String,
    /// 802.1q id.
    #[serde(rename = "vlanId")]
    pub vlan_id: i64,
    /// MTU (0: inherit).
    #[serde(default)]
    pub mtu: Option<i64>,
}

/// The link to create, from the config alone (pure; checks the VLAN id and MTU).
pub(super) fn spec(
    c: &Conf,
    cfg: &NativeConfig,
    ifname: &str,
    link_group: u32,
) -> Result<VlanSpec> {
    let id = u16::try_from(c.vlan_id)
        .ok()
        .filter(|v| *v <= 4094)
        .ok_or_else(|| Error::InvalidConfig {
            network: cfg.name.to_string(),
            kind: "vlan".into(),
            reason: format!("invalid VLAN ID {} (must be between 0 and 4094)", c.vlan_id),
        })?;
    let mut link = PodLink::new(ifname);
    link.mtu = mtu(&cfg.name, "vlan", c.mtu)?;
    link.group = link_group;
    Ok(VlanSpec {
        master: c.master.clone(),
        master_in_pod: false,
        id,
        link,
    })
}

pub(super) async fn add(
    c: &Conf,
    cfg: &NativeConfig,
    ifname: &str,
    ctx: &Ctx<'_>,
    pod: &Handle,
    step: &mut (dyn FnMut(&str) + Send),
) -> Result<cni::Result> {
    let spec = spec(c, cfg, ifname, ctx.link_group)?;
    let op = format!("create vlan {} {ifname} on {}", spec.id, c.master);
    let create = async {
        vlan::add(ctx.host, pod, &spec)
            .await
            .map_err(nl_named(&cfg.name, "master", &c.master, op))
    };
    finish_single(cfg, create, ifname, ctx, pod, step).await
}

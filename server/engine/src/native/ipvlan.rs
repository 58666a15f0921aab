//! Native `ipvlan` (reference plugin v1.1.1 keys: `master`, `mode`, `mtu`).

use plexus_core::cni;
use plexus_netlink::Handle;
use plexus_netlink::link::PodLink;
use plexus_netlink::link::ipvlan::{self, IpvlanFlag, IpvlanMode, IpvlanSpec};
use serde::Deserialize;

use super::{Ctx, NativeConfig, finish_single, mtu, nl_named};
use crate::error::{Error, Result};

/// The ipvlan-specific keys.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conf {
    /// Master link in the host netns.
    pub master: String,
    /// `l2` (default), `l3`, `l3s`.
    #[serde(default)]
    pub mode: String,
    /// MTU (0: inherit).
    #[serde(default)]
    pub mtu: Option<i64>,
}

/// The link to create, from the config alone (pure; checks the mode and MTU).
pub(super) fn spec(
    c: &Conf,
    cfg: &NativeConfig,
    ifname: &str,
    link_group: u32,
) -> Result<IpvlanSpec> {
    let mode: IpvlanMode =
        c.mode
            .parse()
            .map_err(|e: plexus_netlink::Error| Error::InvalidConfig {
                network: cfg.name.to_string(),
                kind: "ipvlan".into(),
                reason: e.to_string(),
            })?;
    let mut link = PodLink::new(ifname);
    link.mtu = mtu(&cfg.name, "ipvlan", c.mtu)?;
    link.group = link_group;
    Ok(IpvlanSpec {
        master: Some(c.master.clone()),
        master_in_pod: false,
        mode,
        flag: IpvlanFlag::Bridge,
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
    let create = async {
        ipvlan::add(ctx.host, pod, &spec).await.map_err(nl_named(
            &cfg.name,
            "master",
            &c.master,
            format!("create ipvlan {ifname} on {}", c.master),
        ))
    };
    finish_single(cfg, create, ifname, ctx, pod, step).await
}

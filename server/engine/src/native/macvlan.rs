//! Native `macvlan` (reference plugin keys: `master`, `mode`, `mtu`, `mac`).

use plexus_core::cni;
use plexus_netlink::Handle;
use plexus_netlink::link::PodLink;
use plexus_netlink::link::macvlan::{self, MacvlanMode, MacvlanSpec};
use serde::Deserialize;

use super::{Ctx, NativeConfig, finish_single, mtu, nl_named};
use crate::error::{Error, Result};

/// The macvlan-specific keys.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conf {
    /// Master link in the host netns.
    pub master: String,
    /// `bridge` (default), `private`, `vepa`, `passthru`.
    #[serde(default)]
    pub mode: String,
    /// MTU (0: inherit).
    #[serde(default)]
    pub mtu: Option<i64>,
    /// MAC address.
    #[serde(default)]
    pub mac: Option<String>,
}

/// The link to create, from the config alone (pure; checks the mode and MTU).
pub(super) fn spec(
    c: &Conf,
    cfg: &NativeConfig,
    ifname: &str,
    link_group: u32,
) -> Result<MacvlanSpec> {
    let invalid = |reason: String| Error::InvalidConfig {
        network: cfg.name.to_string(),
        kind: "macvlan".into(),
        reason,
    };
    // v1.1.1 knows four modes; `source` came later.
    let mode: MacvlanMode = match c.mode.as_str() {
        "" | "bridge" | "private" | "vepa" | "passthru" => c
            .mode
            .parse()
            .map_err(|e: plexus_netlink::Error| invalid(e.to_string()))?,
        other => return Err(invalid(format!("unknown macvlan mode: {other:?}"))),
    };
    let mut link = PodLink::new(ifname);
    link.mtu = mtu(&cfg.name, "macvlan", c.mtu)?;
    link.mac = cfg.mac;
    link.group = link_group;
    Ok(MacvlanSpec {
        master: Some(c.master.clone()),
        master_in_pod: false,
        mode,
        link,
        layer3: cfg.ipam.is_some(),
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
        macvlan::add(ctx.host, pod, &spec).await.map_err(nl_named(
            &cfg.name,
            "master",
            &c.master,
            format!("create macvlan {ifname} on {}", c.master),
        ))
    };
    finish_single(cfg, create, ifname, ctx, pod, step).await
}

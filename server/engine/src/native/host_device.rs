//! Native `host-device` by name (reference key `device`; `hwaddr`, `kernelpath` and
//! `pciBusID` selection is left to the exec path). The device is moved into the pod under
//! the requested name and moved back under its recorded original name on teardown; it is
//! never put in the link group, so a group delete cannot destroy it.

use plexus_core::cni;
use plexus_netlink::Handle;
use plexus_netlink::link::host_device::{self, HostDeviceSpec};
use serde::Deserialize;

use super::{Ctx, NativeConfig, finish_single, nl, nl_named};
use crate::error::Result;

/// The host-device keys the native path takes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conf {
    /// The host link's name.
    pub device: String,
}

pub(super) async fn add(
    c: &Conf,
    cfg: &NativeConfig,
    ifname: &str,
    ctx: &Ctx<'_>,
    pod: &Handle,
    step: &mut (dyn FnMut(&str) + Send),
) -> Result<cni::Result> {
    let spec = HostDeviceSpec::Name(c.device.clone());
    let moved = async {
        let moved = host_device::add(ctx.host, pod, &spec, ifname).await;
        moved.map(|m| m.pod_link).map_err(nl_named(
            &cfg.name,
            "device",
            &c.device,
            format!("move host device {} into the pod as {ifname}", c.device),
        ))
    };
    finish_single(cfg, moved, ifname, ctx, pod, step).await
}

/// Moves `ifname` back out of the pod as `original`; absent is fine.
pub(super) async fn del(original: &str, ifname: &str, ctx: &Ctx<'_>) -> Result<()> {
    let Some(pod) = ctx.pod else {
        // With the pod netns gone the kernel already returned a physical device to the
        // initial netns (virtual ones are destroyed with the netns).
        return Ok(());
    };
    // Addresses the pod put on it must not follow it back to the host.
    if let Some(link) = pod
        .try_find_link(ifname)
        .await
        .map_err(nl(format!("find {ifname}")))?
    {
        for a in pod
            .addresses(Some(link.index))
            .await
            .map_err(nl(format!("list addresses of {ifname}")))?
        {
            pod.delete_address(&link, a.addr)
                .await
                .map_err(nl(format!("delete {} from {ifname}", a.addr)))?;
        }
    }
    host_device::del(ctx.host, pod, ifname, Some(original))
        .await
        .map_err(nl(format!("move {ifname} back to the host as {original}")))
}

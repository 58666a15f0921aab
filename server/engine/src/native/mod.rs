//! The native path: decides whether an attachment's CNI config is fully understood
//! (type built in, every key known, capabilities and CNI args covered) and, if so, does
//! what the reference plugin (containernetworking/plugins v1.1.1) would do, in-process:
//! link via `plexus_netlink`, addresses via built-in IPAM, the same CNI result.
//!
//! Anything not understood returns `None` from [`classify`] and goes to the exec path; this
//! module never guesses at a key it does not know.

mod bridge;
mod classify;
mod configure;
mod host_device;
mod ipvlan;
mod macvlan;
mod plan;
mod vlan;

use std::path::Path;

use plexus_core::cni::{self, Dns};
use plexus_netlink::{Handle, MacAddr};

use crate::error::{Error, Result};
use crate::ipam;
use crate::state::NativeRecord;

pub use classify::classify;
pub(crate) use configure::configure_iface;
pub use plan::{LinkPlan, plan_links};

/// A driver config the native path understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `macvlan`.
    Macvlan(macvlan::Conf),
    /// `ipvlan`.
    Ipvlan(ipvlan::Conf),
    /// `bridge` (with a veth pair).
    Bridge(bridge::Conf),
    /// `host-device` (by name).
    HostDevice(host_device::Conf),
    /// `vlan`.
    Vlan(vlan::Conf),
}

impl Kind {
    /// The CNI plugin type.
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Macvlan(_) => "macvlan",
            Kind::Ipvlan(_) => "ipvlan",
            Kind::Bridge(_) => "bridge",
            Kind::HostDevice(_) => "host-device",
            Kind::Vlan(_) => "vlan",
        }
    }
}

/// A fully understood attachment config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeConfig {
    /// Driver and its keys.
    pub kind: Kind,
    /// The CNI network `name` (it names the host-local lease directory).
    pub name: plexus_core::NetworkName,
    /// `cniVersion` (the result is labelled with it).
    pub cni_version: String,
    /// IPAM, when the config has a non-empty `ipam.type`.
    pub ipam: Option<ipam::Config>,
    /// Top-level `dns` (what the reference main plugins put in their result).
    pub dns: Dns,
    /// `IP=` CNI arg.
    pub ip_arg: Option<String>,
    /// `args.cni.ips`.
    pub args_ips: Vec<String>,
    /// runtimeConfig `ips` (in the config bytes, or the plan's when the `ips`
    /// capability is declared).
    pub runtime_ips: Vec<String>,
    /// `GATEWAY=` CNI arg.
    pub gateway_arg: Option<String>,
    /// MAC requested through `MAC=`, `args.cni.mac` or the `mac` capability, per the
    /// driver's own precedence.
    pub mac: Option<MacAddr>,
}

/// Everything a native add/del needs to know about its surroundings.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    /// The netns holding masters, bridges and host devices.
    pub host: &'a Handle,
    /// The pod netns, when it still exists.
    pub pod: Option<&'a Handle>,
    /// The pod netns path as given (reported as `sandbox` in results).
    pub netns_path: &'a Path,
    /// The sandbox (CNI container) id.
    pub container_id: &'a str,
    /// Default host-local lease root.
    pub ipam_data_dir: &'a Path,
    /// Native dhcp lease files.
    pub dhcp_lease_dir: &'a Path,
    /// Link group for pod links.
    pub link_group: u32,
}

/// Names everything the attachment will create, before anything is created, so the
/// intent record can undo a crash at any later point.
pub(crate) fn plan_record(cfg: &NativeConfig, ifname: &str, ctx: &Ctx<'_>) -> NativeRecord {
    let lease = cfg.ipam.as_ref().and_then(|i| {
        ipam::lease_for(
            i,
            &ipam_request(cfg, ifname, ctx.container_id),
            ctx.ipam_data_dir,
        )
    });
    NativeRecord {
        kind: cfg.kind.as_str().to_string(),
        leases: lease.into_iter().collect(),
        host_device: match &cfg.kind {
            Kind::HostDevice(h) => Some(h.device.clone()),
            _ => None,
        },
        ..Default::default()
    }
}

pub(crate) fn ipam_request(cfg: &NativeConfig, ifname: &str, container_id: &str) -> ipam::Request {
    ipam::Request {
        network_name: cfg.name.clone(),
        container_id: container_id.to_string(),
        ifname: ifname.to_string(),
        cni_version: cfg.cni_version.clone(),
        ip_arg: cfg.ip_arg.clone(),
        args_ips: cfg.args_ips.clone(),
        runtime_ips: cfg.runtime_ips.clone(),
        gateway_arg: cfg.gateway_arg.clone(),
        gave_up: ipam::GaveUp::default(),
    }
}

/// Set when dropped; an allocation that finished ignores it.
#[derive(Debug, Default)]
struct Abandoned(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for Abandoned {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Runs IPAM off the async runtime.
pub(crate) async fn allocate(
    cfg: &NativeConfig,
    ifname: &str,
    ctx: &Ctx<'_>,
) -> Result<Option<ipam::Allocation>> {
    let Some(ipam_cfg) = cfg.ipam.clone() else {
        return Ok(None);
    };
    let abandoned = Abandoned::default();
    let req = ipam::Request {
        gave_up: ipam::GaveUp::watching(abandoned.0.clone()),
        ..ipam_request(cfg, ifname, ctx.container_id)
    };
    let dir = ctx.ipam_data_dir.to_path_buf();
    // A host-local allocation waits its turn at its lease directory (`ipam::turns`).
    let _turn = match ipam::lease_for(&ipam_cfg, &req, &dir) {
        Some(lease) => Some(ipam::turns::turn(&lease.dir).await),
        None => None,
    };
    let span = tracing::Span::current();
    // `abandoned` dropped (a deadline cut the setup) before the blocking part took the
    // directory's lock: it takes nothing then (`ipam::GaveUp`).
    let alloc = tokio::task::spawn_blocking(move || {
        span.in_scope(|| ipam::allocate(&ipam_cfg, &req, &dir))
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))??;
    drop(abandoned);
    if alloc.ips.is_empty() {
        return Err(Error::InvalidIpam {
            network: cfg.name.to_string(),
            reason: "IPAM plugin returned missing IP config".into(),
        });
    }
    Ok(Some(alloc))
}

/// Creates the attachment; `rec` is the planned record (host names, leases). Calls
/// `step` after each crash-relevant step.
pub(crate) async fn add(
    cfg: &NativeConfig,
    ifname: &str,
    ctx: &Ctx<'_>,
    step: &mut (dyn FnMut(&str) + Send),
) -> Result<cni::Result> {
    let pod = ctx.pod.ok_or_else(|| Error::InvalidConfig {
        network: cfg.name.to_string(),
        kind: cfg.kind.as_str().into(),
        reason: "pod network namespace is gone".into(),
    })?;
    let mut result = match &cfg.kind {
        Kind::Macvlan(c) => macvlan::add(c, cfg, ifname, ctx, pod, step).await?,
        Kind::Ipvlan(c) => ipvlan::add(c, cfg, ifname, ctx, pod, step).await?,
        Kind::Vlan(c) => vlan::add(c, cfg, ifname, ctx, pod, step).await?,
        Kind::HostDevice(c) => host_device::add(c, cfg, ifname, ctx, pod, step).await?,
        Kind::Bridge(c) => bridge::add(c, cfg, ifname, ctx, pod, step).await?,
    };
    result.cni_version = cfg.cni_version.clone();
    Ok(result)
}

/// Removes what `rec` says was (or may have been) created for `ifname`. Missing pieces
/// are fine (after a group delete the pod link lookup simply finds nothing).
pub(crate) async fn del(rec: &NativeRecord, ifname: &str, ctx: &Ctx<'_>) -> Result<()> {
    let mut first_err = None;
    // RELEASE needs the interface and its address, so it goes before the link.
    let dhcp = ipam::dhcp::LeaseStore::new(ctx.dhcp_lease_dir);
    if let Err(e) = ipam::dhcp::detach(&dhcp, ctx.container_id, ifname).await {
        first_err.get_or_insert(e);
    }
    if let Err(e) = delete_links(rec, ifname, ctx).await {
        first_err.get_or_insert(e);
    }
    if let Err(e) = release_leases(rec).await {
        first_err.get_or_insert(e);
    }
    first_err.map_or(Ok(()), Err)
}

/// The links part of [`del`]: the host device moved back, or the pod link deleted (when
/// the pod's netns is still open), and the host-side links. What a teardown that answered
/// after [`release`] leaves for later (`reap.rs`).
pub(crate) async fn delete_links(rec: &NativeRecord, ifname: &str, ctx: &Ctx<'_>) -> Result<()> {
    let mut first_err = None;
    if let Some(original) = &rec.host_device {
        if let Err(e) = host_device::del(original, ifname, ctx).await {
            first_err.get_or_insert(e);
        }
    } else if let Some(pod) = ctx.pod
        && let Err(source) = pod.delete_link_by_name(ifname).await
    {
        first_err.get_or_insert(nl(format!("delete {ifname} in the pod"))(source));
    }
    for name in &rec.host_links {
        if let Err(source) = ctx.host.delete_link_by_name(name).await {
            first_err.get_or_insert(nl(format!("delete host link {name}"))(source));
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Whether a pod's teardown may answer before the link of this attachment is deleted: a
/// virtual link inside the pod's netns (macvlan, ipvlan, vlan, a bridge's veth end) is
/// destroyed by the kernel with the namespace, so only its addresses and leases must be
/// gone first. A host device must go back to the host before the answer. So must a link
/// holding leases whose addresses the record does not know (no result: a setup cut short):
/// deleting the link is the only way to be sure none of them is still on it.
pub(crate) fn deferrable(rec: &NativeRecord, result: Option<&cni::Result>) -> bool {
    rec.host_device.is_none() && (result.is_some() || rec.leases.is_empty())
}

/// What a pod's teardown waits for when the link is left for later ([`deferrable`]): the
/// DHCP lease released (it needs the link and its address), the recorded addresses removed
/// from the link, so nobody answers ARP for an address IPAM may hand out again, and the
/// host-local leases released. [`delete_links`] later does the rest. `removed` is the
/// outcome when the addresses were already removed together with the pod's others
/// ([`remove_addresses`]); `None` removes them here, through `ctx.pod`.
pub(crate) async fn release(
    rec: &NativeRecord,
    ifname: &str,
    result: Option<&cni::Result>,
    removed: Option<plexus_netlink::Result<()>>,
    ctx: &Ctx<'_>,
) -> Result<()> {
    let mut first_err = None;
    let dhcp = ipam::dhcp::LeaseStore::new(ctx.dhcp_lease_dir);
    if let Err(e) = ipam::dhcp::detach(&dhcp, ctx.container_id, ifname).await {
        first_err.get_or_insert(e);
    }
    let mut addresses_err = None;
    match (removed, ctx.pod) {
        (Some(Err(e)), _) => {
            addresses_err = Some(nl(format!("remove the addresses of {ifname}"))(e));
        }
        (Some(Ok(())), _) | (None, None) => {}
        (None, Some(pod)) => match pod.try_find_link(ifname).await {
            Ok(Some(link)) => {
                for ip in result.map(|r| r.ips.as_slice()).unwrap_or_default() {
                    if let Err(source) = pod.delete_address(&link, ip.address).await {
                        addresses_err
                            .get_or_insert(nl(format!("remove {} from {ifname}", ip.address))(
                                source,
                            ));
                    }
                }
            }
            Ok(None) => {}
            Err(source) => {
                addresses_err = Some(nl(format!("find {ifname} in the pod"))(source));
            }
        },
    }
    // A lease is released only once no link holds its address; otherwise the error keeps
    // the attachment (and its lease) for the teardown's retry.
    match addresses_err {
        Some(e) => {
            first_err.get_or_insert(e);
        }
        None => {
            if let Err(e) = release_leases(rec).await {
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Removes the recorded addresses of `links` (interface and CNI result) from the pod's
/// netns in one job inside it (`plexus_netlink::unaddress`); one outcome per entry. The
/// outer error: the job could not run (the caller then removes them one by one).
pub(crate) async fn remove_addresses(
    netns: &plexus_netlink::Netns,
    links: &[(&str, Option<&cni::Result>)],
) -> plexus_netlink::Result<Vec<plexus_netlink::Result<()>>> {
    let links = links
        .iter()
        .map(
            |(ifname, result)| plexus_netlink::unaddress::LinkAddresses {
                link: (*ifname).to_owned(),
                addrs: result
                    .map(|r| r.ips.iter().map(|ip| ip.address).collect())
                    .unwrap_or_default(),
            },
        )
        .collect();
    plexus_netlink::unaddress::remove_addresses(netns, links).await
}

/// Releases the host-local leases `rec` names (idempotent: a released lease is gone).
async fn release_leases(rec: &NativeRecord) -> Result<()> {
    let mut first_err = None;
    for lease in &rec.leases {
        let lease = lease.clone();
        let _turn = ipam::turns::turn(&lease.dir).await;
        let span = tracing::Span::current();
        let res = tokio::task::spawn_blocking(move || span.in_scope(|| ipam::release(&lease)))
            .await
            .map_err(|e| Error::Task(e.to_string()))
            .and_then(|r| r);
        if let Err(e) = res {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// The common tail of single-link drivers: IPAM, addresses and routes, result.
///
/// `make` creates the link. DHCP runs on it, so it waits for it; other IPAM allocates while
/// the link is made (both may wait on a busy node: for the lease directory, for the rtnl
/// lock). A failure of either leaves what the other made to the attachment's undo, which
/// the intent record names in full.
pub(crate) async fn finish_single(
    cfg: &NativeConfig,
    make: impl std::future::Future<Output = Result<plexus_netlink::Link>> + Send,
    ifname: &str,
    ctx: &Ctx<'_>,
    pod: &Handle,
    step: &mut (dyn FnMut(&str) + Send),
) -> Result<cni::Result> {
    let (link, alloc) = match &cfg.ipam {
        Some(ipam::Config::Dhcp(d)) => {
            let link = make.await?;
            step("link");
            let store = ipam::dhcp::LeaseStore::new(ctx.dhcp_lease_dir);
            let net = &cfg.name;
            let a =
                ipam::dhcp::attach(d, net, ctx.container_id, &link, ctx.netns_path, pod, &store);
            let a = a.await?;
            (link, Some(a))
        }
        _ => {
            let made = async {
                let link = make.await?;
                step("link");
                Ok::<_, Error>(link)
            };
            let (link, alloc) = tokio::join!(made, allocate(cfg, ifname, ctx));
            (link?, alloc?)
        }
    };
    step("ipam");
    // The DHCP server's name servers when the config names none (the reference macvlan
    // returns only the config's `dns`; DHCP users expect the lease's).
    let lease_dns = alloc
        .as_ref()
        .filter(|_| matches!(cfg.ipam, Some(ipam::Config::Dhcp(_))) && cfg.dns == Dns::default())
        .map(|a| a.dns.clone());
    let mut result = single_result(cfg, &link, ctx, alloc);
    if let Some(dns) = lease_dns {
        result.dns = dns;
    }
    if cfg.ipam.is_some() {
        configure_iface(pod, &link, &result).await?;
    }
    step("addr");
    Ok(result)
}

/// MTU from a config number (0 or absent: kernel default).
pub(crate) fn mtu(network: &str, kind: &str, mtu: Option<i64>) -> Result<Option<u32>> {
    match mtu {
        None | Some(0) => Ok(None),
        Some(m) => u32::try_from(m)
            .map(Some)
            .map_err(|_| Error::InvalidConfig {
                network: network.to_string(),
                kind: kind.to_string(),
                reason: format!("invalid MTU {m}"),
            }),
    }
}

/// Like [`nl`], but a lookup that did not find `link` (the link the config names under
/// `key`) becomes [`Error::LinkMissing`], which says what to do about it.
pub(crate) fn nl_named(
    network: &str,
    key: &'static str,
    link: &str,
    op: String,
) -> impl FnOnce(plexus_netlink::Error) -> Error {
    move |source| match source {
        plexus_netlink::Error::LinkNotFound { name, netns } if name == link => Error::LinkMissing {
            network: network.to_owned(),
            key,
            link: name,
            netns,
        },
        source => nl(op)(source),
    }
}

pub(crate) fn nl(op: String) -> impl FnOnce(plexus_netlink::Error) -> Error {
    move |source| Error::Netlink {
        op,
        source: Box::new(source),
    }
}

/// A one-interface result (macvlan, ipvlan, vlan, host-device shape).
pub(crate) fn single_result(
    cfg: &NativeConfig,
    link: &plexus_netlink::Link,
    ctx: &Ctx<'_>,
    alloc: Option<ipam::Allocation>,
) -> cni::Result {
    let mut r = cni::Result {
        cni_version: cfg.cni_version.clone(),
        interfaces: vec![cni::Interface {
            name: link.name.clone(),
            mac: link.mac.map(|m| m.to_string()).unwrap_or_default(),
            sandbox: ctx.netns_path.display().to_string(),
            ..Default::default()
        }],
        dns: cfg.dns.clone(),
        ..Default::default()
    };
    if let Some(a) = alloc {
        r.ips = a
            .ips
            .into_iter()
            .map(|mut ip| {
                ip.interface = Some(0);
                ip
            })
            .collect();
        r.routes = a.routes;
    }
    r
}

#[cfg(test)]
mod tests;

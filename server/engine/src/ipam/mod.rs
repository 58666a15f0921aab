//! Built-in IPAM: `static` and `host-local`, accepting exactly the config keys the
//! reference plugins (containernetworking/plugins v1.1.1) read, so a config with any other
//! key is left to the exec path.
//!
//! `host-local` shares the reference plugin's on-disk lease store (same directory, file
//! names, contents and `flock`), so either implementation can release the other's
//! leases. This module allocates and releases; it does not touch interfaces.

pub mod dhcp;
pub(crate) mod durable;
mod fixed;
mod host_local;
mod lease_store;
mod range;
pub(crate) mod turns;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use plexus_core::cni::{Dns, IpConfig, Route};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::state::LeaseRecord;

pub use fixed::{DnsConfig, StaticAddress, StaticConfig};
pub use host_local::{HostLocalConfig, check_data_dir};
pub use lease_store::LeaseStore;
pub use range::RangeConfig;
pub(crate) use range::next_ip;

/// An IPAM section the native path understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Config {
    /// `"type": "static"`.
    Static(StaticConfig),
    /// `"type": "host-local"`.
    HostLocal(HostLocalConfig),
    /// `"type": "dhcp"` (run by the native driver once its link is up, see [`dhcp`]).
    Dhcp(dhcp::DhcpConfig),
}

impl Config {
    /// Parses an `ipam` object; `None` when its type is not built in or a key is not
    /// understood (the attachment then goes to the exec path).
    pub fn parse(value: &serde_json::Value) -> Option<Config> {
        let kind = value.get("type")?.as_str()?;
        match kind {
            "static" => StaticConfig::deserialize(value).ok().map(Config::Static),
            "host-local" => HostLocalConfig::deserialize(value)
                .ok()
                .filter(HostLocalConfig::is_supported)
                .map(Config::HostLocal),
            "dhcp" => dhcp::DhcpConfig::deserialize(value)
                .ok()
                .filter(dhcp::DhcpConfig::is_supported)
                .map(Config::Dhcp),
            _ => None,
        }
    }
}

/// A route as written in an IPAM section (`types.Route`: `dst`, optional `gw`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Destination.
    pub dst: IpNet,
    /// Next hop; the interface's gateway of the same family when absent.
    #[serde(default)]
    pub gw: Option<IpAddr>,
}

impl RouteConfig {
    fn to_route(&self) -> Route {
        Route::new(self.dst, self.gw)
    }
}

/// What an allocation is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The network `name` of the CNI config (names the host-local lease directory).
    pub network_name: plexus_core::NetworkName,
    /// Container (sandbox) id written into leases.
    pub container_id: String,
    /// Interface name written into leases.
    pub ifname: String,
    /// The config's `cniVersion` (0.1.0/0.2.0 allow one address per family only).
    pub cni_version: String,
    /// `IP=` CNI arg (host-local: one address; static: comma-separated CIDRs).
    pub ip_arg: Option<String>,
    /// `args.cni.ips` of the config.
    pub args_ips: Vec<String>,
    /// runtimeConfig `ips` (the `ips` capability).
    pub runtime_ips: Vec<String>,
    /// `GATEWAY=` CNI arg (static only).
    pub gateway_arg: Option<String>,
    /// Set by a caller that may give up on the allocation (a setup cut by its deadline).
    pub gave_up: GaveUp,
}

/// Whether the caller of an allocation gave up on it. The lease directory's `flock` can be
/// held by another process (a reference host-local plugin sharing the directory) for longer
/// than the caller waits; an allocation that gets it after the caller gave up, and after
/// the caller's undo released what the sandbox held, would leave a lease nobody records. So
/// once the lock is taken, an allocation whose caller gave up writes nothing.
#[derive(Debug, Clone, Default)]
pub struct GaveUp(Option<std::sync::Arc<std::sync::atomic::AtomicBool>>);

impl GaveUp {
    /// Watches `flag`, which the caller sets when it gives up.
    pub fn watching(flag: std::sync::Arc<std::sync::atomic::AtomicBool>) -> GaveUp {
        GaveUp(Some(flag))
    }

    /// Whether the caller gave up.
    pub fn is_set(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|f| f.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// Requests compare by what they ask for, not by who watches them.
impl PartialEq for GaveUp {
    fn eq(&self, _: &GaveUp) -> bool {
        true
    }
}

impl Eq for GaveUp {}

impl Request {
    /// Every requested address in host-local's order: `IP=`, `args.cni.ips`, runtime.
    pub fn all_ips(&self) -> Vec<String> {
        let mut v: Vec<String> = self.ip_arg.iter().cloned().collect();
        v.extend(self.args_ips.iter().cloned());
        v.extend(self.runtime_ips.iter().cloned());
        v
    }
}

/// The outcome of an allocation: the IPAM part of a CNI result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocation {
    /// Addresses with gateways (no interface index yet).
    pub ips: Vec<IpConfig>,
    /// Routes as configured.
    pub routes: Vec<Route>,
    /// DNS as configured.
    pub dns: Dns,
}

/// Where a request's host-local leases live, known before anything is allocated (so it
/// can be recorded as an intent).
pub fn lease_for(cfg: &Config, req: &Request, default_data_dir: &Path) -> Option<LeaseRecord> {
    match cfg {
        Config::Static(_) | Config::Dhcp(_) => None,
        Config::HostLocal(h) => Some(LeaseRecord {
            dir: h.lease_dir(&req.network_name, default_data_dir),
            container_id: req.container_id.clone(),
            ifname: req.ifname.clone(),
            ips: Vec::new(),
        }),
    }
}

/// Allocates addresses for `req`. Blocking (file locks); call off the async runtime.
pub fn allocate(cfg: &Config, req: &Request, default_data_dir: &Path) -> Result<Allocation> {
    match cfg {
        Config::Static(s) => s.allocate(req),
        Config::HostLocal(h) => h.allocate(req, default_data_dir),
        Config::Dhcp(_) => Err(Error::InvalidIpam {
            network: req.network_name.to_string(),
            reason: "dhcp runs on the pod interface, not in allocate".into(),
        }),
    }
}

/// Releases the leases of `lease` (absent leases are fine). Blocking. When the record
/// names its addresses only their files are read; otherwise the directory is searched.
pub fn release(lease: &LeaseRecord) -> Result<()> {
    if !lease.dir.is_dir() {
        return Ok(());
    }
    let store = LeaseStore::existing(&lease.dir);
    let (id, ifname) = (&lease.container_id, &lease.ifname);
    match lease.ips.is_empty() {
        true => store.release(id, ifname),
        false => store.release_addresses(id, ifname, &lease.ips),
    }
}

/// Writes back the addresses `lease` records that its lease files no longer hold (see
/// [`durable`]); returns them. Blocking.
pub fn restore(lease: &LeaseRecord) -> Result<Vec<IpAddr>> {
    if lease.ips.is_empty() {
        return Ok(Vec::new());
    }
    let store = LeaseStore::open(&lease.dir)?;
    store.restore(&lease.container_id, &lease.ifname, &lease.ips)
}

/// Releases every lease under `data_dir/*/` whose file names `container_id`, skipping
/// interfaces in `keep`. Used when a sandbox's record is unreadable. Returns what was
/// released as `(dir, ip, ifname)`.
pub fn release_all_for_container(
    data_dir: &Path,
    container_id: &str,
    keep: &[&str],
) -> Result<Vec<(PathBuf, String, String)>> {
    let mut released = Vec::new();
    let entries = match std::fs::read_dir(data_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(released),
        Err(source) => {
            return Err(Error::Lease {
                path: data_dir.to_path_buf(),
                source,
            });
        }
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        if !dir.is_dir() {
            continue;
        }
        let store = LeaseStore::open(&dir)?;
        for (ip, ifname) in store.release_container(container_id, keep)? {
            released.push((dir.clone(), ip, ifname));
        }
    }
    Ok(released)
}

/// Parses an address as host-local and static accept it: `a.b.c.d` or `a.b.c.d/len`.
fn parse_ip_or_cidr(s: &str) -> Option<(IpAddr, Option<IpNet>)> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some((ip, None));
    }
    let net: IpNet = s.parse().ok()?;
    Some((net.addr(), Some(net)))
}

fn too_many_per_family(cni_version: &str, ips: &[IpConfig]) -> bool {
    let old = matches!(cni_version, "0.1.0" | "0.2.0");
    let v4 = ips.iter().filter(|i| i.address.addr().is_ipv4()).count();
    old && (v4 > 1 || ips.len() - v4 > 1)
}

#[cfg(test)]
mod tests;

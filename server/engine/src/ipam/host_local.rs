//! host-local IPAM, compatible with the reference plugin's disk backend
//! (containernetworking/plugins v1.1.1 `plugins/ipam/host-local/backend/{disk,allocator}`):
//!
//! - leases live in `<dataDir or /var/lib/cni/networks>/<network name>/` ([`LeaseStore`]);
//! - allocation continues round-robin after the last address handed out per range set.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use plexus_core::cni::IpConfig;
use serde::Deserialize;

use super::lease_store::{LeaseStore, lease_key};
use super::range::{Range, RangeConfig, RangeIter, describe_set};
use super::{Allocation, Request, RouteConfig, parse_ip_or_cidr, too_many_per_family};
use crate::error::{Error, Result};

/// Checks a host-local `dataDir` written in a NAD: an absolute path without `..`
/// components or NUL. It names where root-owned lease files are created.
pub fn check_data_dir(dir: &Path) -> std::result::Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let shown = dir.display();
    if !dir.is_absolute() {
        return Err(format!(
            "ipam.dataDir {shown:?} is not an absolute path; accepted: an absolute path without '..'"
        ));
    }
    if dir
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(format!(
            "ipam.dataDir {shown:?} contains '..'; accepted: an absolute path without '..'"
        ));
    }
    if dir.as_os_str().as_bytes().contains(&0) {
        return Err("ipam.dataDir contains a NUL byte".to_owned());
    }
    Ok(())
}

/// A `host-local` IPAM section (every key the reference plugin reads).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostLocalConfig {
    /// Always `host-local`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Legacy single range: subnet.
    #[serde(default)]
    pub subnet: Option<IpNet>,
    /// Legacy single range: first address.
    #[serde(default, rename = "rangeStart")]
    pub range_start: Option<IpAddr>,
    /// Legacy single range: last address.
    #[serde(default, rename = "rangeEnd")]
    pub range_end: Option<IpAddr>,
    /// Legacy single range: gateway.
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    /// Range sets; one address is allocated from each.
    #[serde(default)]
    pub ranges: Vec<Vec<RangeConfig>>,
    /// Routes returned in the result.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Lease directory root (default `/var/lib/cni/networks` or the engine's setting).
    #[serde(default, rename = "dataDir")]
    pub data_dir: Option<PathBuf>,
    /// A resolv.conf to read DNS from (not built in: such configs go to exec).
    #[serde(default, rename = "resolvConf")]
    pub resolv_conf: Option<String>,
}

impl HostLocalConfig {
    /// True when the native implementation covers every key that is set and `dataDir`
    /// is acceptable (an unacceptable one goes to the exec path, which refuses it with the
    /// reason).
    pub fn is_supported(&self) -> bool {
        self.resolv_conf.as_deref().unwrap_or("").is_empty()
            && self
                .data_dir
                .as_deref()
                .is_none_or(|d| check_data_dir(d).is_ok())
    }

    /// The lease directory for network `name`: under the config's own `dataDir` when it
    /// sets one, else under `default_data_dir` (the engine's `ipamDataDir`, which the exec
    /// path passes to the host-local plugin too, so both keep one network's leases in one
    /// place).
    pub fn lease_dir(&self, name: &plexus_core::NetworkName, default_data_dir: &Path) -> PathBuf {
        match &self.data_dir {
            Some(d) if !d.as_os_str().is_empty() => d.join(name.as_str()),
            _ => default_data_dir.join(name.as_str()),
        }
    }

    /// The canonical range sets, legacy range first (as the reference plugin orders them).
    fn range_sets(&self, cni_version: &str) -> Result<Vec<Vec<Range>>, String> {
        let mut sets: Vec<Vec<RangeConfig>> = Vec::new();
        if let Some(subnet) = self.subnet {
            sets.push(vec![RangeConfig {
                subnet,
                range_start: self.range_start,
                range_end: self.range_end,
                gateway: self.gateway,
            }]);
        }
        sets.extend(self.ranges.iter().cloned());
        if sets.is_empty() {
            return Err("no IP ranges specified".into());
        }
        let mut out = Vec::new();
        let (mut v4, mut v6) = (0, 0);
        for (i, set) in sets.iter().enumerate() {
            if set.is_empty() {
                return Err(format!("invalid range set {i}: empty range set"));
            }
            let mut canon = Vec::new();
            for r in set {
                canon.push(Range::canonical(r).map_err(|e| format!("invalid range set {i}: {e}"))?);
            }
            for (a, ra) in canon.iter().enumerate() {
                if canon[a + 1..].iter().any(|rb| ra.overlaps(rb)) {
                    return Err(format!("invalid range set {i}: subnets overlap"));
                }
            }
            if canon[0].start.is_ipv4() {
                v4 += 1;
            } else {
                v6 += 1;
            }
            out.push(canon);
        }
        if (v4 > 1 || v6 > 1) && matches!(cni_version, "0.1.0" | "0.2.0") {
            return Err(format!(
                "CNI version {cni_version} does not support more than 1 address per family"
            ));
        }
        for i in 0..out.len() {
            for j in i + 1..out.len() {
                if out[i].iter().any(|a| out[j].iter().any(|b| a.overlaps(b))) {
                    return Err(format!("range set {i} overlaps with {j}"));
                }
            }
        }
        Ok(out)
    }

    /// Allocates one address per range set for `req`.
    pub(super) fn allocate(&self, req: &Request, default_data_dir: &Path) -> Result<Allocation> {
        let invalid = |reason: String| Error::InvalidIpam {
            network: req.network_name.to_string(),
            reason,
        };
        if let Some(dir) = &self.data_dir {
            check_data_dir(dir).map_err(invalid)?;
        }
        let sets = self.range_sets(&req.cni_version).map_err(invalid)?;
        let mut requested = Vec::new();
        for s in &req.all_ips() {
            let (ip, _) = parse_ip_or_cidr(s)
                .ok_or_else(|| invalid(format!("cannot understand ip: {s:?}")))?;
            requested.push(ip);
        }
        let store = LeaseStore::open(&self.lease_dir(&req.network_name, default_data_dir))?;
        let mut ips = Vec::new();
        for (idx, set) in sets.iter().enumerate() {
            let want = requested
                .iter()
                .position(|ip| set.iter().any(|r| r.contains(*ip)))
                .map(|p| requested.remove(p));
            match store.get(req, set, idx, want) {
                Ok(ip) => ips.push(ip),
                Err(e) => {
                    let _ = store.release(&req.container_id, &req.ifname);
                    return Err(match e {
                        GetError::Io(e) => e,
                        GetError::Refused(reason) => {
                            invalid(format!("failed to allocate for range {idx}: {reason}"))
                        }
                    });
                }
            }
        }
        if !requested.is_empty() {
            let _ = store.release(&req.container_id, &req.ifname);
            let list: Vec<String> = requested.iter().map(|i| i.to_string()).collect();
            return Err(invalid(format!(
                "failed to allocate all requested IPs: {}",
                list.join(" ")
            )));
        }
        if too_many_per_family(&req.cni_version, &ips) {
            let _ = store.release(&req.container_id, &req.ifname);
            return Err(invalid(
                "too many addresses per family for this cniVersion".into(),
            ));
        }
        Ok(Allocation {
            ips,
            routes: self.routes.iter().map(RouteConfig::to_route).collect(),
            dns: Default::default(),
        })
    }
}

enum GetError {
    Io(Error),
    Refused(String),
}

impl LeaseStore {
    /// The reference `IPAllocator.Get` for one range set, under the lock.
    fn get(
        &self,
        req: &Request,
        set: &[Range],
        range_id: usize,
        want: Option<IpAddr>,
    ) -> Result<IpConfig, GetError> {
        let lock = self.lock_to_take(&req.gave_up).map_err(GetError::Io)?;
        let leases = self.live_leases(&lock);
        let (id, ifname) = (req.container_id.as_str(), req.ifname.as_str());
        let describe = || describe_set(set);
        let ip_config = |ip: IpAddr, r: &Range| IpConfig {
            interface: None,
            address: IpNet::new(ip, r.subnet.prefix_len()).expect("prefix from a valid subnet"),
            gateway: Some(r.gateway),
        };
        if let Some(ip) = want {
            let r = set.iter().find(|r| r.contains(ip)).ok_or_else(|| {
                GetError::Refused(format!("{ip} not in range set {}", describe()))
            })?;
            if ip == r.gateway {
                return Err(GetError::Refused(format!(
                    "requested ip {ip} is subnet's gateway"
                )));
            }
            if !self
                .reserve(id, ifname, ip, range_id)
                .map_err(GetError::Io)?
            {
                return Err(GetError::Refused(format!(
                    "requested IP address {ip} is not available in range set {}",
                    describe()
                )));
            }
            return Ok(ip_config(ip, r));
        }
        let key = lease_key(id, ifname);
        for held in leases.iter().filter(|l| l.held_by(id, &key)).map(|l| l.ip) {
            if set.iter().any(|r| r.contains(held)) {
                return Err(GetError::Refused(format!(
                    "{held} has been allocated to {id}, duplicate allocation is not allowed"
                )));
            }
        }
        let mut iter = RangeIter::new(set, self.last_reserved(range_id));
        while let Some((ip, r)) = iter.next() {
            if self
                .reserve(id, ifname, ip, range_id)
                .map_err(GetError::Io)?
            {
                return Ok(ip_config(ip, &set[r]));
            }
        }
        Err(GetError::Refused(format!(
            "no IP addresses available in range set: {}",
            describe()
        )))
    }
}

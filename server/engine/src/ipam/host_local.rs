//! host-local IPAM, compatible with the reference plugin's disk backend
//! (containernetworking/plugins v1.1.1 `plugins/ipam/host-local/backend/{disk,allocator}`):
//!
//! - leases live in `<dataDir or /var/lib/cni/networks>/<network name>/`;
//! - one file per address, named by the address text, created `O_EXCL` mode 0644, holding
//!   `<container id>\r\n<ifname>` (older plugins wrote just the id; both are released);
//! - `last_reserved_ip.<range set index>` holds the last address handed out per range set,
//!   and allocation continues round-robin after it;
//! - all of it under an exclusive `flock` on the file `lock` in that directory.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use nix::fcntl::{Flock, FlockArg};
use plexus_core::cni::IpConfig;
use serde::Deserialize;

use super::range::{Range, RangeConfig, RangeIter, describe_set};
use super::{Allocation, Request, RouteConfig, parse_ip_or_cidr, too_many_per_family};
use crate::error::{Error, Result};

const LAST_IP_PREFIX: &str = "last_reserved_ip.";

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
const LINE_BREAK: &str = "\r\n";

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

/// The lease directory of one network, as the reference disk backend lays it out.
#[derive(Debug, Clone)]
pub struct LeaseStore {
    dir: PathBuf,
}

impl LeaseStore {
    /// Opens (creating, mode 0755) a lease directory.
    pub fn open(dir: &Path) -> Result<LeaseStore> {
        fs::create_dir_all(dir).map_err(|source| Error::Lease {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(LeaseStore {
            dir: dir.to_path_buf(),
        })
    }

    fn io(&self, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.to_path_buf();
        move |source| Error::Lease { path, source }
    }

    /// Takes the directory's exclusive `flock` (shared with the reference plugin).
    fn lock(&self) -> Result<Flock<File>> {
        let path = self.dir.join("lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(self.io(&path))?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| Error::Lease {
            path,
            source: errno.into(),
        })
    }

    /// Reserves `ip` for `(id, ifname)`; false when someone holds it.
    fn reserve(&self, id: &str, ifname: &str, ip: IpAddr, range_id: usize) -> Result<bool> {
        let path = self.dir.join(ip.to_string());
        let mut f = match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(self.io(&path)(e)),
        };
        // Not fsynced: the sandbox record's done write, which names this address, is the
        // durable copy, and recovery writes a lease back from it (`restore`). A lease
        // never named by a durable record belongs to a setup recovery undoes.
        let content = format!("{}{LINE_BREAK}{ifname}", id.trim());
        if let Err(e) = f.write_all(content.as_bytes()) {
            let _ = fs::remove_file(&path);
            return Err(self.io(&path)(e));
        }
        drop(f);
        // Only a hint where the next search starts (a lost or torn one starts it over).
        let last = self.dir.join(format!("{LAST_IP_PREFIX}{range_id}"));
        crate::state::replace_file(&self.dir, &last, ip.to_string().as_bytes())
            .map_err(self.io(&last))?;
        Ok(true)
    }

    fn last_reserved(&self, range_id: usize) -> Option<IpAddr> {
        let text = fs::read_to_string(self.dir.join(format!("{LAST_IP_PREFIX}{range_id}"))).ok()?;
        text.trim().parse().ok()
    }

    /// Lease files as `(ip text, trimmed content)`.
    fn leases(&self) -> Vec<(String, String, PathBuf)> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            if !path.is_file() {
                continue;
            }
            let Ok(data) = fs::read_to_string(&path) else {
                continue;
            };
            let name = e.file_name().to_string_lossy().into_owned();
            out.push((name, data.trim().to_string(), path));
        }
        out
    }

    /// Addresses held by `(id, ifname)` (or by `id` in the old one-line format).
    pub fn get_by_id(&self, id: &str, ifname: &str) -> Vec<IpAddr> {
        let key = format!("{}{LINE_BREAK}{ifname}", id.trim());
        self.leases()
            .into_iter()
            .filter(|(_, c, _)| *c == key || c == id.trim())
            .filter_map(|(n, _, _)| n.parse().ok())
            .collect()
    }

    /// Removes lease files a killed writer left empty (created, content not yet written):
    /// no release could ever match them, so each would hold its address for ever. Call it
    /// under the lock: every writer — this store and the reference plugin — creates and
    /// fills a lease while holding it, so an empty lease seen then belongs to no one.
    fn remove_torn_leases(&self) {
        for (name, content, path) in self.leases() {
            if content.is_empty()
                && name.parse::<IpAddr>().is_ok()
                && fs::remove_file(&path).is_ok()
            {
                tracing::warn!(lease = %path.display(), "removed an empty lease file a killed writer left");
            }
        }
    }

    /// Releases every address of `(id, ifname)`, like the reference `ReleaseByID`, and
    /// removes torn (empty) leases.
    pub fn release(&self, id: &str, ifname: &str) -> Result<()> {
        let _lock = self.lock()?;
        self.remove_torn_leases();
        let key = format!("{}{LINE_BREAK}{ifname}", id.trim());
        let leases = self.leases();
        let mut found = false;
        for (_, content, path) in &leases {
            if *content == key && fs::remove_file(path).is_ok() {
                found = true;
            }
        }
        if !found {
            for (_, content, path) in &leases {
                if content == id.trim() {
                    let _ = fs::remove_file(path);
                }
            }
        }
        // Made durable by the next write of this sandbox's record, before that write can
        // drop the lease from it (`durable::sync_releases`).
        super::durable::released(id.trim(), &self.dir);
        Ok(())
    }

    /// Writes back any of `ips` that `(id, ifname)` no longer holds (a lease is not
    /// fsynced when taken, so a power loss can lose it while the record naming it
    /// survives), durably. Returns the addresses written back; an address someone else
    /// holds now is an error that names the holder.
    pub fn restore(&self, id: &str, ifname: &str, ips: &[IpAddr]) -> Result<Vec<IpAddr>> {
        let _lock = self.lock()?;
        self.remove_torn_leases();
        let key = format!("{}{LINE_BREAK}{ifname}", id.trim());
        let mut restored = Vec::new();
        for ip in ips {
            let path = self.dir.join(ip.to_string());
            match fs::read_to_string(&path) {
                Ok(held) if held.trim() == key || held.trim() == id.trim() => continue,
                Ok(held) => {
                    let holder = held.trim().replace(LINE_BREAK, " on ");
                    return Err(self.io(&path)(std::io::Error::other(format!(
                        "the record of {id} names {ip} for {ifname}, but {holder} holds it now; \
                         remove one of the two pods so the address is not used twice"
                    ))));
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(self.io(&path)(e)),
            }
            let written = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&path)
                .and_then(|mut f| {
                    f.write_all(key.as_bytes())?;
                    crate::state::fsync(&f)
                });
            written.map_err(self.io(&path))?;
            restored.push(*ip);
        }
        if !restored.is_empty() {
            crate::state::sync_dir(&self.dir).map_err(self.io(&self.dir))?;
        }
        Ok(restored)
    }

    /// Releases every lease naming `id` except those of interfaces in `keep`; returns
    /// `(ip, ifname)` of what was released.
    pub fn release_container(&self, id: &str, keep: &[&str]) -> Result<Vec<(String, String)>> {
        let _lock = self.lock()?;
        self.remove_torn_leases();
        let mut out = Vec::new();
        for (ip, content, path) in self.leases() {
            if ip.parse::<IpAddr>().is_err() {
                continue;
            }
            let mut lines = content.split(LINE_BREAK);
            let owner = lines.next().unwrap_or("");
            let ifname = lines.next().unwrap_or("").to_string();
            if owner != id.trim() || keep.contains(&ifname.as_str()) {
                continue;
            }
            if fs::remove_file(&path).is_ok() {
                out.push((ip, ifname));
            }
        }
        if !out.is_empty() {
            crate::state::sync_dir(&self.dir).map_err(self.io(&self.dir))?;
        }
        Ok(out)
    }

    /// The reference `IPAllocator.Get` for one range set, under the lock.
    fn get(
        &self,
        req: &Request,
        set: &[Range],
        range_id: usize,
        want: Option<IpAddr>,
    ) -> Result<IpConfig, GetError> {
        let _lock = self.lock().map_err(GetError::Io)?;
        self.remove_torn_leases();
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
        for held in self.get_by_id(id, ifname) {
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

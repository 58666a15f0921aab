//! The runtime-managed primary (eth0 made by the runtime's own CNI, NRI path): what it
//! looks like, so network-status can list it like Multus does (`"default": true`).
//!
//! The runtime's libcni result cache (`<cache>/results/<network>-<sandbox>-<ifname>`) is
//! the exact result the primary plugin returned — the network name, addresses, gateway —
//! and is read first; only that one file is parsed (other pods' files are matched by name
//! only). A node has one primary network, so the name found once is remembered and the
//! next pod's file is opened directly; the directory is listed only when that misses (the
//! first pod, or the runtime's network was renamed). Without a cache entry the interface
//! is inspected in the pod netns. Nothing here fails a setup: a primary that cannot be
//! described is simply left out of network-status. The file I/O runs on the blocking pool.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ipnet::IpNet;
use plexus_core::cni;
use plexus_core::id::{InterfaceName, NetworkName, SandboxId};
use plexus_netlink::Handle;

use crate::delegate::cache;

/// What is known about the runtime's primary attachment.
#[derive(Debug, Clone)]
pub(crate) struct Primary {
    /// The runtime's network name (from its result cache), when found there.
    pub network: Option<String>,
    /// The primary's result.
    pub result: cni::Result,
}

/// Finds the runtime's cached result for a pod's primary, remembering the runtime's
/// network name so the next pod's file is opened directly. One per engine (the cache dir
/// is fixed by its config).
#[derive(Debug)]
pub(crate) struct Lookup {
    results: PathBuf,
    cache_dir: PathBuf,
    /// The runtime's primary network name found last.
    known: Mutex<Option<NetworkName>>,
    /// How many times the results directory was listed (the slow path).
    scans: AtomicU64,
}

impl Lookup {
    /// A lookup in the runtime's libcni cache dir `cache_dir`.
    pub fn new(cache_dir: &Path) -> Lookup {
        Lookup {
            results: cache_dir.join("results"),
            cache_dir: cache_dir.to_owned(),
            known: Mutex::new(None),
            scans: AtomicU64::new(0),
        }
    }

    /// Describes `ifname` (made by the runtime) of `sandbox_id` in `pod`.
    pub async fn describe(
        self: &Arc<Self>,
        sandbox_id: &SandboxId,
        ifname: &InterfaceName,
        netns: &Path,
        pod: &Handle,
    ) -> Option<Primary> {
        let (me, id, name) = (Arc::clone(self), sandbox_id.clone(), ifname.clone());
        let cached = tokio::task::spawn_blocking(move || me.cached(&id, &name))
            .await
            .ok()
            .flatten();
        if let Some(p) = cached {
            return Some(p);
        }
        match from_netns(pod, ifname, netns).await {
            Ok(result) => Some(Primary {
                network: None,
                result,
            }),
            Err(e) => {
                tracing::warn!(interface = %ifname, error = %e, "cannot describe the runtime's primary interface");
                None
            }
        }
    }

    /// The runtime's cached result for `<any network>-<sandbox_id>-<ifname>`: the file of
    /// the remembered network first, else a scan of the directory (which remembers what
    /// it finds).
    fn cached(&self, sandbox_id: &SandboxId, ifname: &InterfaceName) -> Option<Primary> {
        let known = self.known.lock().ok().and_then(|k| k.clone());
        if let Some(network) = known
            && let path = cache::path(&self.cache_dir, &network, sandbox_id, ifname)
            && let Some(p) = read_entry(&path, sandbox_id, ifname)
        {
            return Some(p);
        }
        self.scans.fetch_add(1, Ordering::Relaxed);
        let suffix = format!("-{sandbox_id}-{ifname}");
        let entries = std::fs::read_dir(&self.results).ok()?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.ends_with(&suffix) || name.starts_with(".tmp-") {
                continue;
            }
            if let Some(p) = read_entry(&entry.path(), sandbox_id, ifname) {
                if let (Some(network), Ok(mut known)) = (&p.network, self.known.lock()) {
                    *known = NetworkName::new(network.as_str()).ok();
                }
                return Some(p);
            }
        }
        None
    }
}

/// One cache file, when it parses and names this sandbox and interface.
fn read_entry(path: &Path, sandbox_id: &SandboxId, ifname: &InterfaceName) -> Option<Primary> {
    let bytes = std::fs::read(path).ok()?;
    let parsed = cache::Entry::parse(&bytes).ok()?;
    if parsed.container_id != sandbox_id.as_str() || parsed.if_name != ifname.as_str() {
        return None;
    }
    match parsed.cni_result(cni::version::CURRENT)? {
        Ok(result) => Some(Primary {
            network: Some(parsed.network_name).filter(|n| !n.is_empty()),
            result,
        }),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "unreadable result in the runtime's CNI cache");
            None
        }
    }
}

/// The interface as it is in the pod netns: mac, mtu, addresses, default gateways.
async fn from_netns(
    pod: &Handle,
    ifname: &str,
    netns: &Path,
) -> plexus_netlink::Result<cni::Result> {
    let info = plexus_netlink::inspect::interface_info(pod, ifname).await?;
    let link = pod.find_link(ifname).await?;
    let defaults = pod.default_routes(link.index, None).await?;
    let gateway = |addr: &IpNet| {
        defaults
            .iter()
            .filter(|r| r.dst.addr().is_ipv6() == addr.addr().is_ipv6())
            .find_map(|r| r.gateway)
    };
    Ok(cni::Result {
        cni_version: cni::version::CURRENT.to_owned(),
        interfaces: vec![cni::Interface {
            name: ifname.to_owned(),
            mac: info.mac.map(|m| m.to_string()).unwrap_or_default(),
            mtu: Some(info.mtu),
            sandbox: netns.display().to_string(),
            ..Default::default()
        }],
        ips: info
            .addrs
            .iter()
            .map(|a| cni::IpConfig {
                interface: Some(0),
                address: *a,
                gateway: gateway(a),
            })
            .collect(),
        routes: defaults
            .iter()
            .map(|r| cni::Route::new(r.dst, r.gateway))
            .collect(),
        dns: cni::Dns::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Lookup {
        /// The runtime's primary of sandbox `sb1`, `eth0`, from the cache.
        fn sb1_eth0(&self) -> Option<Primary> {
            self.cached(
                &SandboxId::new("sb1").unwrap(),
                &InterfaceName::new("eth0").unwrap(),
            )
        }
    }

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::create_dir_all(dir.join("results")).unwrap();
        std::fs::write(dir.join("results").join(name), text).unwrap();
    }

    const CACHED: &str = r#"{"kind":"cniCacheV1","containerId":"sb1","config":"e30=","ifName":"eth0","networkName":"cbr0","result":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","mac":"0a:58:0a:f4:01:49","sandbox":"/var/run/netns/cni-1"}],"ips":[{"interface":0,"address":"10.244.1.73/24","gateway":"10.244.1.1"}],"routes":[{"dst":"0.0.0.0/0","gw":"10.244.1.1"}],"dns":{}}}"#;

    #[test]
    fn the_runtimes_cached_result_names_and_describes_the_primary() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "cbr0-sb1-eth0", CACHED);
        // Another sandbox's file and the loopback network are not it.
        write(dir.path(), "cbr0-sb10-eth0", &CACHED.replace("sb1", "sb10"));
        write(
            dir.path(),
            "cni-loopback-sb1-lo",
            &CACHED.replace("eth0", "lo"),
        );
        let p = Lookup::new(dir.path()).sb1_eth0().unwrap();
        assert_eq!(p.network.as_deref(), Some("cbr0"));
        assert_eq!(p.result.interfaces[0].mac, "0a:58:0a:f4:01:49");
        assert_eq!(p.result.ips[0].address.to_string(), "10.244.1.73/24");
        assert_eq!(
            p.result.ips[0].gateway.map(|g| g.to_string()).as_deref(),
            Some("10.244.1.1")
        );
    }

    #[test]
    fn no_cache_entry_and_unreadable_entries_give_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Lookup::new(dir.path()).sb1_eth0().is_none());
        write(dir.path(), "cbr0-sb1-eth0", "{truncated");
        assert!(Lookup::new(dir.path()).sb1_eth0().is_none());
        // A file named for the sandbox whose content names another is not trusted.
        write(
            dir.path(),
            "cbr0-sb1-eth0",
            &CACHED.replace("\"sb1\"", "\"sb2\""),
        );
        assert!(Lookup::new(dir.path()).sb1_eth0().is_none());
    }

    #[test]
    fn the_next_pod_of_a_known_network_is_found_without_listing_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let lookup = Lookup::new(dir.path());
        write(dir.path(), "cbr0-sb1-eth0", CACHED);
        for n in 0..50 {
            write(dir.path(), &format!("cbr0-other{n}-eth0"), CACHED);
        }
        assert!(lookup.sb1_eth0().is_some());
        assert_eq!(lookup.scans.load(Ordering::Relaxed), 1);
        write(dir.path(), "cbr0-sb7-eth0", &CACHED.replace("sb1", "sb7"));
        let p = lookup
            .cached(
                &SandboxId::new("sb7").unwrap(),
                &InterfaceName::new("eth0").unwrap(),
            )
            .unwrap();
        assert_eq!(p.network.as_deref(), Some("cbr0"));
        assert_eq!(lookup.scans.load(Ordering::Relaxed), 1, "listed again");
        // A renamed runtime network is still found (by a scan), and then remembered.
        let renamed = CACHED.replace("sb1", "sb8").replace("cbr0", "kindnet");
        write(dir.path(), "kindnet-sb8-eth0", &renamed);
        let p = lookup
            .cached(
                &SandboxId::new("sb8").unwrap(),
                &InterfaceName::new("eth0").unwrap(),
            )
            .unwrap();
        assert_eq!(p.network.as_deref(), Some("kindnet"));
        assert_eq!(lookup.scans.load(Ordering::Relaxed), 2);
        write(
            dir.path(),
            "kindnet-sb9-eth0",
            &renamed.replace("sb8", "sb9"),
        );
        assert!(
            lookup
                .cached(
                    &SandboxId::new("sb9").unwrap(),
                    &InterfaceName::new("eth0").unwrap()
                )
                .is_some()
        );
        assert_eq!(lookup.scans.load(Ordering::Relaxed), 2, "listed again");
    }
}

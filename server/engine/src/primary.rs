//! The runtime-managed primary (eth0 made by the runtime's own CNI, NRI path): what it
//! looks like, so network-status can list it like Multus does (`"default": true`).
//!
//! The runtime's libcni result cache (`<cache>/results/<network>-<sandbox>-<ifname>`) is
//! the exact result the primary plugin returned — the network name, addresses, gateway —
//! and is read first; only that one file is parsed (other pods' files are matched by name
//! only). Without it the interface is inspected in the pod netns. Nothing here fails a
//! setup: a primary that cannot be described is simply left out of network-status.

use std::path::Path;

use ipnet::IpNet;
use plexus_core::cni;
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

/// Describes `ifname` (made by the runtime) of `sandbox_id` in `pod`.
pub(crate) async fn describe(
    cache_dir: &Path,
    sandbox_id: &str,
    ifname: &str,
    netns: &Path,
    pod: &Handle,
) -> Option<Primary> {
    if let Some(p) = from_cache(cache_dir, sandbox_id, ifname) {
        return Some(p);
    }
    match from_netns(pod, ifname, netns).await {
        Ok(result) => Some(Primary {
            network: None,
            result,
        }),
        Err(e) => {
            tracing::warn!(interface = ifname, error = %e, "cannot describe the runtime's primary interface");
            None
        }
    }
}

/// The runtime's cached result for `<any network>-<sandbox_id>-<ifname>`.
fn from_cache(cache_dir: &Path, sandbox_id: &str, ifname: &str) -> Option<Primary> {
    let dir = cache_dir.join("results");
    let suffix = format!("-{sandbox_id}-{ifname}");
    let entries = std::fs::read_dir(&dir).ok()?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.ends_with(&suffix) || name.starts_with(".tmp-") {
            continue;
        }
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        let Ok(parsed) = cache::Entry::parse(&bytes) else {
            continue;
        };
        if parsed.container_id != sandbox_id || parsed.if_name != ifname {
            continue;
        }
        match parsed.cni_result(cni::version::CURRENT) {
            Some(Ok(result)) => {
                return Some(Primary {
                    network: Some(parsed.network_name).filter(|n| !n.is_empty()),
                    result,
                });
            }
            Some(Err(e)) => {
                tracing::warn!(file = %entry.path().display(), error = %e, "unreadable result in the runtime's CNI cache");
            }
            None => {}
        }
    }
    None
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
        let p = from_cache(dir.path(), "sb1", "eth0").unwrap();
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
        assert!(from_cache(dir.path(), "sb1", "eth0").is_none());
        write(dir.path(), "cbr0-sb1-eth0", "{truncated");
        assert!(from_cache(dir.path(), "sb1", "eth0").is_none());
        // A file named for the sandbox whose content names another is not trusted.
        write(
            dir.path(),
            "cbr0-sb1-eth0",
            &CACHED.replace("\"sb1\"", "\"sb2\""),
        );
        assert!(from_cache(dir.path(), "sb1", "eth0").is_none());
    }
}

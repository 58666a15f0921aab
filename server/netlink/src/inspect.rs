//! Snapshots of a netns's network state, for comparing plexus with the reference plugins
//! and for reporting an interface (e.g. the primary `eth0`) in network-status.
//!
//! A [`Snapshot`] names links instead of using ifindexes (which differ between runs), keeps
//! only the main routing table, and reads the per-interface sysctls the reference
//! bridge/macvlan plugins set. [`Snapshot::stable`] drops what is random by design (MACs
//! the kernel picked, IPv6 link-local addresses, random host veth names) so two runs can
//! be compared line by line through its `Display` form.

use std::collections::BTreeMap;
use std::fmt;

use ipnet::IpNet;

use crate::error::Result;
use crate::handle::{Handle, TABLE_MAIN};
use crate::link::{IpvlanFlag, IpvlanMode, MacvlanMode};
use crate::mac::MacAddr;
use crate::netns;

/// Per-interface sysctls recorded in a snapshot (`net/<family>/conf/<if>/<name>`).
pub const INTERFACE_SYSCTLS: &[&str] = &[
    "ipv4/conf/{if}/arp_notify",
    "ipv4/conf/{if}/forwarding",
    "ipv6/conf/{if}/accept_dad",
    "ipv6/conf/{if}/enhanced_dad",
    "ipv6/conf/{if}/ndisc_notify",
    "ipv6/conf/{if}/accept_ra",
];

/// Netns-wide sysctls recorded in a snapshot.
pub const GLOBAL_SYSCTLS: &[&str] = &["ipv4/ip_forward", "ipv6/conf/all/forwarding"];

/// One link's comparable state.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LinkState {
    /// Name.
    pub name: String,
    /// Kind (`macvlan`, `veth`, ...), empty for none.
    pub kind: String,
    /// macvlan mode.
    pub macvlan_mode: Option<MacvlanMode>,
    /// ipvlan mode and flag.
    pub ipvlan: Option<(IpvlanMode, IpvlanFlag)>,
    /// vlan id.
    pub vlan_id: Option<u16>,
    /// MTU.
    pub mtu: u32,
    /// Admin up.
    pub up: bool,
    /// Promiscuous.
    pub promisc: bool,
    /// Master's name.
    pub master: Option<String>,
    /// Hairpin (bridge ports).
    pub hairpin: Option<bool>,
    /// MAC.
    pub mac: Option<MacAddr>,
    /// Link group.
    pub group: u32,
    /// Alias (host-device keeps the host name there).
    pub alias: Option<String>,
}

/// One address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AddrState {
    /// Link name.
    pub link: String,
    /// Address/prefix.
    pub addr: IpNet,
    /// Scope.
    pub scope: u8,
}

/// One main-table route.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RouteState {
    /// Destination.
    pub dst: IpNet,
    /// Gateway.
    pub gateway: Option<std::net::IpAddr>,
    /// Output link name.
    pub dev: Option<String>,
    /// Scope.
    pub scope: u8,
    /// Protocol.
    pub protocol: u8,
    /// Metric.
    pub priority: Option<u32>,
    /// MTU metric.
    pub mtu: Option<u32>,
}

/// A netns's network state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Links sorted by name.
    pub links: Vec<LinkState>,
    /// Addresses sorted by link then address.
    pub addresses: Vec<AddrState>,
    /// Main-table routes, sorted.
    pub routes: Vec<RouteState>,
    /// Sysctls (`net/...` key → value) that exist in the netns.
    pub sysctls: BTreeMap<String, String>,
}

/// Takes a snapshot of `handle`'s netns.
pub async fn snapshot(handle: &Handle) -> Result<Snapshot> {
    let links = handle.links().await?;
    let name_of = |i: u32| links.iter().find(|l| l.index == i).map(|l| l.name.clone());
    let mut snap = Snapshot::default();
    for l in &links {
        snap.links.push(LinkState {
            name: l.name.clone(),
            kind: l.kind.clone().unwrap_or_default(),
            macvlan_mode: l.macvlan_mode,
            ipvlan: l.ipvlan,
            vlan_id: l.vlan_id,
            mtu: l.mtu,
            up: l.up,
            promisc: l.promisc,
            master: l.master.and_then(name_of),
            hairpin: l.hairpin,
            mac: l.mac,
            group: l.group,
            alias: l.alias.clone(),
        });
    }
    for a in handle.addresses(None).await? {
        snap.addresses.push(AddrState {
            link: name_of(a.index).unwrap_or_else(|| format!("#{}", a.index)),
            addr: a.addr,
            scope: a.scope,
        });
    }
    for r in handle.routes().await? {
        if r.table != TABLE_MAIN {
            continue;
        }
        snap.routes.push(RouteState {
            dst: r.dst,
            gateway: r.gateway,
            dev: r.oif.and_then(name_of),
            scope: r.scope,
            protocol: r.protocol,
            priority: r.priority,
            mtu: r.mtu,
        });
    }
    let mut keys: Vec<String> = GLOBAL_SYSCTLS.iter().map(|k| format!("net/{k}")).collect();
    for l in links.iter().filter(|l| l.name != "lo") {
        for k in INTERFACE_SYSCTLS {
            keys.push(format!("net/{}", k.replace("{if}", &l.name)));
        }
    }
    snap.sysctls = netns::run_in(handle.netns(), move || {
        keys.into_iter()
            .filter_map(|k| {
                let v = std::fs::read_to_string(crate::sysctl::key_path(&k)).ok()?;
                Some((k, v.trim().to_string()))
            })
            .collect()
    })
    .await?;
    snap.links.sort();
    snap.addresses.sort();
    snap.routes.sort();
    Ok(snap)
}

impl Snapshot {
    /// The snapshot without what is random by design: link MACs, IPv6 link-local
    /// addresses and routes, and host-side veth names (`veth` + 8 hex digits, renamed to
    /// `veth*`, along with their sysctl keys).
    pub fn stable(&self) -> Snapshot {
        let rename = |n: &str| {
            let random_veth = n.len() == 12
                && n.starts_with("veth")
                && n[4..].bytes().all(|b| b.is_ascii_hexdigit());
            if random_veth {
                "veth*".to_string()
            } else {
                n.to_string()
            }
        };
        let link_local =
            |a: &IpNet| matches!(a, IpNet::V6(v6) if v6.addr().segments()[0] & 0xffc0 == 0xfe80);
        let mut out = Snapshot {
            links: self
                .links
                .iter()
                .map(|l| LinkState {
                    name: rename(&l.name),
                    master: l.master.as_deref().map(rename),
                    mac: None,
                    ..l.clone()
                })
                .collect(),
            addresses: self
                .addresses
                .iter()
                .filter(|a| !link_local(&a.addr))
                .map(|a| AddrState {
                    link: rename(&a.link),
                    ..a.clone()
                })
                .collect(),
            routes: self
                .routes
                .iter()
                .filter(|r| !link_local(&r.dst))
                .map(|r| RouteState {
                    dev: r.dev.as_deref().map(rename),
                    ..r.clone()
                })
                .collect(),
            sysctls: self
                .sysctls
                .iter()
                .map(|(k, v)| {
                    let k = k.split('/').map(rename).collect::<Vec<_>>().join("/");
                    (k, v.clone())
                })
                .collect(),
        };
        out.links.sort();
        out.addresses.sort();
        out.routes.sort();
        out
    }
}

impl fmt::Display for Snapshot {
    /// One line per fact, stable order, for diffs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.links {
            write!(
                f,
                "link {} kind={} mtu={} up={} promisc={} group={}",
                l.name, l.kind, l.mtu, l.up, l.promisc, l.group
            )?;
            if let Some(m) = l.macvlan_mode {
                write!(f, " macvlan={m}")?;
            }
            if let Some((m, fl)) = l.ipvlan {
                write!(f, " ipvlan={m}/{}", fl.as_str())?;
            }
            if let Some(v) = l.vlan_id {
                write!(f, " vlan={v}")?;
            }
            if let Some(m) = &l.master {
                write!(f, " master={m}")?;
            }
            if let Some(h) = l.hairpin {
                write!(f, " hairpin={h}")?;
            }
            if let Some(m) = l.mac {
                write!(f, " mac={m}")?;
            }
            if let Some(a) = &l.alias {
                write!(f, " alias={a}")?;
            }
            writeln!(f)?;
        }
        for a in &self.addresses {
            writeln!(f, "addr {} {} scope={}", a.link, a.addr, a.scope)?;
        }
        for r in &self.routes {
            write!(f, "route {}", r.dst)?;
            if let Some(g) = r.gateway {
                write!(f, " via {g}")?;
            }
            if let Some(d) = &r.dev {
                write!(f, " dev {d}")?;
            }
            write!(f, " scope={} proto={}", r.scope, r.protocol)?;
            if let Some(p) = r.priority {
                write!(f, " metric={p}")?;
            }
            if let Some(m) = r.mtu {
                write!(f, " mtu={m}")?;
            }
            writeln!(f)?;
        }
        for (k, v) in &self.sysctls {
            writeln!(f, "sysctl {k}={v}")?;
        }
        Ok(())
    }
}

/// What network-status needs about one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceInfo {
    /// MAC.
    pub mac: Option<MacAddr>,
    /// MTU.
    pub mtu: u32,
    /// Global-scope addresses (no IPv6 link-local), IPv4 first.
    pub addrs: Vec<IpNet>,
}

/// MAC, MTU and global addresses of `name` in `handle`'s netns.
pub async fn interface_info(handle: &Handle, name: &str) -> Result<InterfaceInfo> {
    let link = handle.find_link(name).await?;
    let mut addrs: Vec<IpNet> = handle
        .addresses(Some(link.index))
        .await?
        .into_iter()
        .filter(|a| a.scope == 0)
        .map(|a| a.addr)
        .collect();
    addrs.sort_by_key(|a| (a.addr().is_ipv6(), *a));
    Ok(InterfaceInfo {
        mac: link.mac,
        mtu: link.mtu,
        addrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        let mut sysctls = BTreeMap::new();
        sysctls.insert(
            "net/ipv6/conf/veth0a1b2c3d/accept_ra".to_string(),
            "0".to_string(),
        );
        Snapshot {
            links: vec![LinkState {
                name: "veth0a1b2c3d".into(),
                kind: "veth".into(),
                macvlan_mode: None,
                ipvlan: None,
                vlan_id: None,
                mtu: 1500,
                up: true,
                promisc: false,
                master: Some("cni0".into()),
                hairpin: Some(true),
                mac: Some(MacAddr([2, 0, 0, 0, 0, 1])),
                group: 0,
                alias: None,
            }],
            addresses: vec![
                AddrState {
                    link: "net1".into(),
                    addr: "fe80::1/64".parse().unwrap(),
                    scope: 253,
                },
                AddrState {
                    link: "net1".into(),
                    addr: "10.0.0.2/24".parse().unwrap(),
                    scope: 0,
                },
            ],
            routes: vec![RouteState {
                dst: "fe80::/64".parse().unwrap(),
                gateway: None,
                dev: Some("net1".into()),
                scope: 0,
                protocol: 2,
                priority: Some(256),
                mtu: None,
            }],
            sysctls,
        }
    }

    #[test]
    fn stable_drops_random_parts() {
        let s = sample().stable();
        assert_eq!(s.links[0].name, "veth*");
        assert_eq!(s.links[0].mac, None);
        assert_eq!(s.addresses.len(), 1);
        assert!(s.routes.is_empty());
        assert!(s.sysctls.contains_key("net/ipv6/conf/veth*/accept_ra"));
        let text = s.to_string();
        assert_eq!(
            text,
            "link veth* kind=veth mtu=1500 up=true promisc=false group=0 master=cni0 hairpin=true\n\
             addr net1 10.0.0.2/24 scope=0\n\
             sysctl net/ipv6/conf/veth*/accept_ra=0\n"
        );
    }
}

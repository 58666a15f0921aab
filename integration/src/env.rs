//! The standard end-to-end environment: a private containerd, an uplink veth in its test
//! namespace, the test networks as NADs, and plexusd + plexus-nri. Dropping an [`Env`]
//! first removes every pod while plexus still runs (so teardown goes through plexus, as
//! in production), then stops plexus, then containerd.

use std::path::PathBuf;

use crate::containerd::{self, Containerd};
use crate::error::Result;
use crate::nad::{Nad, create_uplink};
use crate::netns::next_id;
use crate::plexus::{self, Plexus};

/// Namespace of the test NADs and pods.
pub const NAMESPACE: &str = "default";
/// macvlan on the uplink, host-local IPAM.
pub const MACVLAN: &str = "macvlan-net";
/// A second macvlan on the uplink (its own subnet), host-local IPAM: with [`MACVLAN`],
/// the two networks of issue 14's measurement.
pub const MACVLAN2: &str = "macvlan2-net";
/// Bridge network inside the test namespace, host-local IPAM.
pub const BRIDGE: &str = "bridge-net";
/// macvlan on the uplink with static IPs and MACs from the pod's selection.
pub const IOT: &str = "iot";
/// A network whose delegate plugin does not exist.
pub const BROKEN: &str = "broken-net";
/// A macvlan whose master link does not exist (fails in the native driver).
pub const NO_MASTER: &str = "no-master-net";

/// The network name of the config plexusd generates for the shim path.
pub const SHIM_NETWORK: &str = "plexus";

/// Subnets of the test networks (inside test namespaces only).
#[derive(Debug, Clone)]
pub struct Subnets {
    /// The macvlan network's subnet.
    pub macvlan: String,
    /// The second macvlan network's subnet.
    pub macvlan2: String,
    /// The bridge network's subnet.
    pub bridge: String,
    /// The IoT network's subnet (addresses chosen by the pods).
    pub iot: String,
}

/// containerd + plexus with the standard networks.
#[derive(Debug)]
pub struct Env {
    /// plexusd and plexus-nri (dropped before containerd).
    pub plexus: Plexus,
    /// The private containerd.
    pub containerd: Containerd,
    /// The macvlan master in containerd's namespace.
    pub uplink: String,
    /// The subnets in use.
    pub subnets: Subnets,
    /// The standard networks (in the NAD directory, or in Kubernetes mode on the API server).
    pub nads: Vec<Nad>,
    kept: bool,
}

impl Env {
    /// Starts everything with default options.
    pub async fn start() -> Result<Self> {
        Self::start_with(containerd::Options::default(), plexus::Options::default()).await
    }

    /// Starts everything for the CNI shim path: containerd with NRI disabled and a private
    /// CNI bin dir, plexusd installing itself as its CNI network, no plexus-nri. Returns once
    /// containerd has loaded the generated config.
    pub async fn start_shim() -> Result<Self> {
        Self::start_shim_with(plexus::Options::default()).await
    }

    /// [`Env::start_shim`] with these plexus options (`shim` is set).
    pub async fn start_shim_with(p: plexus::Options) -> Result<Self> {
        let c = containerd::Options {
            nri: false,
            private_cni_bin: true,
            ..containerd::Options::default()
        };
        let p = plexus::Options { shim: true, ..p };
        let env = Self::start_with(c, p).await?;
        env.wait_shim_loaded().await?;
        Ok(env)
    }

    /// Waits until containerd has loaded plexus's generated CNI config (the shim path).
    pub async fn wait_shim_loaded(&self) -> Result<()> {
        let loaded = format!("\"Name\":\"{}\"", SHIM_NETWORK);
        self.containerd
            .wait_cni_config(&loaded, std::time::Duration::from_secs(15))
            .await
    }

    /// The host-local lease files of the primary (eth0) network.
    pub fn primary_leases(&self) -> Vec<PathBuf> {
        leases_under(&self.containerd.paths().primary_ipam_dir)
    }

    /// Starts everything with the given options.
    pub async fn start_with(c: containerd::Options, p: plexus::Options) -> Result<Self> {
        let containerd = Containerd::start(c).await?;
        Self::start_on(containerd, p, |_| Ok(())).await
    }

    /// Starts plexus on a running containerd (whose namespace then already holds what plexusd
    /// must reach, e.g. a fake API server). `publish` sees the standard networks before
    /// plexusd starts: in Kubernetes mode it creates them on the API server.
    pub async fn start_on(
        containerd: Containerd,
        p: plexus::Options,
        publish: impl FnOnce(&[Nad]) -> Result<()>,
    ) -> Result<Self> {
        let uplink = create_uplink(containerd.host_netns())?;
        let n = next_id() % 256;
        let subnets = Subnets {
            macvlan: format!("10.242.{n}.0/24"),
            macvlan2: format!("10.245.{n}.0/24"),
            bridge: format!("10.243.{n}.0/24"),
            iot: format!("10.244.{n}.0/24"),
        };
        let ipam = containerd.paths().run_dir.join("plexus/ipam");
        let bridge = format!("pxn{}x{n}", std::process::id() % 100_000);
        let nads = vec![
            Nad::macvlan(NAMESPACE, MACVLAN, &uplink, &subnets.macvlan, &ipam),
            Nad::macvlan(NAMESPACE, MACVLAN2, &uplink, &subnets.macvlan2, &ipam),
            Nad::bridge(NAMESPACE, BRIDGE, &bridge, &subnets.bridge, &ipam),
            Nad::macvlan_static(NAMESPACE, IOT, &uplink),
            Nad::failing(NAMESPACE, BROKEN),
            Nad::macvlan(NAMESPACE, NO_MASTER, "pxnomaster0", &subnets.macvlan, &ipam),
        ];
        publish(&nads)?;
        let plexus = Plexus::start(&containerd, &nads, p).await?;
        Ok(Self {
            plexus,
            containerd,
            uplink,
            subnets,
            nads,
            kept: false,
        })
    }

    /// The host-local lease files (one per allocated IP) under plexus's IPAM dir.
    pub fn plexus_leases(&self) -> Vec<PathBuf> {
        leases_under(&self.plexus.paths().ipam_dir)
    }

    /// Links in containerd's namespace other than loopback, the uplink pair and bridges:
    /// what pods left behind on the host side (veth ends, stray macvlans).
    pub fn host_links_left(&self) -> Result<Vec<String>> {
        let out = self
            .containerd
            .host_netns()
            .exec("ip", ["-j", "-d", "link", "show"])?;
        let links: Vec<serde_json::Value> =
            serde_json::from_str(&out).map_err(|source| crate::Error::Json {
                what: "ip -j -d link output",
                source,
            })?;
        let uplink_pair = format!("pxu{}", std::process::id() % 100_000);
        Ok(links
            .iter()
            .filter(|l| l.pointer("/linkinfo/info_kind").and_then(|k| k.as_str()) != Some("bridge"))
            .filter_map(|l| l.get("ifname")?.as_str())
            .filter(|n| *n != "lo" && !n.starts_with(&uplink_pair))
            .map(str::to_owned)
            .collect())
    }

    /// Leaves everything running when dropped (demo `--keep`).
    pub fn keep(&mut self) {
        self.kept = true;
        self.plexus.keep();
        self.containerd.keep();
    }
}

/// Files named like an IP address below `dir` (host-local keeps one per lease).
pub fn leases_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(leases_under(&p));
        } else if p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.parse::<std::net::IpAddr>().is_ok())
        {
            out.push(p);
        }
    }
    out
}

impl Drop for Env {
    fn drop(&mut self) {
        if !self.kept {
            crate::cleanup::remove_all_pods_blocking(&self.containerd.paths().socket);
        }
    }
}

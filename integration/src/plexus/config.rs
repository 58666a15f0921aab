//! Where the plexus side of a run lives, and the plexusd config it runs with.

use std::path::{Path, PathBuf};

use super::Kubernetes;

/// Paths of the plexus side of a run.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `<run dir>/plexus`.
    pub dir: PathBuf,
    /// plexusd's config file.
    pub config: PathBuf,
    /// plexusd's node API socket.
    pub socket: PathBuf,
    /// The NAD directory.
    pub networks_dir: PathBuf,
    /// plexusd's state dir.
    pub state_dir: PathBuf,
    /// host-local data dir for the test networks.
    pub ipam_dir: PathBuf,
    /// plexusd's log.
    pub plexusd_log: PathBuf,
    /// plexus-nri's log.
    pub nri_log: PathBuf,
}

impl Paths {
    pub(super) fn new(run_dir: &Path) -> Self {
        let dir = run_dir.join("plexus");
        Self {
            config: dir.join("plexusd.yaml"),
            socket: dir.join("plexus.sock"),
            networks_dir: dir.join("networks.d"),
            state_dir: dir.join("state"),
            ipam_dir: dir.join("ipam"),
            plexusd_log: dir.join("plexusd.log"),
            nri_log: dir.join("plexus-nri.log"),
            dir,
        }
    }
}

/// The plexusd config for a test run. `cluster_network` is containerd's primary conflist:
/// in runtime mode it only names eth0's network in network-status, as with Multus. NADs
/// come from the NAD directory, or with `kubernetes` from that API server.
pub fn plexusd_yaml(
    paths: &Paths,
    host_netns: &Path,
    cni_bin_dir: &Path,
    cluster_network: &Path,
    log_level: &str,
    kubernetes: Option<&Kubernetes>,
) -> String {
    let d = paths.dir.display();
    let source = match kubernetes {
        Some(k) => format!(
            "nadSource:\n  kubernetes:\n    kubeconfig: {}\n",
            k.kubeconfig.display()
        ),
        None => format!(
            "nadSource:\n  directory: {}\n",
            paths.networks_dir.display()
        ),
    };
    format!(
        "socket: {sock}\nstateDir: {state}\ncniBinDirs:\n  - {bin}\ncniConfDir: {d}/net.d\n\
         cniCacheDir: {d}/cni-cache\nipamDataDir: {ipam}\n{source}\
         hostNetns: {host}\nclusterNetwork: {cluster}\ntelemetry:\n  logLevel: {log_level}\n",
        sock = paths.socket.display(),
        state = paths.state_dir.display(),
        bin = cni_bin_dir.display(),
        ipam = paths.ipam_dir.display(),
        host = host_netns.display(),
        cluster = cluster_network.display(),
    )
}

/// The `cni:` section of the shim path: plexusd writes `00-plexus.conflist` into
/// containerd's conf dir and installs `plexus-cni` into its (private) bin dir.
pub fn shim_yaml(conf_dir: &Path, bin_dir: &Path, shim_binary: &Path) -> String {
    format!(
        "cni:\n  install: auto\n  confDir: {}\n  binDir: {}\n  shimBinary: {}\n",
        conf_dir.display(),
        bin_dir.display(),
        shim_binary.display()
    )
}

//! Engine configuration (filled by plexusd from its config file and flags).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Node-wide choice between the native path and the exec path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DelegationMode {
    /// Native when the config is fully understood, exec otherwise.
    #[default]
    Auto,
    /// Always run the CNI plugin binaries.
    ForceExec,
}

/// How the engine runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Directory of per-sandbox state records.
    pub state_dir: PathBuf,
    /// Directories searched for CNI plugin binaries (exec path).
    pub cni_bin_dirs: Vec<PathBuf>,
    /// libcni cache directory (`results/` lives below it).
    pub cni_cache_dir: PathBuf,
    /// Default host-local lease root (a config's `dataDir` wins).
    pub ipam_data_dir: PathBuf,
    /// Where native `dhcp` IPAM keeps its lease files (one per sandbox and interface).
    pub dhcp_lease_dir: PathBuf,
    /// Deadline for one CNI plugin execution.
    pub delegate_timeout: Duration,
    /// Native or forced exec.
    pub delegation: DelegationMode,
    /// The netns holding host-side links (masters, bridges, host devices); `None` = ours.
    pub host_netns: Option<PathBuf>,
    /// Link group of every link plexus creates in a pod.
    pub link_group: u32,
    /// After a runtime's teardown answered, how long the links in the pod's netns are
    /// left for the namespace's removal to take before plexus deletes them itself
    /// (`reap.rs`).
    pub links_grace: Duration,
    /// How long a reaped sandbox's record removal waits for others to share its fsyncs
    /// (`reap/batch.rs`); zero removes each at once, with its own.
    pub removal_batch: Duration,
}

impl EngineConfig {
    /// The usual paths below `state_dir`, with CNI defaults elsewhere.
    pub fn new(state_dir: impl Into<PathBuf>) -> EngineConfig {
        let state_dir: PathBuf = state_dir.into();
        EngineConfig {
            dhcp_lease_dir: state_dir.join("dhcp"),
            state_dir,
            cni_bin_dirs: vec!["/opt/cni/bin".into()],
            cni_cache_dir: "/var/lib/cni".into(),
            ipam_data_dir: "/var/lib/cni/networks".into(),
            delegate_timeout: Duration::from_secs(30),
            delegation: DelegationMode::Auto,
            host_netns: None,
            link_group: plexus_netlink::link::DEFAULT_LINK_GROUP,
            links_grace: Duration::from_secs(10),
            removal_batch: Duration::from_secs(1),
        }
    }
}

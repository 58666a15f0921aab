//! plexusd's configuration file: one strict YAML document, validated at start.
//!
//! Keys are camelCase; every key that means the same as a Multus daemon/plugin key also
//! accepts Multus's name (`binDir`, `confDir`, `cniDir`, `socketDir`, `connectionLimit`,
//! `metricsPort`, `logLevel`, `logToStderr`, ...), so an existing `daemon-config.json`
//! (JSON is YAML) carries over. Unknown keys are errors naming the key. Relative paths are
//! resolved against the config file's directory. Every key is documented in `docs/config.md`.
//! This module reads the file and nothing else; it does not create directories.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

mod cni;
mod containerd;
mod durations;
mod raw;

pub use cni::{CniConfig, Install};

#[cfg(test)]
mod tests;

/// Where plexusd listens unless `socket` / `socketDir` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/plexus/plexus.sock";

/// Default `connections.max`: concurrent connections from non-root callers.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// Default `connections.idleTimeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Limits on the socket's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connections {
    /// Connections from non-root callers open at once (`connections.max`); beyond it a new
    /// one is closed at accept. Root's are always accepted.
    pub max: usize,
    /// A connection with no request in flight and no bytes either way for this long is
    /// closed (`connections.idleTimeout`).
    pub idle_timeout: Duration,
}

impl Default for Connections {
    fn default() -> Self {
        Connections {
            max: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// The standalone configuration used by the demo (no Kubernetes; NADs from a directory).
pub const STANDALONE_YAML: &str = include_str!("../../../deploy/examples/plexusd.yaml");

/// Where NetworkAttachmentDefinitions come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NadSource {
    /// A directory of NAD manifests (`*.yaml`, `*.yml`, `*.json`).
    Directory(PathBuf),
    /// The API server (`nadSource.kubernetes`): NADs watched, network-status and events
    /// written back (`docs/kubernetes.md`).
    Kubernetes {
        /// A kubeconfig file; `None`: the in-cluster service account.
        kubeconfig: Option<PathBuf>,
        /// Namespaces whose NADs are watched; empty: all.
        namespaces: Vec<String>,
        /// The kubelet's pod-resources socket (`podResourcesSocket`), read for networks whose
        /// NAD names a device-plugin resource.
        pod_resources_socket: PathBuf,
    },
}

/// How networks with a native driver are executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delegation {
    /// Native driver when every key is understood, else the CNI plugin binary.
    #[default]
    Auto,
    /// Always run the CNI plugin binary.
    Exec,
}

/// Who creates the pod's cluster interface (eth0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrimaryMode {
    /// The runtime's own CNI (NRI path).
    #[default]
    Runtime,
    /// plexus itself (CNI shim path).
    Plexus,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Telemetry settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Telemetry {
    /// OTLP/gRPC endpoint for traces; nothing is exported when unset.
    pub otlp_endpoint: Option<String>,
    /// Address of the Prometheus `/metrics` endpoint; none when unset.
    pub metrics_address: Option<SocketAddr>,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter (`error`, `warn`, `info`, `debug`, `trace` or an env-filter directive).
    pub log_level: String,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The unix socket path.
    pub socket: PathBuf,
    /// Crash-safe per-sandbox state.
    pub state_dir: PathBuf,
    /// Where CNI plugin binaries are searched, in order.
    pub cni_bin_dirs: Vec<PathBuf>,
    /// On-disk CNI configs for spec-less NADs and named cluster/default networks.
    pub cni_conf_dir: PathBuf,
    /// libcni-compatible result cache.
    pub cni_cache_dir: PathBuf,
    /// host-local IPAM data directory.
    pub ipam_data_dir: PathBuf,
    /// NAD source.
    pub nad_source: NadSource,
    /// `clusterNetwork`.
    pub cluster_network: Option<String>,
    /// `delegates`: Multus's inline CNI configs (conf or conflist objects), the cluster
    /// network and the networks after it when `clusterNetwork` is unset.
    pub delegates: Vec<serde_json::Value>,
    /// `defaultNetworks`.
    pub default_networks: Vec<String>,
    /// `multusNamespace`.
    pub multus_namespace: String,
    /// `systemNamespaces`.
    pub system_namespaces: Vec<String>,
    /// `namespaceIsolation`.
    pub namespace_isolation: bool,
    /// `globalNamespaces`.
    pub global_namespaces: Vec<String>,
    /// Native or exec delegation.
    pub delegation: Delegation,
    /// Who makes eth0.
    pub primary_mode: PrimaryMode,
    /// Mutating requests running at once.
    pub max_parallel: usize,
    /// Mutating requests waiting beyond `max_parallel`.
    pub max_queued: usize,
    /// CPU niceness plexusd sets for itself at start (`concurrency.nice`, default -10;
    /// 0 leaves it alone). Pod starts wait on plexusd within containerd's 2 s NRI timeout;
    /// when many pods start at once, the runtime's own work for them would otherwise
    /// starve the one process they all wait for.
    pub nice: i32,
    /// Time budget of one NRI hook call, for plexus-nri's `--deadline`. plexusd bounds every
    /// SetupPod by it as well (besides the `grpc-timeout` the request carries).
    pub nri_deadline_budget: Duration,
    /// Period of the sweep that tears down recorded sandboxes whose network namespace is
    /// gone (`reconcile.interval`); `None`: the sweep is off.
    pub reconcile_interval: Option<Duration>,
    /// Timeout of one CNI plugin execution.
    pub delegate_timeout: Duration,
    /// Non-root uids allowed on the socket (root always is).
    pub allowed_uids: Vec<u32>,
    /// Telemetry settings.
    pub telemetry: Telemetry,
    /// Network namespace holding host-side links (tests); `None` = plexusd's own.
    pub host_netns: Option<PathBuf>,
    /// How long a second plexusd waits for the state-directory lock (`lockWait`);
    /// zero: it exits at once naming the holder.
    pub lock_wait: Duration,
    /// Connection limits of the socket.
    pub connections: Connections,
    /// The CNI shim path (`cni.*`).
    pub cni: CniConfig,
    /// Socket on which plexusd runs the reference `dhcp` daemon for exec'd NADs with
    /// `ipam.type: dhcp` (`dhcpDaemonSocket`, usually `/run/cni/dhcp.sock`); `None`: off.
    pub dhcp_daemon_socket: Option<PathBuf>,
    /// containerd's API, read to adopt pods started before plexusd on the CNI shim path
    /// and watched for early setup on the NRI path (`containerd.*`); `None`: off.
    pub containerd: Option<ContainerdConfig>,
}

/// Where plexusd lists the runtime's live pod sandboxes when no NRI Synchronize tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdConfig {
    /// containerd's gRPC socket (`containerd.socket`).
    pub socket: PathBuf,
    /// The CRI plugin's containerd namespace (`containerd.namespace`, default `k8s.io`).
    pub namespace: String,
    /// On the NRI path, set up each pod's networks when containerd creates its sandbox
    /// container, before the NRI hook (`containerd.earlySetup`, default true).
    pub early_setup: bool,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|error| Error::ReadConfig {
            path: path.to_path_buf(),
            error,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, path, base)
    }

    /// Parses and validates config text; `origin` names it in errors and relative paths are
    /// resolved against `base`.
    pub fn parse(text: &str, origin: &Path, base: &Path) -> Result<Config> {
        plexus_core::nesting::check(text, plexus_core::nesting::MAX_DEPTH).map_err(|too_deep| {
            Error::ConfigTooDeep {
                path: origin.to_path_buf(),
                too_deep,
            }
        })?;
        let raw: raw::RawConfig =
            plexus_core::yaml::from_str(text).map_err(|error| Error::ParseConfig {
                path: origin.to_path_buf(),
                error,
            })?;
        raw.validate(base)
    }

    /// The embedded standalone configuration, with relative paths resolved against `base`.
    pub fn standalone(base: &Path) -> Result<Config> {
        Config::parse(STANDALONE_YAML, Path::new("<embedded plexusd.yaml>"), base)
    }

    /// The resolver's view of this configuration.
    pub fn resolver(&self) -> plexus_core::config::Config {
        plexus_core::config::Config {
            cluster_network: self.cluster_network.clone(),
            delegates: self.delegates.clone(),
            default_networks: self.default_networks.clone(),
            multus_namespace: self.multus_namespace.clone(),
            system_namespaces: self.system_namespaces.clone(),
            namespace_isolation: self.namespace_isolation,
            global_namespaces: self.global_namespaces.clone(),
            conf_dir: self.cni_conf_dir.clone(),
            primary_mode: match self.primary_mode {
                PrimaryMode::Runtime => plexus_core::config::PrimaryMode::Runtime,
                PrimaryMode::Plexus => plexus_core::config::PrimaryMode::Plexus,
            },
            ..plexus_core::config::Config::default()
        }
    }
}

/// Parses `lockWait` / `--lock-wait` text: a duration of at most 1h, or `0` / `off`.
pub fn parse_lock_wait(text: &str) -> Result<Duration> {
    durations::lock_wait(
        "lockWait",
        &plexus_core::yaml::Value::String(text.to_owned()),
    )
}

/// Parses a duration in plexus's one grammar ([`plexus_core::duration`]: `1500ms`, `1.5s`,
/// `2m`, `1h`), the same for flags and config.
pub fn parse_duration(text: &str) -> Option<Duration> {
    plexus_core::duration::parse(text).ok()
}

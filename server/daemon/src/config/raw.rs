//! The config file as written (every key optional, Multus aliases), and its validation into
//! [`Config`](super::Config) with errors naming the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::durations::{delegate_timeout, duration, lock_wait, sweep_interval};
use super::{
    Config, Connections, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_SOCKET, Delegation,
    LogFormat, NadSource, PrimaryMode, Telemetry,
};
use crate::error::{Error, Result};

/// Longest unix socket path the kernel accepts (`sun_path` is 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// A list that Multus sometimes writes as one comma-separated string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    fn into_vec(self) -> Vec<String> {
        match self {
            StringOrList::One(s) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            StringOrList::Many(v) => v,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawConfig {
    socket: Option<PathBuf>,
    #[serde(alias = "daemonSocketDir")]
    socket_dir: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    #[serde(alias = "binDir")]
    cni_bin_dirs: Option<StringOrList>,
    #[serde(alias = "confDir")]
    cni_conf_dir: Option<PathBuf>,
    #[serde(alias = "cniDir")]
    cni_cache_dir: Option<PathBuf>,
    ipam_data_dir: Option<PathBuf>,
    nad_source: Option<RawNadSource>,
    /// Multus's key: a kubeconfig means NADs come from the API server.
    kubeconfig: Option<PathBuf>,
    cluster_network: Option<String>,
    /// Multus's inline CNI configs, used when `clusterNetwork` is unset.
    delegates: Option<Vec<serde_json::Value>>,
    default_networks: Option<StringOrList>,
    multus_namespace: Option<String>,
    system_namespaces: Option<StringOrList>,
    namespace_isolation: Option<bool>,
    global_namespaces: Option<StringOrList>,
    delegation: Option<Delegation>,
    primary_mode: Option<PrimaryMode>,
    concurrency: Option<RawConcurrency>,
    connection_limit: Option<i64>,
    nri: Option<RawNri>,
    reconcile: Option<RawReconcile>,
    delegate_timeout: Option<String>,
    allowed_uids: Option<Vec<u32>>,
    telemetry: Option<RawTelemetry>,
    log_level: Option<String>,
    log_to_stderr: Option<bool>,
    metrics_port: Option<i64>,
    host_netns: Option<PathBuf>,
    /// A duration, or `0` / `off`; any YAML scalar, classified in [`lock_wait`].
    lock_wait: Option<plexus_core::yaml::Value>,
    connections: Option<RawConnections>,
    cni: Option<super::cni::RawCni>,
    cni_config_dir: Option<PathBuf>,
    multus_autoconfig_dir: Option<PathBuf>,
    multus_config_file: Option<String>,
    #[serde(rename = "readinessindicatorfile", alias = "readinessIndicatorFile")]
    readiness_indicator_file: Option<PathBuf>,
    dhcp_daemon_socket: Option<PathBuf>,
    containerd: Option<super::containerd::RawContainerd>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConnections {
    max: Option<i64>,
    idle_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawNadSource {
    directory: Option<PathBuf>,
    kubernetes: Option<RawKubernetes>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawKubernetes {
    kubeconfig: Option<PathBuf>,
    namespaces: Option<StringOrList>,
    pod_resources_socket: Option<PathBuf>,
}

/// plexusd's CPU niceness unless `concurrency.nice` says otherwise (see `Config::nice`).
const DEFAULT_NICE: i32 = -10;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConcurrency {
    max_parallel: Option<i64>,
    max_queued: Option<i64>,
    nice: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawNri {
    deadline_budget: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawReconcile {
    /// A duration, or `0` / `off`; any YAML scalar, classified in [`sweep_interval`].
    interval: Option<plexus_core::yaml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTelemetry {
    otlp_endpoint: Option<String>,
    metrics_address: Option<String>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
}

pub(super) fn invalid(key: &'static str, message: impl Into<String>) -> Error {
    Error::ConfigValue {
        key,
        message: message.into(),
    }
}

/// `nadSource` (and Multus's top-level `kubeconfig`, which means the Kubernetes source).
fn nad_source(
    base: &Path,
    raw: RawNadSource,
    multus_kubeconfig: Option<PathBuf>,
) -> Result<NadSource> {
    let kubernetes = match (raw.kubernetes, multus_kubeconfig) {
        (
            Some(RawKubernetes {
                kubeconfig: Some(_),
                ..
            }),
            Some(_),
        ) => {
            return Err(invalid(
                "kubeconfig",
                "given twice, at the top level (Multus's key) and in nadSource.kubernetes.kubeconfig; keep one",
            ));
        }
        (Some(k), top) => Some(RawKubernetes {
            kubeconfig: k.kubeconfig.or(top),
            ..k
        }),
        (None, Some(top)) => Some(RawKubernetes {
            kubeconfig: Some(top),
            namespaces: None,
            pod_resources_socket: None,
        }),
        (None, None) => None,
    };
    match (raw.directory, kubernetes) {
        (Some(_), Some(_)) => Err(invalid(
            "nadSource",
            "both directory and kubernetes (or a top-level kubeconfig) are set; NADs come from one source, choose one",
        )),
        (Some(dir), None) => Ok(NadSource::Directory(path(base, dir))),
        (None, None) => Ok(NadSource::Directory(PathBuf::from(
            "/etc/plexus/networks.d",
        ))),
        (None, Some(k)) => {
            let namespaces = k.namespaces.map(StringOrList::into_vec).unwrap_or_default();
            let namespaces =
                plexus_kube::client::validate_namespaces(namespaces).map_err(|e| match e {
                    plexus_kube::Error::InvalidSettings { reason, .. } => {
                        invalid("nadSource.kubernetes.namespaces", reason)
                    }
                    other => invalid("nadSource.kubernetes.namespaces", other.to_string()),
                })?;
            let pod_resources_socket = match k.pod_resources_socket {
                None => PathBuf::from(crate::pod_resources::DEFAULT_SOCKET),
                Some(p) if p.is_absolute() => p,
                Some(p) => {
                    return Err(invalid(
                        "nadSource.kubernetes.podResourcesSocket",
                        format!(
                            "{} is relative; give the absolute path of the kubelet's pod-resources socket (default {})",
                            p.display(),
                            crate::pod_resources::DEFAULT_SOCKET
                        ),
                    ));
                }
            };
            Ok(NadSource::Kubernetes {
                kubeconfig: k.kubeconfig.map(|p| path(base, p)),
                namespaces,
                pod_resources_socket,
            })
        }
    }
}

pub(super) fn path(base: &Path, p: PathBuf) -> PathBuf {
    if p.is_absolute() { p } else { base.join(p) }
}

fn count(key: &'static str, value: i64, min: i64) -> Result<usize> {
    if value < min {
        return Err(invalid(key, format!("{value} is below the minimum {min}")));
    }
    usize::try_from(value).map_err(|_| invalid(key, format!("{value} is too large")))
}

/// Multus's levels (debug, verbose, error, panic) plus the usual ones.
fn log_level(key: &'static str, level: &str) -> Result<String> {
    let mapped = match level.to_ascii_lowercase().as_str() {
        "panic" | "error" => "error",
        "warn" | "warning" => "warn",
        "info" => "info",
        "debug" | "verbose" => "debug",
        "trace" => "trace",
        _ if level.contains('=') => return Ok(level.to_owned()),
        _ => {
            return Err(invalid(
                key,
                format!(
                    "{level:?} is not a log level; use error, warn, info, debug, trace (Multus's verbose and panic are accepted) or a filter directive like plexus_server=debug"
                ),
            ));
        }
    };
    Ok(mapped.to_owned())
}

fn either<T>(
    a: Option<T>,
    a_key: &'static str,
    b: Option<T>,
    b_key: &'static str,
) -> Result<Option<T>> {
    match (a, b) {
        (Some(_), Some(_)) => Err(invalid(
            a_key,
            format!("set either {a_key} or {b_key}, not both"),
        )),
        (a, b) => Ok(a.or(b)),
    }
}

impl RawConfig {
    pub(super) fn validate(self, base: &Path) -> Result<Config> {
        let socket = match (self.socket, self.socket_dir) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "socket",
                    "set either socket or socketDir, not both",
                ));
            }
            (Some(p), None) if p.as_os_str().is_empty() => {
                return Err(invalid("socket", "empty path"));
            }
            (Some(p), None) => path(base, p),
            // Multus's `socketDir`: the socket lives inside it.
            (None, Some(dir)) => path(base, dir).join("plexus.sock"),
            (None, None) => PathBuf::from(DEFAULT_SOCKET),
        };
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(invalid(
                "socket",
                format!(
                    "{} is longer than {MAX_SOCKET_PATH} bytes, the limit of a unix socket path",
                    socket.display()
                ),
            ));
        }

        let cni_bin_dirs: Vec<PathBuf> = self
            .cni_bin_dirs
            .map(StringOrList::into_vec)
            .unwrap_or_else(|| vec!["/opt/cni/bin".to_owned()])
            .into_iter()
            .map(|p| path(base, PathBuf::from(p)))
            .collect();
        if cni_bin_dirs.is_empty() {
            return Err(invalid("cniBinDirs", "at least one directory is required"));
        }

        let nad_source = nad_source(base, self.nad_source.unwrap_or_default(), self.kubeconfig)?;

        let multus_namespace = self
            .multus_namespace
            .unwrap_or_else(|| "kube-system".to_owned());
        if multus_namespace.is_empty() {
            return Err(invalid("multusNamespace", "must not be empty"));
        }

        let concurrency = self.concurrency.unwrap_or_default();
        let limit = concurrency
            .max_parallel
            .map(|v| ("concurrency.maxParallel", v));
        let alias = self.connection_limit.map(|v| ("connectionLimit", v));
        let max_parallel = match either(limit, "concurrency.maxParallel", alias, "connectionLimit")?
        {
            Some((key, v)) => count(key, v, 1)?,
            None => 16,
        };
        let max_queued = match concurrency.max_queued {
            Some(v) => count("concurrency.maxQueued", v, 0)?,
            None => 256,
        };
        let nice = match concurrency.nice {
            Some(v @ -20..=19) => i32::try_from(v).expect("in -20..=19"),
            Some(v) => {
                let accepted = "accepted: -20 (most favoured) to 19, 0 to leave it alone";
                return Err(invalid(
                    "concurrency.nice",
                    format!("{v} is out of range; {accepted}"),
                ));
            }
            None => DEFAULT_NICE,
        };

        let nri_deadline_budget = match self.nri.and_then(|n| n.deadline_budget) {
            Some(text) => duration("nri.deadlineBudget", &text)?,
            None => Duration::from_millis(1500),
        };
        let containerd = super::containerd::parse(self.containerd.unwrap_or_default(), base)?;
        let reconcile_interval = match self.reconcile.and_then(|r| r.interval) {
            Some(value) => sweep_interval("reconcile.interval", &value)?,
            None => Some(Duration::from_secs(60)),
        };
        let delegate_timeout = match self.delegate_timeout {
            Some(text) => delegate_timeout("delegateTimeout", &text)?,
            None => Duration::from_secs(10),
        };

        let lock_wait = match &self.lock_wait {
            Some(value) => lock_wait("lockWait", value)?,
            None => Duration::ZERO,
        };
        let connections = self.connections.unwrap_or_default();
        let max_connections = match connections.max {
            Some(v) => count("connections.max", v, 1)?,
            None => DEFAULT_MAX_CONNECTIONS,
        };
        let idle_timeout = match connections.idle_timeout {
            Some(text) => duration("connections.idleTimeout", &text)?,
            None => DEFAULT_IDLE_TIMEOUT,
        };

        if self.log_to_stderr == Some(false) {
            return Err(invalid(
                "logToStderr",
                "plexusd always logs to stderr; remove the key or set it to true",
            ));
        }
        let telemetry = self.telemetry.unwrap_or_default();
        let log_level = match either(
            telemetry.log_level,
            "telemetry.logLevel",
            self.log_level,
            "logLevel",
        )? {
            Some(level) => log_level("telemetry.logLevel", &level)?,
            None => "info".to_owned(),
        };
        let metrics_address = match (telemetry.metrics_address, self.metrics_port) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "telemetry.metricsAddress",
                    "set either telemetry.metricsAddress or metricsPort, not both",
                ));
            }
            (Some(addr), None) => Some(addr.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "telemetry.metricsAddress",
                    format!("{addr:?} is not an address; write e.g. 127.0.0.1:9090"),
                )
            })?),
            (None, Some(port)) => {
                let port = u16::try_from(port)
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| invalid("metricsPort", format!("{port} is not a port")))?;
                Some(SocketAddr::from(([0, 0, 0, 0], port)))
            }
            (None, None) => None,
        };

        let cni = super::cni::validate(
            self.cni,
            super::cni::MultusKeys {
                cni_config_dir: self.cni_config_dir,
                multus_autoconfig_dir: self.multus_autoconfig_dir,
                multus_config_file: self.multus_config_file,
                readiness_indicator_file: self.readiness_indicator_file,
            },
            base,
            &cni_bin_dirs,
        )?;
        let config = Config {
            cni,
            socket,
            state_dir: path(
                base,
                self.state_dir
                    .unwrap_or_else(|| PathBuf::from("/var/lib/plexus")),
            ),
            cni_bin_dirs,
            cni_conf_dir: path(
                base,
                self.cni_conf_dir
                    .unwrap_or_else(|| PathBuf::from("/etc/cni/multus/net.d")),
            ),
            cni_cache_dir: path(
                base,
                self.cni_cache_dir
                    .unwrap_or_else(|| PathBuf::from("/var/lib/cni/plexus")),
            ),
            ipam_data_dir: path(
                base,
                self.ipam_data_dir
                    .unwrap_or_else(|| PathBuf::from("/var/lib/cni/networks")),
            ),
            nad_source,
            cluster_network: self.cluster_network.filter(|s| !s.is_empty()),
            delegates: self.delegates.unwrap_or_default(),
            default_networks: self
                .default_networks
                .map(StringOrList::into_vec)
                .unwrap_or_default(),
            multus_namespace,
            system_namespaces: self
                .system_namespaces
                .map(StringOrList::into_vec)
                .unwrap_or_else(|| vec!["kube-system".to_owned()]),
            namespace_isolation: self.namespace_isolation.unwrap_or(false),
            global_namespaces: self
                .global_namespaces
                .map(StringOrList::into_vec)
                .unwrap_or_else(|| vec!["default".to_owned()]),
            delegation: self.delegation.unwrap_or_default(),
            primary_mode: self.primary_mode.unwrap_or_default(),
            max_parallel,
            max_queued,
            nice,
            nri_deadline_budget,
            reconcile_interval,
            delegate_timeout,
            allowed_uids: self.allowed_uids.unwrap_or_default(),
            telemetry: Telemetry {
                otlp_endpoint: telemetry.otlp_endpoint.filter(|s| !s.is_empty()),
                metrics_address,
                log_format: telemetry.log_format.unwrap_or_default(),
                log_level,
            },
            host_netns: self.host_netns.map(|p| path(base, p)),
            lock_wait,
            connections: Connections {
                max: max_connections,
                idle_timeout,
            },
            dhcp_daemon_socket: self.dhcp_daemon_socket.map(|p| path(base, p)),
            containerd,
        };
        // The resolver's own checks (the `delegates` entries among them) fail here, at
        // start, instead of on every pod.
        config.resolver().validate().map_err(|e| match e {
            plexus_core::Error::InvalidConfig { field, reason } => invalid(field, reason),
            other => invalid("delegates", other.to_string()),
        })?;
        Ok(config)
    }
}

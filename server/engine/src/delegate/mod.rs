//! CNI delegate execution: runs real CNI plugin binaries for a conf or conflist, per the
//! spec and with libcni's behaviour (ADD/DEL/CHECK/STATUS/GC/VERSION, chaining with
//! `prevResult`, capabilities → `runtimeConfig`, `CNI_ARGS`, the result cache on disk,
//! typed errors from the plugin's error JSON or stderr, ETXTBSY retry, a deadline).
//!
//! It owns the exec path only. It does not decide what runs (that is the plan), does not
//! undo a failed ADD by itself (the caller runs [`Executor::del`], as the spec requires
//! of a runtime), and never looks a plugin up anywhere but the configured bin dirs.
//! Plugins run in the daemon's netns, or in [`Config::host_netns`] when set (entered in
//! the forked child with `plexus_netlink::netns::enter_netns_in_child`), and are killed by
//! the kernel when the daemon dies (`PR_SET_PDEATHSIG`, set from a spawner thread that
//! lives as long as the process).

pub(crate) mod cache;
mod error;
mod exec;
mod netconf;
pub(crate) mod spawn;
mod verbs;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use plexus_core::cni;
use plexus_core::id::{InterfaceName, NetworkName, SandboxId};
use plexus_core::plan::{DelegateConfig, PlannedAttachment, RuntimeConfig};
use plexus_core::pod::PodIdentity;
use serde::{Deserialize, Serialize};

pub use cache::{Entry as CacheEntry, KIND_V1 as CACHE_KIND_V1};
pub use error::{Error, Result};
pub use netconf::{MAX_PLUGIN_TYPE_LEN, validate_plugin_type};

/// How the executor runs plugins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Directories searched for plugin binaries, in order (also `CNI_PATH`).
    pub bin_dirs: Vec<PathBuf>,
    /// libcni cache directory; result files go to `<cache_dir>/results/`.
    pub cache_dir: PathBuf,
    /// Deadline for one plugin execution; the plugin's process group is killed after it.
    pub timeout: Duration,
    /// Netns the plugin processes run in (`None` = the daemon's own).
    pub host_netns: Option<PathBuf>,
    /// Extra exec attempts on "text file busy" (libcni: 5).
    pub busy_retries: u32,
    /// Pause between those attempts (libcni: 1 s).
    pub busy_retry_delay: Duration,
    /// Lease root given to the host-local IPAM plugin as `ipam.dataDir` when a config does
    /// not set one, so exec'd and native host-local share one lease directory per network
    /// (`None`: the plugin's own default, `/var/lib/cni/networks`).
    pub ipam_data_dir: Option<PathBuf>,
    /// Ask each plugin for its VERSION before ADD and refuse a config version it does not
    /// support (answers are cached per binary and modification time).
    pub probe_versions: bool,
}

impl Config {
    /// libcni's defaults: 5 busy retries 1 s apart, a 30 s deadline, no probing.
    pub fn new(bin_dirs: Vec<PathBuf>, cache_dir: impl Into<PathBuf>) -> Config {
        Config {
            bin_dirs,
            cache_dir: cache_dir.into(),
            timeout: Duration::from_secs(30),
            host_netns: None,
            busy_retries: 5,
            busy_retry_delay: Duration::from_secs(1),
            ipam_data_dir: None,
            probe_versions: false,
        }
    }
}

/// One ADD/DEL/CHECK of one attachment.
#[derive(Debug, Clone, Copy)]
pub struct Invocation<'a> {
    /// `CNI_CONTAINERID` (the sandbox id).
    pub container_id: &'a SandboxId,
    /// `CNI_NETNS`; `None` on a DEL whose netns is gone.
    pub netns: Option<&'a Path>,
    /// `CNI_IFNAME`.
    pub ifname: &'a InterfaceName,
    /// The pod (for `K8S_POD_*` in `CNI_ARGS`).
    pub pod: &'a PodIdentity,
    /// The delegate's config.
    pub config: &'a DelegateConfig,
    /// The attachment's capability requests (ips, mac, portMappings, …).
    pub runtime_config: &'a RuntimeConfig,
    /// The runtime's own capability args (e.g. what containerd passed to the shim); keys
    /// of `portMappings`/`bandwidth`/`dns` may be containerd's capitalised ones.
    pub runtime_capabilities: Option<&'a serde_json::Map<String, serde_json::Value>>,
    /// Legacy `CNI_ARGS` additions (`MAC=…`, `IP=…`).
    pub extra_cni_args: &'a [(String, String)],
    /// DEL/CHECK: the result to pass as `prevResult` instead of the cached one (e.g. from
    /// the engine's state record when the cache file is gone).
    pub prev_result: Option<&'a cni::Result>,
}

impl<'a> Invocation<'a> {
    /// The invocation of a planned attachment in a sandbox.
    pub fn for_attachment(
        attachment: &'a PlannedAttachment,
        pod: &'a PodIdentity,
        container_id: &'a SandboxId,
        netns: Option<&'a Path>,
    ) -> Invocation<'a> {
        Invocation {
            container_id,
            netns,
            ifname: &attachment.interface,
            pod,
            config: &attachment.config,
            runtime_config: &attachment.runtime_config,
            runtime_capabilities: None,
            extra_cni_args: &attachment.extra_cni_args,
            prev_result: None,
        }
    }
}

/// What a successful ADD returns.
#[derive(Debug, Clone, PartialEq)]
pub struct AddOutput {
    /// The final result of the chain (labelled with the version the last plugin used).
    pub result: cni::Result,
    /// The last plugin's raw stdout.
    pub stdout: Vec<u8>,
    /// The last plugin's stderr (informational).
    pub stderr: Vec<u8>,
}

/// One attachment the runtime still uses, for GC (`cni.dev/valid-attachments`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GcAttachment {
    /// Container id.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Interface name.
    #[serde(rename = "ifname")]
    pub ifname: String,
}

/// Runs CNI plugins. Cheap to share behind an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct Executor {
    config: Config,
    versions: Mutex<VersionCache>,
}

/// VERSION answers per binary path and modification time.
type VersionCache = HashMap<(PathBuf, Option<SystemTime>), cni::VersionInfo>;

impl Executor {
    /// An executor with `config`.
    pub fn new(config: Config) -> Executor {
        Executor {
            config,
            versions: Mutex::new(HashMap::new()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The cache entry of one attachment: `Ok(None)` when there is none, an error when the
    /// file exists but cannot be read or parsed.
    pub fn cached(
        &self,
        network: &NetworkName,
        container_id: &SandboxId,
        ifname: &InterfaceName,
    ) -> Result<Option<CacheEntry>> {
        match cache::read(&self.config.cache_dir, network, container_id, ifname)? {
            None => Ok(None),
            Some(Ok(entry)) => Ok(Some(entry)),
            Some(Err(reason)) => Err(Error::Cache {
                path: cache::path(&self.config.cache_dir, network, container_id, ifname),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, reason),
            }),
        }
    }

    /// Every valid cache entry, optionally only those of one container (what a teardown
    /// without state can still find).
    pub fn cached_attachments(&self, container_id: Option<&str>) -> Result<Vec<CacheEntry>> {
        cache::list(&self.config.cache_dir, container_id)
    }
}

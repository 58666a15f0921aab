//! Errors of the CNI delegate executor. Each variant names the failed step and carries
//! the plugin, the verb and what the plugin said, so a pod event is actionable.

use std::path::PathBuf;
use std::time::Duration;

use plexus_core::cni;

/// Result with the delegate [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failed delegate operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A plugin `type` is not a bare file name (rejected before any lookup or exec).
    #[error(
        "invalid cni plugin type {plugin:?}: {reason}; expected a bare binary name such as \"macvlan\""
    )]
    InvalidPluginType {
        /// The type as written in the config.
        plugin: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No configured bin dir holds the plugin.
    #[error("cni plugin {plugin:?} not found in {}", dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(":"))]
    PluginNotFound {
        /// The plugin type.
        plugin: String,
        /// The directories searched.
        dirs: Vec<PathBuf>,
    },
    /// The delegate config is not a usable conf or conflist.
    #[error("invalid cni config of network {network:?}: {reason}")]
    InvalidConfig {
        /// The network name.
        network: String,
        /// What is wrong.
        reason: String,
    },
    /// A container id, network or interface name would be rejected by the spec.
    #[error("invalid {what} for network {network:?}: {error}")]
    InvalidArgument {
        /// Which argument.
        what: &'static str,
        /// The network name.
        network: String,
        /// The CNI validation error.
        error: Box<cni::PluginError>,
    },
    /// A `CNI_ARGS` pair could not be rendered.
    #[error("cannot build CNI_ARGS for network {network:?}: {error}")]
    CniArgs {
        /// The network name.
        network: String,
        /// The cause.
        error: cni::Error,
    },
    /// The config's version does not support a verb (CHECK before 0.4.0).
    #[error(
        "network {network:?} has cniVersion {version:?}, which does not support the {verb} command"
    )]
    VerbUnsupported {
        /// The network name.
        network: String,
        /// The config version.
        version: String,
        /// The verb.
        verb: &'static str,
    },
    /// The plugin's VERSION answer does not include the config's version.
    #[error("cni plugin {plugin:?} does not support cniVersion {version:?} (it supports {})", supported.join(", "))]
    IncompatibleVersion {
        /// The plugin type.
        plugin: String,
        /// The config version.
        version: String,
        /// What the plugin supports.
        supported: Vec<String>,
    },
    /// The plugin process could not be started (after retrying "text file busy").
    #[error("failed to execute cni plugin {path}: {source}")]
    Spawn {
        /// The binary.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The configured host netns cannot be used.
    #[error("cannot run cni plugins in host netns {path}: {source}")]
    HostNetns {
        /// The netns path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for the plugin process failed.
    #[error("failed to wait for cni plugin {path}: {source}")]
    Wait {
        /// The binary.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The plugin did not finish within the deadline; it and its process group were killed.
    #[error("cni plugin {plugin:?} {verb} timed out after {timeout:?} and was killed")]
    Timeout {
        /// The plugin type.
        plugin: String,
        /// The verb.
        verb: &'static str,
        /// The deadline.
        timeout: Duration,
    },
    /// The plugin exited non-zero. `error` is its CNI error JSON, or libcni's fallback
    /// message built from stderr.
    #[error("cni plugin {plugin:?} {verb} failed (code {}): {error}", error.code)]
    Plugin {
        /// The plugin type.
        plugin: String,
        /// The verb.
        verb: &'static str,
        /// The CNI error.
        error: Box<cni::PluginError>,
        /// Everything the plugin wrote to stderr.
        stderr: String,
    },
    /// The plugin exited 0 but its result does not parse.
    #[error("cni plugin {plugin:?} {verb} returned an unusable result: {error}")]
    BadResult {
        /// The plugin type.
        plugin: String,
        /// The verb.
        verb: &'static str,
        /// The parse or conversion error.
        error: cni::Error,
    },
    /// A result could not be converted to the config's version for `prevResult`.
    #[error(
        "cannot pass the previous result to network {network:?} as cniVersion {version:?}: {error}"
    )]
    ConvertPrevResult {
        /// The network name.
        network: String,
        /// The config version.
        version: String,
        /// The conversion error.
        error: cni::Error,
    },
    /// The result cache file could not be written or removed.
    #[error("cni result cache {path}: {source}")]
    Cache {
        /// The cache file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// GC: one or more plugins or stale-attachment deletions failed.
    #[error("cni gc of network {network:?} failed: {}", errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(" / "))]
    Gc {
        /// The network name.
        network: String,
        /// Every failure, in order.
        errors: Vec<Error>,
    },
}

impl Error {
    /// The CNI error a runtime should see for this failure (the plugin's own error when a
    /// plugin failed, else a well-known code).
    pub fn to_plugin_error(&self) -> cni::PluginError {
        use cni::ErrorCode as C;
        let code = match self {
            Error::Plugin { error, .. } | Error::InvalidArgument { error, .. } => {
                return (**error).clone();
            }
            Error::InvalidPluginType { .. }
            | Error::PluginNotFound { .. }
            | Error::InvalidConfig { .. } => C::INVALID_NETWORK_CONFIG,
            Error::VerbUnsupported { .. } | Error::IncompatibleVersion { .. } => {
                C::INCOMPATIBLE_VERSION
            }
            Error::CniArgs { .. } => C::INVALID_ENVIRONMENT,
            Error::BadResult { .. } | Error::ConvertPrevResult { .. } => C::DECODING_FAILURE,
            Error::Spawn { .. }
            | Error::HostNetns { .. }
            | Error::Wait { .. }
            | Error::Cache { .. } => C::IO_FAILURE,
            Error::Timeout { .. } => C::TRY_AGAIN_LATER,
            Error::Gc { .. } => C::INTERNAL,
        };
        cni::PluginError::new(code, self.to_string(), "")
    }
}

//! Errors of the CNI data model, and the CNI error JSON a plugin prints on failure.
//!
//! [`Error`] is what this module's own functions return (a result that does not parse,
//! a version nobody implements). [`PluginError`] is the wire object of the spec
//! (`{"cniVersion","code","msg","details"}`) with its well-known [`ErrorCode`]s; the
//! validation helpers return it because a runtime hands it back to its caller as is.

use serde::{Deserialize, Serialize};

/// Errors of the CNI data model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A version string is not `major[.minor[.micro]]` with decimal numbers.
    #[error("invalid cni version {version:?}: expected major.minor.micro, e.g. \"1.0.0\"")]
    InvalidVersion {
        /// The text that did not parse.
        version: String,
    },
    /// A result or config names a spec version this code does not implement.
    #[error("unsupported cni version {version:?}; supported: {}", super::version::SUPPORTED.join(", "))]
    UnsupportedVersion {
        /// The version asked for.
        version: String,
    },
    /// A plugin's result JSON does not parse as the version it claims.
    #[error("failed to parse cni result of version {version:?}: {error}")]
    ParseResult {
        /// The version whose shape was expected.
        version: String,
        /// The JSON error.
        error: serde_json::Error,
    },
    /// A result cannot be expressed in the requested version.
    #[error("cannot convert cni result to version {to:?}: {reason}")]
    ConvertResult {
        /// Target version.
        to: String,
        /// Why it is impossible.
        reason: &'static str,
    },
    /// A network configuration is not a JSON object or has a non-string `cniVersion`.
    #[error("failed to read cniVersion of the network config: {reason}")]
    ParseConfig {
        /// What was wrong.
        reason: String,
    },
    /// A VERSION answer does not parse.
    #[error("failed to decode plugin version info: {reason}")]
    ParseVersionInfo {
        /// What was wrong.
        reason: String,
    },
    /// A `CNI_ARGS` pair is not `KEY=VALUE`.
    #[error("invalid CNI_ARGS pair {pair:?}: expected KEY=VALUE pairs separated by ';'")]
    ParseCniArgs {
        /// The offending pair.
        pair: String,
    },
    /// A `CNI_ARGS` key or value cannot be rendered (contains `;` or `=`, or the key is empty).
    #[error(
        "cannot put {key:?}={value:?} into CNI_ARGS: keys must be non-empty and neither may contain ';' or '='"
    )]
    RenderCniArgs {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
}

/// A CNI error code (spec "Error" section). 0–99 are reserved for the spec; plugins use
/// 100 and above for their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ErrorCode(pub u32);

impl ErrorCode {
    /// 1: incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: ErrorCode = ErrorCode(1);
    /// 2: unsupported field in the network configuration.
    pub const UNSUPPORTED_FIELD: ErrorCode = ErrorCode(2);
    /// 3: container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: ErrorCode = ErrorCode(3);
    /// 4: invalid necessary environment variables.
    pub const INVALID_ENVIRONMENT: ErrorCode = ErrorCode(4);
    /// 5: I/O failure.
    pub const IO_FAILURE: ErrorCode = ErrorCode(5);
    /// 6: failed to decode content.
    pub const DECODING_FAILURE: ErrorCode = ErrorCode(6);
    /// 7: invalid network config.
    pub const INVALID_NETWORK_CONFIG: ErrorCode = ErrorCode(7);
    /// 8: invalid netns (libcni `types.go`, not in the spec table).
    pub const INVALID_NETNS: ErrorCode = ErrorCode(8);
    /// 11: try again later.
    pub const TRY_AGAIN_LATER: ErrorCode = ErrorCode(11);
    /// 50: STATUS — the plugin is not available.
    pub const PLUGIN_NOT_AVAILABLE: ErrorCode = ErrorCode(50);
    /// 51: STATUS — not available, existing containers may have limited connectivity.
    pub const PLUGIN_NOT_AVAILABLE_LIMITED: ErrorCode = ErrorCode(51);
    /// 999: internal error (libcni `types.go`).
    pub const INTERNAL: ErrorCode = ErrorCode(999);

    /// A short description of a well-known code, `None` for others.
    pub fn describe(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "incompatible cni version",
            2 => "unsupported field in network configuration",
            3 => "container unknown or does not exist",
            4 => "invalid necessary environment variables",
            5 => "i/o failure",
            6 => "failed to decode content",
            7 => "invalid network config",
            8 => "invalid network namespace",
            11 => "try again later",
            50 => "plugin not available",
            51 => "plugin not available, existing containers may have limited connectivity",
            999 => "internal error",
            _ => return None,
        })
    }

    /// True for codes 0–99, which the spec reserves for itself.
    pub fn is_reserved(self) -> bool {
        self.0 < 100
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The CNI error object a plugin prints on stdout when it exits non-zero.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginError {
    /// Spec version of the output (empty when the plugin left it out).
    #[serde(
        rename = "cniVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub cni_version: String,
    /// Error code.
    pub code: ErrorCode,
    /// Short message.
    #[serde(default)]
    pub msg: String,
    /// Longer details.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl PluginError {
    /// Builds an error without a version label.
    pub fn new(code: ErrorCode, msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self {
            cni_version: String::new(),
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// Labels the error with a spec version.
    pub fn with_version(mut self, cni_version: impl Into<String>) -> Self {
        self.cni_version = cni_version.into();
        self
    }

    /// Parses a plugin's stdout as an error object. Returns `None` unless it is a JSON
    /// object with a numeric `code` (libcni's rule for telling an error JSON from noise).
    pub fn parse(stdout: &[u8]) -> Option<Self> {
        let value: serde_json::Value = serde_json::from_slice(stdout).ok()?;
        value.get("code")?.as_u64()?;
        serde_json::from_value(value).ok()
    }

    /// Compact JSON text, as a plugin prints it.
    pub fn render(&self) -> String {
        super::json::marshal(self).unwrap_or_default()
    }
}

impl std::fmt::Display for PluginError {
    /// libcni's `types.Error.Error()`: `msg` alone, or `msg; details`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.details.is_empty() {
            write!(f, "{}", self.msg)
        } else {
            write!(f, "{}; {}", self.msg, self.details)
        }
    }
}

impl std::error::Error for PluginError {}

//! The one error type of plexus-nri. Variants are named after the operation that failed
//! and carry what an operator needs to act on it.

use std::path::PathBuf;
use std::time::Duration;

use crate::ttrpc::Status;

/// Result with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the plugin outside of a single event handler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The plugin name given on the command line is unusable.
    #[error(
        "invalid plugin name {name:?}: must be non-empty ASCII letters, digits, '-', '_' or '.'"
    )]
    InvalidPluginName {
        /// The rejected name.
        name: String,
    },
    /// The plugin index given on the command line is unusable.
    #[error("invalid plugin index {idx:?}: must be exactly two ASCII digits, e.g. \"10\"")]
    InvalidPluginIdx {
        /// The rejected index.
        idx: String,
    },
    /// A duration argument could not be parsed.
    #[error(
        "invalid duration {value:?}: expected a number and a unit ms, s, m or h, e.g. \"1500ms\" or \"1.5s\""
    )]
    InvalidDuration {
        /// The rejected text.
        value: String,
    },
    /// Dialing the runtime's NRI socket failed.
    #[error("connect to the NRI socket {path}: {source}")]
    ConnectRuntime {
        /// Socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The runtime refused or failed our RegisterPlugin call.
    #[error("register plugin {name} (idx {idx}) with the runtime: {cause}")]
    Register {
        /// Plugin name.
        name: String,
        /// Plugin index.
        idx: String,
        /// Why it failed.
        cause: CallError,
    },
    /// A message exceeded the 4 MiB ttrpc limit.
    #[error("ttrpc message of {len} bytes exceeds the limit of {max} bytes")]
    MessageTooLarge {
        /// Message length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Why an outgoing ttrpc call (plugin → runtime) failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The peer answered with a non-OK status.
    #[error("runtime answered {0}")]
    Status(Status),
    /// The connection closed before a response arrived.
    #[error("connection closed before the response arrived")]
    Closed,
    /// No response arrived in time.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The response body could not be decoded.
    #[error("decode response: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The request could not be sent.
    #[error("send request: {0}")]
    Send(Box<Error>),
}

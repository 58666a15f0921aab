//! Errors of the client library: connecting to plexusd.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong before a request reaches plexusd.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The unix socket could not be connected (plexusd not running, wrong path, no permission).
    #[error("cannot connect to plexusd on {}: {source}", socket.display())]
    Connect {
        /// The socket path tried.
        socket: PathBuf,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
}

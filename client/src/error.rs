//! Errors of the client library: connecting to plexusd.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong before a request reaches plexusd.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The unix socket could not be connected (plexusd not running, wrong path, no permission).
    #[error("cannot connect to plexusd on {}: {}", socket.display(), cause(error))]
    Connect {
        /// The socket path tried.
        socket: PathBuf,
        /// The transport error.
        error: tonic::transport::Error,
    },
}

/// The transport error with its causes (tonic's own message is only "transport error").
fn cause(error: &tonic::transport::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

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

/// The transport error with its causes (tonic's own message is only "transport error"),
/// each cause once, and a hint for the usual reasons.
fn cause(error: &tonic::transport::Error) -> String {
    let mut text = error.to_string();
    let mut hint = "";
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        let part = e.to_string();
        // Some wrappers already print their source's text; say it once.
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            hint = match io.kind() {
                std::io::ErrorKind::NotFound => {
                    " (no socket there: is plexusd running, and is --socket its `socket` setting?)"
                }
                std::io::ErrorKind::PermissionDenied => {
                    " (run as root or as a uid listed in plexusd's `allowedUids`)"
                }
                std::io::ErrorKind::ConnectionRefused => {
                    " (a stale socket: plexusd is not running)"
                }
                _ => hint,
            };
        }
        source = e.source();
    }
    text.push_str(hint);
    text
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_missing_socket_is_said_once_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("plexus.sock");
        let err = crate::connect(&socket).await.unwrap_err().to_string();
        assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
        assert!(err.contains("is plexusd running"), "{err}");
    }
}

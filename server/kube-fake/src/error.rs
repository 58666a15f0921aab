//! The crate's error type: what went wrong while starting or controlling the fake server
//! (never an API error a client sees; those are `Status` objects, see `status`).

use std::path::PathBuf;

/// Errors of the fake API server's handle.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Generating the CA or the server certificate failed.
    #[error("generate the fake API server's {what} certificate")]
    GenerateCert {
        /// Which certificate ("CA" or "server").
        what: &'static str,
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
    /// Building the rustls server configuration failed.
    #[error("build the fake API server's TLS configuration")]
    Tls(#[source] rustls::Error),
    /// Binding the listener on 127.0.0.1 failed.
    #[error("bind the fake API server on {addr}")]
    Bind {
        /// The address that could not be bound.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing a kubeconfig, token or CA file failed.
    #[error("write {}", path.display())]
    WriteFile {
        /// The file that could not be written.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An object handed to a control method is not acceptable.
    #[error("invalid object for {resource}: {reason}")]
    InvalidObject {
        /// The resource (plural name).
        resource: &'static str,
        /// What was wrong and what is accepted.
        reason: String,
    },
    /// A control method's write was refused by the store (conflict, not found, ...).
    #[error("{resource} {namespace}/{name}: {reason}")]
    Store {
        /// The resource (plural name).
        resource: &'static str,
        /// The namespace.
        namespace: String,
        /// The name.
        name: String,
        /// The Status message the API would have answered.
        reason: String,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! The one error type of the integration harness. Variants are named after the operation
//! that failed and carry the path, command or pod a developer needs to find the cause.

use std::path::PathBuf;

/// Result with the harness [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while driving containerd, plexus or a pod.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done (`create`, `write`, `read`, ...).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A helper program could not be started.
    #[error("cannot start {program}")]
    Spawn {
        /// The program.
        program: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A helper program ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The tail of its standard error.
        stderr: String,
    },
    /// A required program is not installed.
    #[error("{program} not found (looked in {searched}); run `make setup` as root")]
    MissingProgram {
        /// The program.
        program: String,
        /// Where it was looked for.
        searched: String,
    },
    /// Connecting to a gRPC unix socket failed.
    #[error("connect to {socket}")]
    Connect {
        /// The socket path.
        socket: PathBuf,
        /// The cause.
        #[source]
        source: tonic::transport::Error,
    },
    /// A CRI call returned an error status.
    #[error("cri {call} failed: {}", source.message())]
    Cri {
        /// The RPC name.
        call: &'static str,
        /// The status returned by containerd.
        #[source]
        source: Box<tonic::Status>,
    },
    /// A call to plexusd's node API returned an error status.
    #[error("plexusd {call} failed: {}", source.message())]
    Node {
        /// The RPC name.
        call: &'static str,
        /// The status returned by plexusd.
        #[source]
        source: Box<tonic::Status>,
    },
    /// A wait for a condition ran out of time.
    #[error("timed out after {seconds:.1}s waiting for {what}")]
    Timeout {
        /// What was being waited for.
        what: String,
        /// How long was waited.
        seconds: f64,
    },
    /// A process exited while it was expected to keep running.
    #[error("{program} exited early ({status}); log: {log}")]
    Exited {
        /// The program.
        program: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Where its output went.
        log: PathBuf,
    },
    /// A response did not have the expected shape.
    #[error("unexpected {what}: {detail}")]
    Unexpected {
        /// What was being read.
        what: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// JSON could not be decoded.
    #[error("decode {what} as json")]
    Json {
        /// What was being decoded.
        what: &'static str,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// An [`Error::Io`] for `op` on `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { op, path, source }
    }

    /// An [`Error::Cri`] for `call`.
    pub fn cri(call: &'static str) -> impl FnOnce(tonic::Status) -> Self {
        move |source| Self::Cri {
            call,
            source: Box::new(source),
        }
    }

    /// An [`Error::Node`] for `call`.
    pub fn node(call: &'static str) -> impl FnOnce(tonic::Status) -> Self {
        move |source| Self::Node {
            call,
            source: Box::new(source),
        }
    }

    /// The CRI status message, if this is a CRI error (tests assert on what containerd said).
    pub fn cri_message(&self) -> Option<&str> {
        match self {
            Self::Cri { source, .. } => Some(source.message()),
            _ => None,
        }
    }
}

//! Client side of the plexus node API: a gRPC channel to plexusd over its unix socket.
//!
//! This crate forwards facts and decides nothing: callers (plexusctl, the plexus-cni shim,
//! plexus-nri) build requests from what they observed and print what plexusd answers. It does
//! not depend on the domain crates.

mod error;
pub mod output;

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

pub use error::{Error, Result};
pub use plexus_proto::v1;
pub use plexus_proto::v1::node_client::NodeClient;

/// The socket plexusd listens on unless configured otherwise.
pub const DEFAULT_SOCKET: &str = "/run/plexus/plexus.sock";

/// How long [`connect`] waits for the socket before giving up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Connects to plexusd's unix socket and returns a node API client.
///
/// The connection is made eagerly, so an absent daemon is reported here (as
/// [`Error::Connect`] naming the socket) rather than on the first call.
pub async fn connect(socket: impl AsRef<Path>) -> Result<NodeClient<Channel>> {
    let channel = channel(socket.as_ref()).await?;
    Ok(NodeClient::new(channel))
}

/// Connects to plexusd's unix socket and returns the raw channel (for health checks or
/// other services multiplexed on the same socket).
pub async fn channel(socket: &Path) -> Result<Channel> {
    let path: PathBuf = socket.to_path_buf();
    let connector = tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move {
            let stream = tokio::net::UnixStream::connect(path).await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    // The URI is required by the endpoint but never dialled: the connector ignores it.
    Endpoint::from_static("http://plexusd.invalid")
        .connect_timeout(CONNECT_TIMEOUT)
        .connect_with_connector(connector)
        .await
        .map_err(|error| Error::Connect {
            socket: socket.to_path_buf(),
            error,
        })
}

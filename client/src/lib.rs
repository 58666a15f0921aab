//! Client side of the plexus node API: a gRPC channel to plexusd over its unix socket.
//!
//! This crate forwards facts and decides nothing: callers (plexusctl, the plexus-cni shim,
//! plexus-nri) build requests from what they observed and print what plexusd answers. It does
//! not depend on the domain crates.

mod error;
pub mod node_status;
pub mod output;
pub mod sandbox;
pub mod shim;

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
    endpoint()
        .connect_timeout(CONNECT_TIMEOUT)
        .connect_with_connector(dialer(socket))
        .await
        .map_err(|error| Error::Connect {
            socket: socket.to_path_buf(),
            error,
        })
}

/// A channel that dials plexusd's unix socket on first use and again after it is lost,
/// for long-running callers (plexus-nri) that must start while plexusd is down: a call
/// made while plexusd is unreachable fails with UNAVAILABLE.
pub fn channel_lazy(socket: &Path) -> Channel {
    endpoint().connect_with_connector_lazy(dialer(socket))
}

/// The URI is required by tonic but never dialled: [`dialer`] connects to the socket.
fn endpoint() -> Endpoint {
    Endpoint::from_static("http://plexusd.invalid")
}

/// Connects to the unix socket at `socket`, whatever URI tonic asks for.
fn dialer(
    socket: &Path,
) -> impl tower::Service<
    Uri,
    Response = TokioIo<tokio::net::UnixStream>,
    Error = std::io::Error,
    Future = impl Future<Output = std::io::Result<TokioIo<tokio::net::UnixStream>>> + Send,
> + Clone
+ Send
+ 'static {
    let path: PathBuf = socket.to_path_buf();
    tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move {
            let stream = tokio::net::UnixStream::connect(path).await?;
            Ok(TokioIo::new(stream))
        }
    })
}

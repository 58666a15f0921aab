//! The gRPC channel to plexusd over its unix socket. Private stand-in until
//! `plexus-client` offers a shared `connect`; it must not grow beyond dialing.
//!
//! The channel is lazy: the plugin starts even while plexusd is down, each call dials
//! if needed, and a call made while plexusd is unreachable fails with UNAVAILABLE.

use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// A lazily connecting channel to the node API at `socket`.
pub fn connect_lazy(socket: PathBuf) -> Channel {
    // The URI is required by tonic but unused: the connector below dials the socket.
    Endpoint::from_static("http://plexusd.invalid").connect_with_connector_lazy(tower::service_fn(
        move |_: Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        },
    ))
}

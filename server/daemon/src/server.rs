//! The unix socket and the gRPC server on it: socket preparation (private directory, 0600
//! socket, stale socket removed, a live daemon detected), caller authorisation by peer
//! credentials — at accept ([`crate::listener`]) and again per RPC, for every service —
//! and the standard health and reflection services next to the node API.

use std::future::Future;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use plexus_proto::v1;
use tokio::net::UnixListener;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Status};

use crate::attacher::Attacher;
use crate::config::Connections;
use crate::error::{Error, Result};
use crate::listener::{InFlightLayer, Peer, incoming};
use crate::node::Node;
use crate::planner::Planner;
use crate::service::NodeService;

/// How long shutdown waits for connected clients before stopping anyway.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Who may call the node API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// Root (uid 0) is allowed (always true in production; tests turn it off to prove
    /// rejection without another user).
    pub allow_root: bool,
    /// Other allowed uids (`allowedUids`).
    pub allowed_uids: Vec<u32>,
}

impl Access {
    /// Root plus the given uids.
    pub fn root_and(allowed_uids: Vec<u32>) -> Self {
        Self {
            allow_root: true,
            allowed_uids,
        }
    }

    /// Checks a caller's uid (`None`: credentials unavailable).
    pub fn check(&self, uid: Option<u32>) -> Result<()> {
        match uid {
            None => Err(Error::NoPeerCredentials),
            Some(0) if self.allow_root => Ok(()),
            Some(uid) if self.allowed_uids.contains(&uid) => Ok(()),
            Some(uid) => Err(Error::PermissionDenied { uid }),
        }
    }

    /// The interceptor form of [`Access::check`], reading the connection's [`Peer`] (the
    /// uid the kernel recorded at `connect`); a request without one is refused.
    pub fn intercept(&self, request: Request<()>) -> Result<Request<()>, Status> {
        let uid = request.extensions().get::<Peer>().map(|peer| peer.uid);
        self.check(uid)?;
        Ok(request)
    }
}

/// A request check of `access`, as an interceptor closure for tonic services.
impl Access {
    /// [`Access::intercept`] as a cloneable closure.
    pub fn interceptor(
        &self,
    ) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone + use<> {
        let access = self.clone();
        move |req| access.intercept(req)
    }
}

/// `service` (health, reflection) under the same per-RPC caller check as the node API.
pub fn guarded<S>(
    service: S,
    access: &Access,
) -> InterceptedService<S, impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone + use<S>> {
    InterceptedService::new(service, access.interceptor())
}

/// A bound, prepared socket; the file is removed on drop.
#[derive(Debug)]
pub struct Socket {
    listener: Option<UnixListener>,
    path: PathBuf,
}

impl Socket {
    /// Binds for `access`: private (see [`Socket::bind`]) when only root may call; when
    /// non-root uids are allowed, the socket is made 0666 and a directory created here
    /// 0711 so they can reach it, and the peer-credential check alone decides.
    pub async fn bind_for(path: &Path, access: &Access) -> Result<Socket> {
        let shared = access.allowed_uids.iter().any(|uid| *uid != 0);
        Self::bind_mode(path, shared).await
    }

    /// Prepares the directory (created 0700 when missing), refuses to steal a socket a live
    /// daemon answers on, removes a stale one, binds and makes the socket 0600.
    pub async fn bind(path: &Path) -> Result<Socket> {
        Self::bind_mode(path, false).await
    }

    async fn bind_mode(path: &Path, shared: bool) -> Result<Socket> {
        let (dir_mode, socket_mode) = if shared {
            (0o711, 0o666)
        } else {
            (0o700, 0o600)
        };
        let listen = |error| Error::Listen {
            path: path.to_path_buf(),
            error,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(dir_mode)
                .create(dir)
                .map_err(listen)?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                if tokio::net::UnixStream::connect(path).await.is_ok() {
                    return Err(listen(std::io::Error::new(
                        std::io::ErrorKind::AddrInUse,
                        "another plexusd is serving on this socket",
                    )));
                }
                std::fs::remove_file(path).map_err(listen)?;
            }
            Ok(_) => {
                return Err(listen(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "the path exists and is not a socket",
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(listen(e)),
        }
        let listener = UnixListener::bind(path).map_err(listen)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(socket_mode))
            .map_err(listen)?;
        Ok(Socket {
            listener: Some(listener),
            path: path.to_path_buf(),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        if self.listener.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Serves the node API, health and reflection on `socket` until `shutdown` resolves. A
/// caller `access` refuses is closed at accept; every RPC of every service checks it again.
pub async fn serve<A: Attacher, P: Planner>(
    socket: Socket,
    node: Arc<Node<A, P>>,
    access: Access,
    connections: Connections,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    serve_service(
        socket,
        NodeService::new(node),
        access,
        connections,
        shutdown,
    )
    .await
}

/// [`serve`] of a prepared [`NodeService`] (Kubernetes mode: one that knows its
/// [`Cluster`](crate::kubernetes::Cluster)).
pub async fn serve_service<A: Attacher, P: Planner>(
    mut socket: Socket,
    service: NodeService<A, P>,
    access: Access,
    connections: Connections,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let listener = socket.listener.take().ok_or_else(|| Error::Listen {
        path: socket.path.clone(),
        error: std::io::Error::other("socket already served"),
    })?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("plexus.v1.Node", tonic_health::ServingStatus::Serving)
        .await;
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(v1::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Listen {
            path: socket.path.clone(),
            error: std::io::Error::other(e.to_string()),
        })?;
    let closing = Arc::clone(service.node());
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        closing.close_watchers();
        let _ = stopping.send(());
    };
    let node_service = v1::node_server::NodeServer::with_interceptor(service, access.interceptor());
    let server = tonic::transport::Server::builder()
        .layer(InFlightLayer)
        .add_service(guarded(health_service, &access))
        .add_service(guarded(reflection, &access))
        .add_service(node_service)
        .serve_with_incoming_shutdown(incoming(listener, access, connections), shutdown);
    // Graceful shutdown waits for clients to acknowledge it; a wedged client must not keep
    // plexusd alive, so after the grace period it stops anyway.
    let grace = async {
        if stopped.await.is_ok() {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let result = tokio::select! {
        served = server => served.map_err(|error| Error::Serve { error }),
        () = grace => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "clients did not close in time; stopping anyway");
            Ok(())
        }
    };
    // Put the listener slot back so Drop removes the file.
    socket.listener = None;
    let _ = std::fs::remove_file(&socket.path);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_listed_uids_pass_others_are_denied() {
        let access = Access::root_and(vec![1000]);
        assert!(access.check(Some(0)).is_ok());
        assert!(access.check(Some(1000)).is_ok());
        assert!(matches!(
            access.check(Some(1001)),
            Err(Error::PermissionDenied { uid: 1001 })
        ));
        assert!(matches!(access.check(None), Err(Error::NoPeerCredentials)));
        let no_root = Access {
            allow_root: false,
            allowed_uids: vec![],
        };
        assert!(no_root.check(Some(0)).is_err());
    }

    #[test]
    fn the_rpc_check_reads_the_connections_peer() {
        let access = Access::root_and(vec![1000]);
        let with = |uid| {
            let mut req = Request::new(());
            req.extensions_mut().insert(Peer::new(uid));
            req
        };
        assert!(access.intercept(with(1000)).is_ok());
        let denied = access.intercept(with(42)).unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        let unknown = access.intercept(Request::new(())).unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::Unauthenticated);
    }

    #[tokio::test]
    async fn health_is_under_the_caller_check() {
        use tower::ServiceExt;
        let (_, health) = tonic_health::server::health_reporter();
        let call = |uid: u32| {
            http::Request::builder()
                .method("POST")
                .uri("/grpc.health.v1.Health/Check")
                .header("content-type", "application/grpc")
                .extension(Peer::new(uid))
                .body(tonic::body::Body::empty())
                .unwrap()
        };
        let access = Access::root_and(vec![]);
        let answer = guarded(health, &access).oneshot(call(42)).await.unwrap();
        let status = tonic::Status::from_header_map(answer.headers()).expect("a grpc status");
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    }

    #[test]
    fn denial_is_permission_denied_status() {
        let status = Status::from(Access::root_and(vec![]).check(Some(42)).unwrap_err());
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert!(status.message().contains("uid 42"), "{}", status.message());
    }
}

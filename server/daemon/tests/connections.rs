//! The socket under hostile local callers (issue 9, defects 4 and 5), with the fake
//! attacher: a refused uid's connection is closed at accept (health and reflection
//! included); connections from an allowed non-root uid beyond `connections.max` are closed
//! at once while root is still served; a connection idle past `connections.idleTimeout` is
//! closed while an open `Watch` stream is not. Another uid is played by a thread that
//! changes only its own effective uid before `connect` (the kernel records the peer's
//! credentials at `connect`), so these tests need root.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use plexus_client::v1;
use plexus_netlink::test_util::require_privileged;
use plexus_server::config::Connections;
use plexus_server::node::{Limits, Node};
use plexus_server::server::{Access, Socket, serve};
use plexus_server::test_util::{FakeAttacher, FakePlanner};
use tokio::sync::oneshot;

/// The uid of `nobody`, never allowed unless a test says so.
const NOBODY: u32 = 65534;

/// Upper bound on waiting for something that should happen at once; only reached when the
/// behaviour under test is broken.
const HANG_GUARD: Duration = Duration::from_secs(20);

struct Daemon {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<plexus_server::Result<()>>>,
}

impl Daemon {
    async fn start(access: Access, connections: Connections) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        // Other uids must be able to reach the socket for the kernel to hand their
        // connection to plexusd at all.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let socket = dir.path().join("run").join("plexus.sock");
        let node = Node::new(
            Arc::new(FakeAttacher::new()),
            Arc::new(FakePlanner),
            Limits {
                max_parallel: 4,
                max_queued: 16,
                setup_budget: None,
            },
        );
        let bound = Socket::bind_for(&socket, &access).await.unwrap();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(serve(bound, node, access, connections, async {
            let _ = stopped.await;
        }));
        Daemon {
            _dir: dir,
            socket,
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

/// Connects to `socket` as effective uid `uid`: a fresh thread sets only its own
/// credentials with the raw syscall (glibc's `seteuid` would change every thread).
fn connect_as(uid: u32, socket: &Path) -> UnixStream {
    let socket = socket.to_path_buf();
    std::thread::spawn(move || {
        let keep = -1 as libc::c_long;
        // SAFETY: setresuid(2) with plain integer arguments; the raw syscall changes only
        // the calling thread's credentials, and this thread ends right after `connect`.
        let rc = unsafe { libc::syscall(libc::SYS_setresuid, keep, libc::c_long::from(uid), keep) };
        assert_eq!(rc, 0, "setresuid: {}", std::io::Error::last_os_error());
        UnixStream::connect(&socket).unwrap()
    })
    .join()
    .unwrap()
}

/// Reads until the server closes the connection; `Err` when it is still open after the
/// guard (the check under test did not close it).
async fn closed_by_server(mut stream: UnixStream) -> Result<(), String> {
    tokio::task::spawn_blocking(move || {
        stream.set_read_timeout(Some(HANG_GUARD)).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
                Err(e) => return Err(format!("still open: {e}")),
            }
        }
    })
    .await
    .unwrap()
}

/// An HTTP/2 client preface and an empty SETTINGS frame (RFC 9113 §3.4, §6.5).
fn h2_preface() -> Vec<u8> {
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    bytes
}

/// A gRPC channel over an already connected stream (made by another uid).
async fn channel_over(
    stream: UnixStream,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    stream.set_nonblocking(true).unwrap();
    let slot = std::sync::Mutex::new(Some(stream));
    tonic::transport::Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_| {
            let stream = slot.lock().unwrap().take();
            async move {
                let stream = stream.ok_or_else(|| std::io::Error::other("used once"))?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::from_std(stream)?,
                ))
            }
        }))
        .await
}

async fn health(channel: tonic::transport::Channel) -> Result<i32, tonic::Status> {
    tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: "plexus.v1.Node".into(),
        })
        .await
        .map(|r| r.into_inner().status)
}

async fn reflection(channel: tonic::transport::Channel) -> Result<(), tonic::Status> {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest,
    };
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await?
        .into_inner();
    answers.message().await?;
    Ok(())
}

fn long_idle(max: usize) -> Connections {
    Connections {
        max,
        idle_timeout: Duration::from_secs(3600),
    }
}

#[tokio::test]
async fn a_refused_uid_is_closed_at_accept_on_every_service() {
    if !require_privileged() {
        return;
    }
    // Uid 1000 is allowed, so the socket is open to everyone and only the check decides.
    let d = Daemon::start(Access::root_and(vec![1000]), long_idle(256)).await;

    // A raw connection is closed before it sends anything.
    closed_by_server(connect_as(NOBODY, &d.socket))
        .await
        .unwrap();
    // Even after it sent a valid HTTP/2 preface.
    let mut stream = connect_as(NOBODY, &d.socket);
    let _ = stream.write_all(&h2_preface());
    closed_by_server(stream).await.unwrap();

    // Health and reflection, which used to skip the check, answer nothing.
    if let Ok(channel) = channel_over(connect_as(NOBODY, &d.socket)).await {
        let answer = health(channel).await;
        assert!(answer.is_err(), "health answered a refused uid: {answer:?}");
    }
    if let Ok(channel) = channel_over(connect_as(NOBODY, &d.socket)).await {
        let answer = reflection(channel).await;
        assert!(
            answer.is_err(),
            "reflection answered a refused uid: {answer:?}"
        );
    }
    // Root is served on all three.
    let channel = plexus_client::channel(&d.socket).await.unwrap();
    assert_eq!(health(channel.clone()).await.unwrap(), 1);
    reflection(channel.clone()).await.unwrap();
    v1::node_client::NodeClient::new(channel)
        .list_attachments(v1::ListAttachmentsRequest { target: None })
        .await
        .unwrap();
    d.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_and_root_is_still_served() {
    if !require_privileged() {
        return;
    }
    const MAX: usize = 4;
    let d = Daemon::start(Access::root_and(vec![NOBODY]), long_idle(MAX)).await;
    // MAX connections of the allowed uid are served ...
    let mut held = Vec::new();
    for _ in 0..MAX {
        let channel = channel_over(connect_as(NOBODY, &d.socket)).await.unwrap();
        assert_eq!(health(channel.clone()).await.unwrap(), 1);
        held.push(channel);
    }
    // ... every further one is closed at once (without the cap they would all stay open,
    // each holding a descriptor) ...
    for _ in 0..3 * MAX {
        closed_by_server(connect_as(NOBODY, &d.socket))
            .await
            .unwrap();
    }
    // ... and root's calls still work, on new connections too.
    for _ in 0..3 {
        let mut root = plexus_client::connect(&d.socket).await.unwrap();
        root.list_attachments(v1::ListAttachmentsRequest { target: None })
            .await
            .unwrap();
    }
    // The connections within the cap stay served.
    for channel in held {
        assert_eq!(health(channel).await.unwrap(), 1);
    }
    d.stop().await;
}

#[tokio::test]
async fn an_idle_connection_is_closed_and_an_open_watch_is_not() {
    // Root only: no other uid is involved.
    if !require_privileged() {
        return;
    }
    let d = Daemon::start(
        Access::root_and(vec![]),
        Connections {
            max: 16,
            idle_timeout: Duration::from_millis(300),
        },
    )
    .await;
    // A Watch stream, open before the idle connections below.
    let mut watcher = plexus_client::connect(&d.socket).await.unwrap();
    let mut events = watcher
        .watch(v1::WatchRequest { target: None })
        .await
        .unwrap()
        .into_inner();

    // A connection that never sends a byte, and one that speaks HTTP/2 and then goes
    // quiet: both are closed by the server once idle.
    let silent = UnixStream::connect(&d.socket).unwrap();
    let mut quiet = UnixStream::connect(&d.socket).unwrap();
    quiet.write_all(&h2_preface()).unwrap();
    closed_by_server(silent).await.unwrap();
    closed_by_server(quiet).await.unwrap();

    // The watcher has been quiet at least as long, but its stream is open: it still gets
    // the next event.
    let mut client = plexus_client::connect(&d.socket).await.unwrap();
    client
        .setup_pod(v1::SetupPodRequest {
            pod: Some(v1::PodRef {
                namespace: "iot".into(),
                name: "w".into(),
                uid: "uid-w".into(),
            }),
            sandbox_id: "sb-w".into(),
            netns_path: "/run/netns/sb-w".into(),
            annotations: [("k8s.v1.cni.cncf.io/networks".to_owned(), "lan".to_owned())].into(),
            labels: Default::default(),
            may_finish_later: false,
        })
        .await
        .unwrap();
    let event = tokio::time::timeout(HANG_GUARD, events.message())
        .await
        .expect("the watch got no event")
        .expect("the watch stream was closed")
        .expect("the watch stream ended");
    assert_eq!(event.attachment.expect("an attachment").sandbox_id, "sb-w");
    drop(events);
    d.stop().await;
}

//! The accept side of the socket, which keeps local callers from exhausting plexusd's file
//! descriptors: each connection's peer credentials (`SO_PEERCRED`, unix(7)) are checked at
//! accept and a caller [`Access`] refuses is closed at once, before any byte is read; at
//! most `connections.max` connections from non-root callers are open at a time (root's —
//! containerd's NRI hook, the CNI shim — are always accepted); a connection with no request
//! in flight and no bytes either way for `connections.idleTimeout` is closed.
//!
//! Accepted connections carry a [`Peer`] as their tonic connect info: the uid read at
//! accept (the per-RPC check reads it again) and the connection's activity, which
//! [`InFlightLayer`] keeps current while a request (a `Watch` stream too) is open.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::Connected;

use crate::config::Connections;
use crate::server::Access;

/// Pause after a failed `accept` (e.g. `EMFILE`) before trying again, so a full descriptor
/// table does not turn the accept loop into a busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// At most one log line about refused connections per this period.
const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(10);

/// Who is on the other end of a connection, and how busy the connection is.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The caller's uid as the kernel recorded it at `connect`.
    pub uid: u32,
    activity: Arc<Activity>,
}

impl Peer {
    /// A peer with a fresh activity record (tests of the per-RPC check).
    pub fn new(uid: u32) -> Peer {
        Peer {
            uid,
            activity: Arc::new(Activity::new()),
        }
    }
}

/// Last traffic and open requests of one connection.
#[derive(Debug)]
struct Activity {
    base: Instant,
    /// Milliseconds after `base` of the last byte read or written or request finished.
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Marks one request open on its connection until dropped (with the response body).
#[derive(Debug)]
struct Open(Arc<Activity>);

impl Open {
    fn new(activity: &Arc<Activity>) -> Open {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.touch();
        Open(Arc::clone(activity))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An accepted, admitted connection: closes itself (end of input to the HTTP/2 server)
/// once idle for longer than the limit.
#[derive(Debug)]
pub struct Conn {
    stream: UnixStream,
    peer: Peer,
    idle_timeout: Duration,
    timer: Pin<Box<Sleep>>,
    closed: bool,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Conn {
    fn new(
        stream: UnixStream,
        uid: u32,
        idle_timeout: Duration,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Conn {
        Conn {
            stream,
            peer: Peer::new(uid),
            idle_timeout,
            timer: Box::pin(tokio::time::sleep(idle_timeout)),
            closed: false,
            _permit: permit,
        }
    }

    /// True once the idle limit has passed with nothing open; otherwise re-arms the timer
    /// (registering the waker) for the next moment it could pass.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> bool {
        let activity = &self.peer.activity;
        while self.timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            let due = activity.last() + self.idle_timeout;
            if activity.in_flight.load(Ordering::Relaxed) > 0 {
                self.timer.as_mut().reset(now + self.idle_timeout);
            } else if now >= due {
                return true;
            } else {
                self.timer.as_mut().reset(due);
            }
        }
        false
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.closed {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.peer.activity.touch();
                }
                Poll::Ready(result)
            }
            Poll::Pending if self.poll_idle(cx) => {
                tracing::debug!(uid = self.peer.uid, idle = ?self.idle_timeout, "closing an idle connection");
                self.closed = true;
                // End of input: the HTTP/2 server ends the connection and drops it.
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.peer.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Connected for Conn {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

/// Counts refused connections and logs them at most once per [`REFUSAL_LOG_PERIOD`], so a
/// flood of refused connects cannot flood the log.
#[derive(Debug, Default)]
struct Refusals {
    logged_at: Option<Instant>,
    unlogged: u64,
}

impl Refusals {
    fn note(&mut self, uid: Option<u32>, why: &str) {
        self.unlogged += 1;
        let now = Instant::now();
        if self
            .logged_at
            .is_some_and(|at| now.duration_since(at) < REFUSAL_LOG_PERIOD)
        {
            return;
        }
        tracing::warn!(uid = ?uid, reason = why, refused = self.unlogged,
            "closed connections at accept (count since the last such line)");
        self.logged_at = Some(now);
        self.unlogged = 0;
    }
}

struct Acceptor {
    listener: UnixListener,
    access: Access,
    limits: Connections,
    permits: Arc<Semaphore>,
    refusals: Refusals,
}

impl Acceptor {
    async fn next(&mut self) -> Conn {
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(error = %err, "accepting a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let uid = match stream.peer_cred() {
                Ok(cred) => cred.uid(),
                Err(_) => {
                    self.refusals.note(None, "peer credentials unreadable");
                    continue;
                }
            };
            if let Err(err) = self.access.check(Some(uid)) {
                self.refusals.note(Some(uid), &err.to_string());
                continue;
            }
            let permit = if uid == 0 {
                None
            } else {
                match Arc::clone(&self.permits).try_acquire_owned() {
                    Ok(permit) => Some(permit),
                    Err(_) => {
                        self.refusals
                            .note(Some(uid), "connections.max non-root connections are open");
                        continue;
                    }
                }
            };
            return Conn::new(stream, uid, self.limits.idle_timeout, permit);
        }
    }
}

/// The stream of admitted connections on `listener`: refused ones are closed (dropped) at
/// accept and never appear.
pub fn incoming(
    listener: UnixListener,
    access: Access,
    limits: Connections,
) -> impl Stream<Item = std::io::Result<Conn>> + Send {
    let acceptor = Acceptor {
        listener,
        access,
        permits: Arc::new(Semaphore::new(limits.max)),
        limits,
        refusals: Refusals::default(),
    };
    futures::stream::unfold(acceptor, |mut acceptor| async move {
        let conn = acceptor.next().await;
        Some((Ok(conn), acceptor))
    })
}

/// A tower layer that keeps each request (until its response body ends) counted as open on
/// its connection, so the idle limit never closes a connection with a call or a `Watch`
/// stream in progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct InFlightLayer;

impl<S> tower::Layer<S> for InFlightLayer {
    type Service = InFlight<S>;

    fn layer(&self, inner: S) -> InFlight<S> {
        InFlight { inner }
    }
}

/// The service of [`InFlightLayer`].
#[derive(Debug, Clone)]
pub struct InFlight<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B> tower::Service<http::Request<B>> for InFlight<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let open = request
            .extensions()
            .get::<Peer>()
            .map(|peer| Open::new(&peer.activity));
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(match open {
                Some(open) => response.map(|body| {
                    tonic::body::Body::new(Tracked {
                        inner: body,
                        _open: open,
                    })
                }),
                None => response,
            })
        })
    }
}

/// A response body that keeps its request counted as open until it is dropped.
struct Tracked {
    inner: tonic::body::Body,
    _open: Open,
}

impl http_body::Body for Tracked {
    type Data = <tonic::body::Body as http_body::Body>::Data;
    type Error = <tonic::body::Body as http_body::Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

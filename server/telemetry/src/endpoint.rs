//! The HTTP endpoint of plexusd for Prometheus and the kubelet, on hyper (HTTP/1.1 only):
//!
//! | path       | answer                                                              |
//! |------------|---------------------------------------------------------------------|
//! | `/metrics` | the registry as OpenMetrics text                                    |
//! | `/healthz` | `200 ok` while the process serves HTTP at all (liveness)            |
//! | `/readyz`  | `200 ready` once [`Readiness::set_ready`] was called, else `503`    |
//!
//! `GET` and `HEAD` only (`405` with `Allow` otherwise), any other path `404`; malformed
//! requests get hyper's `400`, oversized heads `431`. Bounded: request head at most
//! [`MAX_HEAD`] bytes, [`HEADER_TIMEOUT`] to send it, [`CONNECTION_TIMEOUT`] per connection,
//! one request per connection and at most [`MAX_CONNECTIONS`] connections at once (further
//! ones wait in the kernel's accept queue). No request body is ever read.
//!
//! What "ready" means is the caller's: plexusd sets it once recovery finished and its
//! socket listens. In Kubernetes mode it does not wait for the NAD cache: a NAD the cache
//! has not seen yet is fetched from the API server on lookup.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::metrics::{render, render_prometheus};

/// Largest request head accepted (hyper's smallest read buffer); a probe or scrape request
/// is a few hundred bytes.
pub const MAX_HEAD: usize = 8 * 1024;
/// Time a client has to send its request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time one connection may take in all.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 32;
/// Content type of the OpenMetrics text that `prometheus-client` encodes.
pub const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the Prometheus text format, for scrapers that do not ask for OpenMetrics.
pub const CONTENT_TYPE_PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
const CONTENT_TYPE_TEXT: &str = "text/plain; charset=utf-8";

/// Whether the process is ready for work, as `/readyz` reports it. Clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Not ready yet.
    pub fn new() -> Readiness {
        Readiness::default()
    }

    /// From now on `/readyz` answers `200`.
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether [`Readiness::set_ready`] was called.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The running endpoint; dropping it stops serving.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// The bound address (useful when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` now (so a taken port fails at start) and serves `registry` and
/// `readiness` on a spawned task.
pub async fn serve_metrics(
    addr: SocketAddr,
    registry: Arc<Registry>,
    readiness: Readiness,
) -> Result<MetricsServer> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::BindMetrics { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| Error::BindMetrics { addr, source })?;
    let task = tokio::spawn(accept_loop(listener, registry, readiness));
    tracing::info!(%local_addr, "serving /metrics, /healthz and /readyz");
    Ok(MetricsServer { local_addr, task })
}

async fn accept_loop(listener: TcpListener, registry: Arc<Registry>, readiness: Readiness) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _peer)) => {
                let (registry, readiness) = (Arc::clone(&registry), readiness.clone());
                tokio::spawn(async move {
                    let _slot = slot;
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let openmetrics = wants_openmetrics(req.headers());
                        let answer = route(
                            req.method(),
                            req.uri().path(),
                            openmetrics,
                            &registry,
                            &readiness,
                        );
                        async move { Ok::<_, Infallible>(answer) }
                    });
                    let mut builder = http1::Builder::new();
                    builder
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT)
                        .max_buf_size(MAX_HEAD)
                        .keep_alive(false);
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    // A slow or broken client only loses its own answer.
                    let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
                });
            }
            Err(error) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(%error, "metrics endpoint failed to accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Whether the scraper asked for OpenMetrics (`Accept: application/openmetrics-text`, as
/// Prometheus sends first); everyone else gets the Prometheus text format 0.0.4.
fn wants_openmetrics(headers: &hyper::HeaderMap) -> bool {
    headers
        .get_all(hyper::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
}

/// The answer to `method path` (pure, apart from rendering the registry).
fn route(
    method: &Method,
    path: &str,
    openmetrics: bool,
    registry: &Registry,
    readiness: &Readiness,
) -> Response<Full<Bytes>> {
    let known = matches!(path, "/metrics" | "/healthz" | "/readyz");
    if !known {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if method != Method::GET && method != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path {
        "/metrics" => {
            let (body, kind) = match openmetrics {
                true => (render(registry), CONTENT_TYPE_OPENMETRICS),
                false => (render_prometheus(registry), CONTENT_TYPE_PROMETHEUS),
            };
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut()
                .insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static(kind));
            r
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        _ if readiness.is_ready() => text(StatusCode::OK, "ready\n"),
        _ => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: recovery has not finished or the node socket does not listen yet\n",
        ),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(CONTENT_TYPE_TEXT),
    );
    r
}

#[cfg(test)]
mod tests;

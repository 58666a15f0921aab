//! A deliberately tiny HTTP/1.1 server for Prometheus scrapes: `GET /metrics` answers the
//! registry in text exposition format, any other path 404, any other method on `/metrics` 405.
//! One request per connection (`Connection: close`), bounded request head, bounded time and a
//! bounded number of connections; no keep-alive, no bodies, no framework.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::metrics::render;

/// Largest request head accepted; a scrape request is a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;
/// Time a client has to send its request head and read the answer.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; further ones wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 32;
/// Content type of the OpenMetrics text that `prometheus-client` encodes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The running metrics endpoint; dropping it stops serving.
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

/// Binds `addr` now (so a taken port fails at start) and serves `registry` on a spawned task.
pub async fn serve_metrics(addr: SocketAddr, registry: Arc<Registry>) -> Result<MetricsServer> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::BindMetrics { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| Error::BindMetrics { addr, source })?;
    let task = tokio::spawn(accept_loop(listener, registry));
    tracing::info!(%local_addr, "serving metrics");
    Ok(MetricsServer { local_addr, task })
}

async fn accept_loop(listener: TcpListener, registry: Arc<Registry>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _peer)) => {
                let registry = Arc::clone(&registry);
                tokio::spawn(async move {
                    let _slot = slot;
                    // A slow or broken client only loses its own answer.
                    let _ =
                        tokio::time::timeout(CONNECTION_TIMEOUT, serve(stream, &registry)).await;
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

async fn serve(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    let head = read_head(&mut stream).await?;
    let response = match head.as_deref().map(parse_request_line) {
        Some(Some((method, path))) => respond(method, path, registry),
        _ => plain(400, "Bad Request", "bad request\n"),
    };
    stream.write_all(&response).await?;
    stream.shutdown().await
}

/// Reads up to the blank line ending the head; `None` if it never comes within bounds.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0_u8; 1024];
    loop {
        if let Some(end) = find_end_of_head(&head) {
            head.truncate(end);
            return Ok(String::from_utf8(head).ok());
        }
        if head.len() >= MAX_HEAD {
            return Ok(None);
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&chunk[..read]);
    }
}

fn find_end_of_head(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|window| window == b"\r\n\r\n")
}

/// `("GET", "/metrics")` from `GET /metrics?x HTTP/1.1`.
fn parse_request_line(head: &str) -> Option<(&str, &str)> {
    let line = head.lines().next()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !version.starts_with("HTTP/1.") {
        return None;
    }
    let path = target.split_once('?').map_or(target, |(path, _query)| path);
    Some((method, path))
}

fn respond(method: &str, path: &str, registry: &Registry) -> Vec<u8> {
    match (method, path) {
        ("GET", "/metrics") => response(200, "OK", CONTENT_TYPE, &[], &render(registry)),
        (_, "/metrics") => response(
            405,
            "Method Not Allowed",
            "text/plain; charset=utf-8",
            &[("Allow", "GET")],
            "method not allowed\n",
        ),
        _ => plain(404, "Not Found", "not found\n"),
    }
}

fn plain(status: u16, reason: &str, body: &str) -> Vec<u8> {
    response(status, reason, "text/plain; charset=utf-8", &[], body)
}

fn response(
    status: u16,
    reason: &str,
    content_type: &str,
    extra: &[(&str, &str)],
    body: &str,
) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

#[cfg(test)]
mod tests;

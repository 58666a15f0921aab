//! Real TCP on 127.0.0.1:0 against the endpoint, with raw HTTP/1.1 bytes.

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::*;
use crate::metrics::{Driver, Metrics, Outcome, Path};

async fn start() -> (Metrics, Readiness, MetricsServer) {
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let readiness = Readiness::new();
    let server = serve_metrics(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(registry),
        readiness.clone(),
    )
    .await
    .unwrap();
    (metrics, readiness, server)
}

/// One answer: status code, headers (names lower-cased), body.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` as is and reads until the server closes the connection.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {raw:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

async fn get(addr: SocketAddr, path: &str) -> Answer {
    exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .await
}

#[tokio::test]
async fn get_metrics_serves_the_exposition_text() {
    let (metrics, _ready, server) = start().await;
    metrics.observe_setup(
        Path::Nri,
        Driver::Exec,
        Outcome::Ok,
        Duration::from_millis(12),
    );
    // A scraper that asks for OpenMetrics (as Prometheus does first) gets it...
    let a = exchange(
        server.local_addr(),
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n\r\n",
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("content-type"), Some(CONTENT_TYPE_OPENMETRICS));
    assert_eq!(
        a.header("content-length"),
        Some(a.body.len().to_string().as_str())
    );
    // ... anyone else the Prometheus text format.
    let plain = get(server.local_addr(), "/metrics").await;
    assert_eq!(plain.header("content-type"), Some(CONTENT_TYPE_PROMETHEUS));
    assert!(!plain.body.contains("# EOF"), "{}", plain.body);
    assert!(
        a.body.contains(
            "plexus_setup_duration_seconds_count{path=\"nri\",driver=\"exec\",outcome=\"ok\"} 1"
        ),
        "{}",
        a.body
    );
    assert!(a.body.contains("# TYPE plexus_requests_in_flight gauge"));
    assert!(a.body.ends_with("# EOF\n"));
}

#[tokio::test]
async fn query_strings_are_ignored_and_each_scrape_is_fresh() {
    let (metrics, _ready, server) = start().await;
    let busy = metrics.in_flight();
    let first = exchange(server.local_addr(), b"GET /metrics?x=1 HTTP/1.0\r\n\r\n").await;
    assert!(
        first.body.contains("plexus_requests_in_flight 1\n"),
        "{first:?}"
    );
    drop(busy);
    let second = get(server.local_addr(), "/metrics").await;
    assert!(
        second.body.contains("plexus_requests_in_flight 0\n"),
        "{second:?}"
    );
}

#[tokio::test]
async fn healthz_answers_at_once_and_readyz_only_once_ready() {
    let (_metrics, ready, server) = start().await;
    let addr = server.local_addr();
    let health = get(addr, "/healthz").await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    let not_yet = get(addr, "/readyz").await;
    assert_eq!(not_yet.status, 503, "{not_yet:?}");
    assert!(not_yet.body.starts_with("not ready: "), "{not_yet:?}");
    ready.set_ready();
    let now = get(addr, "/readyz").await;
    assert_eq!((now.status, now.body.as_str()), (200, "ready\n"));
    let head = exchange(addr, b"HEAD /readyz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!((head.status, head.body.as_str()), (200, ""));
}

#[tokio::test]
async fn other_paths_are_not_found_and_other_methods_not_allowed() {
    let (_metrics, _ready, server) = start().await;
    let addr = server.local_addr();
    for path in ["/", "/metricsx", "/healthz/", "/readyz/x"] {
        assert_eq!(get(addr, path).await.status, 404, "{path}");
    }
    let a = exchange(
        addr,
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(a.status, 405, "{a:?}");
    assert_eq!(a.header("allow"), Some("GET, HEAD"));
    let a = exchange(addr, b"DELETE /readyz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(a.status, 405, "{a:?}");
}

#[tokio::test]
async fn garbage_is_a_bad_request_and_an_oversized_head_is_refused() {
    let (_metrics, _ready, server) = start().await;
    let addr = server.local_addr();
    let a = exchange(addr, b"hello\r\n\r\n").await;
    assert_eq!(a.status, 400, "{a:?}");
    let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    huge.resize(MAX_HEAD * 2, b'a');
    huge.extend_from_slice(b"\r\n\r\n");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The server may stop reading (and close) before all of it is written.
    let _ = stream.write_all(&huge).await;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let raw = String::from_utf8_lossy(&raw);
    assert!(
        raw.starts_with("HTTP/1.1 431 ") || raw.is_empty(),
        "an oversized head is refused, not served: {raw:?}"
    );
    assert!(!raw.contains("# EOF"), "{raw}");
}

#[tokio::test]
async fn a_client_that_never_finishes_its_head_is_cut_off() {
    let (_metrics, _ready, server) = start().await;
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\n")
        .await
        .unwrap();
    // The server closes the connection by itself (header timeout); a generous bound.
    let mut raw = Vec::new();
    tokio::time::timeout(
        HEADER_TIMEOUT + CONNECTION_TIMEOUT,
        stream.read_to_end(&mut raw),
    )
    .await
    .expect("the server kept a half-sent request open")
    .unwrap();
    assert!(!String::from_utf8_lossy(&raw).contains("# EOF"));
}

#[tokio::test]
async fn a_taken_port_fails_at_bind_and_dropping_stops_serving() {
    let (_metrics, _ready, server) = start().await;
    let addr = server.local_addr();
    let err = serve_metrics(addr, Arc::new(Registry::default()), Readiness::new())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("binding the metrics endpoint on {addr}")),
        "{err}"
    );
    drop(server);
    // The listener closes once the aborted task is dropped; poll with a generous bound.
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < until,
            "endpoint still accepting after drop"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn routing_is_decided_by_method_and_path() {
    let registry = Registry::default();
    let ready = Readiness::new();
    let r = |m: Method, p: &str| route(&m, p, true, &registry, &ready).status().as_u16();
    assert_eq!(r(Method::GET, "/metrics"), 200);
    assert_eq!(r(Method::HEAD, "/healthz"), 200);
    assert_eq!(r(Method::GET, "/readyz"), 503);
    assert_eq!(r(Method::PUT, "/healthz"), 405);
    assert_eq!(r(Method::PUT, "/nope"), 404);
    ready.set_ready();
    assert_eq!(r(Method::GET, "/readyz"), 200);
}

//! Real TCP on 127.0.0.1:0 against the metrics endpoint.

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;
use crate::metrics::{Driver, Metrics, Outcome, Path};

async fn start() -> (Metrics, MetricsServer) {
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let server = serve_metrics("127.0.0.1:0".parse().unwrap(), Arc::new(registry))
        .await
        .unwrap();
    (metrics, server)
}

/// Sends `request` as is and returns the whole answer (the server closes the connection).
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

fn split(answer: &str) -> (&str, &str) {
    answer.split_once("\r\n\r\n").expect("a head and a body")
}

#[tokio::test]
async fn get_metrics_serves_the_exposition_text() {
    let (metrics, server) = start().await;
    metrics.observe_setup(
        Path::Nri,
        Driver::Exec,
        Outcome::Ok,
        Duration::from_millis(12),
    );
    let answer = exchange(
        server.local_addr(),
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
    )
    .await;
    let (head, body) = split(&answer);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains(&format!("Content-Type: {CONTENT_TYPE}")),
        "{head}"
    );
    assert!(
        head.contains(&format!("Content-Length: {}", body.len())),
        "{head}"
    );
    assert!(
        body.contains(
            "plexus_setup_duration_seconds_count{path=\"nri\",driver=\"exec\",outcome=\"ok\"} 1"
        ),
        "{body}"
    );
    assert!(
        body.contains("# TYPE plexus_requests_in_flight gauge"),
        "{body}"
    );
    assert!(body.ends_with("# EOF\n"));
}

#[tokio::test]
async fn query_strings_are_ignored_and_each_scrape_is_fresh() {
    let (metrics, server) = start().await;
    let _busy = metrics.in_flight();
    let first = exchange(server.local_addr(), b"GET /metrics?x=1 HTTP/1.0\r\n\r\n").await;
    assert!(
        split(&first).1.contains("plexus_requests_in_flight 1\n"),
        "{first}"
    );
    drop(_busy);
    let second = exchange(server.local_addr(), b"GET /metrics HTTP/1.1\r\n\r\n").await;
    assert!(
        split(&second).1.contains("plexus_requests_in_flight 0\n"),
        "{second}"
    );
}

#[tokio::test]
async fn other_paths_are_not_found_and_other_methods_not_allowed() {
    let (_metrics, server) = start().await;
    let addr = server.local_addr();
    let answer = exchange(addr, b"GET / HTTP/1.1\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{answer}");
    let answer = exchange(addr, b"GET /metricsx HTTP/1.1\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{answer}");
    let answer = exchange(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
    assert!(
        answer.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{answer}"
    );
    assert!(answer.contains("Allow: GET\r\n"), "{answer}");
}

#[tokio::test]
async fn garbage_and_oversized_heads_get_400() {
    let (_metrics, server) = start().await;
    let addr = server.local_addr();
    let answer = exchange(addr, b"hello\r\n\r\n").await;
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    huge.resize(MAX_HEAD, b'a');
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&huge).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_taken_port_fails_at_bind_and_dropping_stops_serving() {
    let (_metrics, server) = start().await;
    let addr = server.local_addr();
    let err = serve_metrics(addr, Arc::new(Registry::default()))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("binding the metrics endpoint on {addr}")),
        "{err}"
    );
    drop(server);
    tokio::task::yield_now().await;
    // The listener is closed once the aborted task is dropped; retry briefly for the runtime.
    let mut refused = false;
    for _ in 0..50 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "metrics endpoint still accepting after drop");
}

#[test]
fn request_lines_parse_strictly() {
    assert_eq!(
        parse_request_line("GET /metrics HTTP/1.1\r\nHost: a"),
        Some(("GET", "/metrics"))
    );
    assert_eq!(
        parse_request_line("GET /metrics?a=b HTTP/1.0"),
        Some(("GET", "/metrics"))
    );
    assert_eq!(parse_request_line("GET /metrics"), None);
    assert_eq!(parse_request_line("GET /metrics HTTP/2 extra"), None);
    assert_eq!(parse_request_line("GET /metrics SPDY/3"), None);
}

//! plexusd's process lifecycle without root: it refuses a bad config naming the key, serves
//! on its socket, refuses to steal the socket from a live plexusd, and on SIGTERM shuts down
//! cleanly, removing its socket. With a metrics address it serves /metrics, /healthz and
//! /readyz, ready only once its node socket answers.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn write_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let config = dir.join("plexusd.yaml");
    std::fs::write(
        &config,
        format!(
            "socket: {}\nstateDir: state\ncniCacheDir: cache\nipamDataDir: leases\n\
             nadSource: {{directory: networks.d}}\ntelemetry: {{logLevel: warn}}\n{extra}",
            dir.join("run/plexus.sock").display()
        ),
    )
    .unwrap();
    config
}

#[test]
fn bad_config_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "concurrency: {maxParallel: 0}\n");
    let out = Command::new(env!("CARGO_BIN_EXE_plexusd"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("concurrency.maxParallel"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_refuses_a_second_daemon_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let socket = dir.path().join("run/plexus.sock");
    let mut first = Command::new(env!("CARGO_BIN_EXE_plexusd"))
        .arg("--config")
        .arg(&config)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    let mut client = loop {
        if let Ok(c) = plexus_client::connect(&socket).await {
            break c;
        }
        assert!(first.try_wait().unwrap().is_none(), "plexusd exited");
        assert!(Instant::now() < until, "plexusd did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let list = client
        .list_attachments(plexus_client::v1::ListAttachmentsRequest { target: None })
        .await
        .unwrap()
        .into_inner();
    assert!(list.attachments.is_empty());

    let second = Command::new(env!("CARGO_BIN_EXE_plexusd"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("another plexusd"), "{err}");
    assert!(socket.exists(), "the live daemon's socket is untouched");

    drop(client);
    // A wedged client: connected, then its runtime never runs again (it cannot acknowledge
    // the graceful shutdown). plexusd must stop anyway after its grace period.
    // It stays wedged until plexusd has exited, so a daemon that waited for it would never
    // stop and the bound below would fail.
    let (connected, wedged) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let wedged_socket = socket.clone();
    let holder = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _client = rt.block_on(plexus_client::connect(&wedged_socket)).unwrap();
        connected.send(()).unwrap();
        let _ = released.recv();
    });
    wedged.recv().unwrap();
    let pid = Pid::from_raw(i32::try_from(first.id()).unwrap());
    kill(pid, Signal::SIGTERM).unwrap();
    let bound = plexus_server::server::SHUTDOWN_GRACE + Duration::from_secs(30);
    let stopped = tokio::time::timeout(
        bound,
        tokio::task::spawn_blocking(move || {
            let status = first.wait().unwrap();
            (first, status)
        }),
    )
    .await;
    let Ok(joined) = stopped else {
        let _ = kill(pid, Signal::SIGKILL);
        panic!("plexusd did not stop within {bound:?} while a client was wedged");
    };
    let (_first, status) = joined.unwrap();
    release.send(()).unwrap();
    holder.join().unwrap();
    assert!(status.success(), "{status}");
    assert!(!socket.exists(), "socket removed at shutdown");
}

/// `GET path` over a fresh connection: (status, body).
fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: plexusd\r\n\r\n").as_bytes())?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Ok((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_metrics_healthz_and_readyz_once_its_socket_answers() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let config = dir.path().join("plexusd.yaml");
    let socket = dir.path().join("run/plexus.sock");
    std::fs::write(
        &config,
        format!(
            "socket: {}\nstateDir: state\ncniCacheDir: cache\nipamDataDir: leases\n\
             nadSource: {{directory: networks.d}}\n\
             telemetry: {{logLevel: warn, metricsAddress: \"{addr}\"}}\n",
            socket.display()
        ),
    )
    .unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_plexusd"))
        .arg("--config")
        .arg(&config)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    // Whenever /readyz says ready, the node socket must already answer.
    loop {
        assert!(daemon.try_wait().unwrap().is_none(), "plexusd exited");
        assert!(Instant::now() < until, "plexusd never became ready");
        if let Ok((200, body)) = http_get(addr, "/readyz") {
            assert_eq!(body, "ready\n");
            plexus_client::connect(&socket)
                .await
                .expect("ready, yet the node socket does not answer");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        http_get(addr, "/healthz").unwrap(),
        (200, "ok\n".to_owned())
    );
    let (status, metrics) = http_get(addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("plexus_requests_in_flight"), "{metrics}");
    assert_eq!(http_get(addr, "/nope").unwrap().0, 404);
    kill(
        Pid::from_raw(i32::try_from(daemon.id()).unwrap()),
        Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::task::spawn_blocking(move || daemon.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
}

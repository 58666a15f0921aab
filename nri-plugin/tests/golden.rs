//! Golden byte tests: the plugin's bytes on the trunk against the hand-encoded vectors
//! of `reference/nri-and-cni.md` §1.6 (RegisterPlugin frame, the runtime's OK reply,
//! Configure request body, ConfigureResponse frame).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use plexus_nri::ttrpc::encode_request;
use plexus_nri::{Config, Plugin};
use plexus_proto::nri::ConfigureRequest;
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn bytes(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// `0a 05 "mynet" 12 02 "10"`
const REGISTER_REQUEST: &[u8] = &[
    0x0a, 0x05, b'm', b'y', b'n', b'e', b't', 0x12, 0x02, b'1', b'0',
];

fn register_frame() -> Vec<u8> {
    bytes(&[
        &[0, 0, 0, 2, 0, 0, 0, 0x45],
        &[0, 0, 0, 0x3b, 0, 0, 0, 1, 1, 0],
        &[0x0a, 0x1c],
        b"nri.pkg.api.v1alpha1.Runtime",
        &[0x12, 0x0e],
        b"RegisterPlugin",
        &[0x1a, 0x0b],
        REGISTER_REQUEST,
    ])
}

/// `12 0a "containerd" 1a 07 "v1.7.24"`
fn configure_request() -> Vec<u8> {
    bytes(&[&[0x12, 0x0a], b"containerd", &[0x1a, 0x07], b"v1.7.24"])
}

fn configure_body() -> Vec<u8> {
    bytes(&[
        &[0x0a, 0x1b],
        b"nri.pkg.api.v1alpha1.Plugin",
        &[0x12, 0x09],
        b"Configure",
        &[0x1a, 0x15],
        &configure_request(),
        &[0x20, 0x80, 0xa8, 0xd6, 0xb9, 0x07],
    ])
}

#[test]
fn configure_request_encodes_like_the_vector() {
    let req = ConfigureRequest {
        runtime_name: "containerd".into(),
        runtime_version: "v1.7.24".into(),
        ..Default::default()
    };
    assert_eq!(req.encode_to_vec(), configure_request());
    let body = encode_request(
        "nri.pkg.api.v1alpha1.Plugin",
        "Configure",
        &configure_request(),
        2_000_000_000,
    );
    assert_eq!(body, configure_body());
    assert_eq!(
        plexus_nri::plugin::register_request("mynet", "10"),
        REGISTER_REQUEST
    );
}

#[tokio::test]
async fn plugin_session_bytes_match_the_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        plugin_name: "mynet".into(),
        plugin_idx: "10".into(),
        plexusd_socket: dir.path().join("absent.sock"),
        ..Config::default()
    };
    let plugin = Arc::new(Plugin::new(config).unwrap());
    let (ours, mut runtime) = tokio::io::duplex(1 << 16);
    let registered = Arc::new(AtomicBool::new(false));
    let flag = registered.clone();
    let session = tokio::spawn({
        let plugin = plugin.clone();
        async move {
            plugin
                .run_session(ours, move || flag.store(true, Ordering::SeqCst))
                .await
        }
    });
    let wait = Duration::from_secs(5);

    // 1. The plugin's first bytes are exactly the RegisterPlugin frame.
    let want = register_frame();
    let mut got = vec![0u8; want.len()];
    tokio::time::timeout(wait, runtime.read_exact(&mut got))
        .await
        .expect("register frame in time")
        .unwrap();
    assert_eq!(got, want);

    // 2. Configure arrives before the RegisterPlugin reply (allowed by containerd):
    //    the conn-1 server is already running and answers with the golden frame,
    //    without an explicit OK status.
    let body = configure_body();
    let mut configure = bytes(&[&[0, 0, 0, 1], &(10 + body.len() as u32).to_be_bytes()]);
    configure.extend_from_slice(&(body.len() as u32).to_be_bytes());
    configure.extend_from_slice(&[0, 0, 0, 1, 1, 0]);
    configure.extend_from_slice(&body);
    runtime.write_all(&configure).await.unwrap();
    let want = [
        0, 0, 0, 1, 0, 0, 0, 0x0e, //
        0, 0, 0, 4, 0, 0, 0, 1, 2, 0, //
        // ConfigureResponse { events: RUN | STOP_POD_SANDBOX | CREATE_CONTAINER = 0x0b }
        0x12, 0x02, 0x10, 0x0b,
    ];
    let mut got = [0u8; 22];
    tokio::time::timeout(wait, runtime.read_exact(&mut got))
        .await
        .expect("configure response in time")
        .unwrap();
    assert_eq!(got, want);
    assert!(!registered.load(Ordering::SeqCst));

    // 3. The runtime's OK reply (empty Response body) completes the registration.
    runtime
        .write_all(&[0, 0, 0, 2, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0])
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + wait;
    while !registered.load(Ordering::SeqCst) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "registration not completed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // 4. Closing the trunk ends the session cleanly.
    drop(runtime);
    let res = tokio::time::timeout(wait, session)
        .await
        .expect("session ends");
    assert!(res.unwrap().is_ok());
}

#[tokio::test]
async fn registration_error_reply_fails_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        plexusd_socket: dir.path().join("absent.sock"),
        ..Config::default()
    };
    let plugin = Plugin::new(config).unwrap();
    let (ours, mut runtime) = tokio::io::duplex(1 << 16);
    let session = tokio::spawn(async move { plugin.run_session(ours, || {}).await });
    let mut head = [0u8; 8];
    runtime.read_exact(&mut head).await.unwrap();
    let mut rest = vec![0u8; u32::from_be_bytes(head[4..].try_into().unwrap()) as usize];
    runtime.read_exact(&mut rest).await.unwrap();
    // Error reply: code 2 UNKNOWN "boom" (reference vector), stream 1, conn 2.
    let body = [0x0a, 0x08, 0x08, 0x02, 0x12, 0x04, b'b', b'o', b'o', b'm'];
    let mut frame = vec![0, 0, 0, 2, 0, 0, 0, 20, 0, 0, 0, 10, 0, 0, 0, 1, 2, 0];
    frame.extend_from_slice(&body);
    runtime.write_all(&frame).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(5), session)
        .await
        .expect("session ends")
        .unwrap()
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("register plugin plexus (idx 10)") && msg.contains("boom"),
        "{msg}"
    );
}

//! The plexus-cni shim as a process: with no plexusd it answers a CNI error JSON naming the
//! socket and exits 1, as the CNI spec asks of a failing plugin.

use std::io::Write;
use std::process::{Command, Stdio};

#[test]
fn unreachable_daemon_is_a_cni_error_naming_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("absent.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_plexus-cni"))
        .env("PLEXUS_SOCKET", &socket)
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", "abc")
        .env("CNI_NETNS", "/run/netns/x")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/opt/cni/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"cniVersion":"0.4.0","name":"plexus","type":"plexus-cni"}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(err["code"], 11);
    assert_eq!(err["cniVersion"], "0.4.0");
    let msg = err["msg"].as_str().unwrap();
    assert!(msg.contains(socket.to_str().unwrap()), "{msg}");
}

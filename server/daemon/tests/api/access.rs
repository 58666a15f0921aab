//! Who may connect, and the socket file itself.

use super::*;

#[tokio::test]
async fn callers_not_allowed_are_closed_at_accept_on_every_service() {
    let d = Daemon::start(
        FakeAttacher::new(),
        wide(),
        Access {
            allow_root: false,
            allowed_uids: vec![],
        },
    )
    .await;
    // The connection is closed before any byte is read: connecting (the HTTP/2 handshake)
    // or the first call fails, and never with an answer from a service.
    let refused = |code: Code| matches!(code, Code::Unavailable | Code::Unknown | Code::Internal);
    if let Ok(mut c) = plexus_client::connect(&d.socket).await {
        let err = c
            .list_attachments(v1::ListAttachmentsRequest { target: None })
            .await
            .unwrap_err();
        assert!(refused(err.code()), "{err:?}");
    }
    if let Ok(channel) = plexus_client::channel(&d.socket).await {
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let err = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap_err();
        assert!(refused(err.code()), "{err:?}");
    }
    assert!(d.attacher.calls().is_empty());
    d.stop().await;
}

#[tokio::test]
async fn socket_is_private_and_a_live_daemon_is_not_stolen() {
    use std::os::unix::fs::PermissionsExt;
    let d = Daemon::start(FakeAttacher::new(), wide(), me()).await;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&d.socket), 0o600);
    assert_eq!(mode(d.socket.parent().unwrap()), 0o700);
    let err = Socket::bind(&d.socket).await.unwrap_err();
    assert!(err.to_string().contains("another plexusd"), "{err}");
    d.stop().await;
}

#[tokio::test]
async fn allowing_non_root_uids_opens_the_socket_file_to_them() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared").join("plexus.sock");
    let socket = Socket::bind_for(&path, &Access::root_and(vec![1000]))
        .await
        .unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o666);
    assert_eq!(mode(path.parent().unwrap()), 0o711);
    drop(socket);
    assert!(!path.exists(), "socket removed on drop");
    let private = Socket::bind_for(&path, &Access::root_and(vec![0]))
        .await
        .unwrap();
    assert_eq!(mode(private.path()), 0o600);
}

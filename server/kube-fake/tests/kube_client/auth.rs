//! TLS with the generated CA, bearer tokens, 401s, token rotation and the token-file re-read,
//! stop/restart and injected failures.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use plexus_kube_fake::{Failure, FailureKind};

use crate::{add_pod, api_status, client_from, setup};

#[tokio::test]
async fn https_with_the_kubeconfig_lists_pods() {
    let (server, client) = setup().await;
    add_pod(&server, "ns1", "p1", "node-a");
    let pods: Api<Pod> = Api::all(client);
    let list = pods.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].metadata.name.as_deref(), Some("p1"));
    assert!(server.url().starts_with("https://127.0.0.1:"));
}

#[tokio::test]
async fn wrong_or_missing_token_is_401_status() {
    let server = plexus_kube_fake::FakeApiServer::start().await.unwrap();
    let kc = kube::config::Kubeconfig::read_from(server.kubeconfig_path()).unwrap();
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    cfg.auth_info.token = Some("not-the-token".to_owned().into());
    let pods: Api<Pod> = Api::all(kube::Client::try_from(cfg.clone()).unwrap());
    let s = api_status(pods.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (401, "Unauthorized"));
    cfg.auth_info.token = None;
    let pods: Api<Pod> = Api::all(kube::Client::try_from(cfg).unwrap());
    let s = api_status(pods.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(s.code, 401);
    assert!(server.requests().iter().all(|r| r.status == 401));
}

#[tokio::test]
async fn rotated_token_gets_401_and_the_inline_kubeconfig_is_rewritten() {
    let (server, client) = setup().await;
    let pods: Api<Pod> = Api::all(client);
    pods.list(&ListParams::default()).await.unwrap();
    let old = server.token();
    let new = server.rotate_token().unwrap();
    assert_ne!(old, new);
    let s = api_status(pods.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(s.code, 401);
    assert_eq!(
        std::fs::read_to_string(server.token_file_path()).unwrap(),
        new
    );
    let fresh: Api<Pod> = Api::all(client_from(&server.kubeconfig_path()).await);
    fresh.list(&ListParams::default()).await.unwrap();
}

/// kube-rs re-reads a `tokenFile` about a minute after reading it (at most 60 s, less its
/// 10 s margin), so this test waits for that re-read: it polls until the client's requests
/// succeed again with the rotated token, for at most 90 s.
#[tokio::test]
async fn token_file_is_reread_after_rotation() {
    let server = plexus_kube_fake::FakeApiServer::start().await.unwrap();
    let pods: Api<Pod> = Api::all(client_from(&server.kubeconfig_token_file_path()).await);
    pods.list(&ListParams::default()).await.unwrap();
    server.rotate_token().unwrap();
    let first = pods.list(&ListParams::default()).await;
    assert_eq!(
        api_status(first.unwrap_err()).code,
        401,
        "the old cached token is refused"
    );
    let recovered = tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            if pods.list(&ListParams::default()).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
    .await;
    assert!(
        recovered.is_ok(),
        "kube-rs never re-read the rotated token file"
    );
}

#[tokio::test]
async fn stop_cuts_and_restart_serves_on_the_same_port() {
    let (server, client) = setup().await;
    let pods: Api<Pod> = Api::all(client);
    pods.list(&ListParams::default()).await.unwrap();
    let addr = server.addr();
    server.stop().await;
    assert!(!server.is_running());
    let err = pods.list(&ListParams::default()).await.unwrap_err();
    assert!(
        !matches!(err, kube::Error::Api(_)),
        "expected a connection error, got {err:?}"
    );
    server.restart().await.unwrap();
    assert_eq!(server.addr(), addr);
    pods.list(&ListParams::default()).await.unwrap();
}

#[tokio::test]
async fn injected_429_and_500_then_success() {
    let server = plexus_kube_fake::FakeApiServer::start().await.unwrap();
    let kc = kube::config::Kubeconfig::read_from(server.kubeconfig_path()).unwrap();
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    cfg.default_retry = false;
    let client = kube::Client::try_from(cfg).unwrap();
    let fail = |kind, method: Option<&str>| Failure {
        path_contains: "/api/v1/pods".into(),
        method: method.map(Into::into),
        count: 1,
        kind,
    };
    server.inject_failure(fail(
        FailureKind::TooManyRequests {
            retry_after_secs: 7,
        },
        Some("GET"),
    ));
    server.inject_failure(fail(FailureKind::InternalError, None));
    let req = http::Request::get("/api/v1/pods").body(Vec::new()).unwrap();
    let resp = client.send(req.map(Into::into)).await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    let pods: Api<Pod> = Api::all(client);
    let s = api_status(pods.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (500, "InternalError"));
    pods.list(&ListParams::default()).await.unwrap();
    let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 500, 200]);
}

/// kube-rs retries a 429 by itself after the server's `Retry-After`.
#[tokio::test]
async fn kube_client_honours_retry_after() {
    let (server, client) = setup().await;
    server.inject_failure(Failure {
        path_contains: "/api/v1/pods".into(),
        method: None,
        count: 1,
        kind: FailureKind::TooManyRequests {
            retry_after_secs: 1,
        },
    });
    let pods: Api<Pod> = Api::all(client);
    pods.list(&ListParams::default()).await.unwrap();
    let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 200]);
}

#[tokio::test]
async fn request_log_counts_by_method_and_content_type() {
    let (server, client) = setup().await;
    add_pod(&server, "ns1", "p1", "node-a");
    let pods: Api<Pod> = Api::namespaced(client, "ns1");
    let patch = serde_json::json!({"metadata": {"annotations": {"a": "b"}}});
    pods.patch_status("p1", &Default::default(), &kube::api::Patch::Merge(&patch))
        .await
        .unwrap();
    let log = server.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].method, "PATCH");
    assert_eq!(log[0].path, "/api/v1/namespaces/ns1/pods/p1/status");
    assert_eq!(
        log[0].content_type.as_deref(),
        Some("application/merge-patch+json")
    );
}

#[tokio::test]
async fn graceful_rotation_keeps_the_old_token_until_revoked() {
    let (server, client) = setup().await;
    let pods: Api<Pod> = Api::all(client);
    let new = server.rotate_token_with_grace().unwrap();
    pods.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(server.token_file_path()).unwrap(),
        new
    );
    server.revoke_old_tokens();
    let s = api_status(pods.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(s.code, 401);
    let fresh: Api<Pod> = Api::all(client_from(&server.kubeconfig_path()).await);
    fresh.list(&ListParams::default()).await.unwrap();
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let server = plexus_kube_fake::FakeApiServer::start().await.unwrap();
    let addr = server.addr();
    tokio::net::TcpStream::connect(addr).await.unwrap();
    drop(server);
    let refused = tokio::time::timeout(crate::WAIT, async {
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        refused.is_ok(),
        "the port still accepts connections after the drop"
    );
}

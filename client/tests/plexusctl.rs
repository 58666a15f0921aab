//! plexusctl as a process against a canned node-API server on a unix socket: the JSON shape
//! of `attachments` (relied on outside this project), selectors reaching the server, and API
//! errors printed with their status message and a non-zero exit.

use std::path::Path;
use std::pin::Pin;
use std::process::Command;
use std::sync::{Arc, Mutex};

use plexus_client::v1;
use plexus_client::v1::node_server::{Node, NodeServer};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

#[derive(Default)]
struct Canned {
    seen: Arc<Mutex<Vec<String>>>,
}

fn attachment() -> v1::Attachment {
    v1::Attachment {
        sandbox_id: "sb1".into(),
        pod: Some(v1::PodRef {
            namespace: "iot".into(),
            name: "ha".into(),
            uid: "u".into(),
        }),
        network: "iot/lan".into(),
        interface: "net1".into(),
        ips: vec!["192.0.2.10/24".into()],
        mac: "02:00:00:00:00:01".into(),
        driver: "native".into(),
        plugin: "macvlan".into(),
        origin: "annotation".into(),
        state: "attached".into(),
        netns_path: "/run/netns/x".into(),
        mtu: 1500,
        gateways: vec![],
        lease_expires_unix: 0,
    }
}

type Events = Pin<Box<dyn futures::Stream<Item = Result<v1::WatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Node for Canned {
    async fn setup_pod(
        &self,
        _: Request<v1::SetupPodRequest>,
    ) -> Result<Response<v1::SetupPodResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }
    async fn teardown_pod(
        &self,
        _: Request<v1::TeardownPodRequest>,
    ) -> Result<Response<v1::TeardownPodResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }
    async fn cni(&self, _: Request<v1::CniRequest>) -> Result<Response<v1::CniResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }
    async fn attach(
        &self,
        request: Request<v1::AttachRequest>,
    ) -> Result<Response<v1::AttachResponse>, Status> {
        let req = request.into_inner();
        Err(Status::permission_denied(format!(
            "namespace isolation refuses {}",
            req.selection
        )))
    }
    async fn detach(
        &self,
        _: Request<v1::DetachRequest>,
    ) -> Result<Response<v1::DetachResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }
    async fn list_attachments(
        &self,
        request: Request<v1::ListAttachmentsRequest>,
    ) -> Result<Response<v1::ListAttachmentsResponse>, Status> {
        let target = request.into_inner().target.unwrap_or_default();
        let pod = target.pod.unwrap_or_default();
        self.seen.lock().unwrap().push(format!(
            "sandbox={} pod={}/{}",
            target.sandbox_id, pod.namespace, pod.name
        ));
        Ok(Response::new(v1::ListAttachmentsResponse {
            attachments: vec![attachment()],
            network_status: [("sb1".to_owned(), "[{\"name\": \"iot/lan\"}]".to_owned())].into(),
        }))
    }
    async fn explain(
        &self,
        request: Request<v1::ExplainRequest>,
    ) -> Result<Response<v1::ExplainResponse>, Status> {
        let req = request.into_inner();
        let pod = req.pod.unwrap_or_default();
        self.seen.lock().unwrap().push(format!(
            "explain from_cluster={} pod={}/{} manifest={}",
            req.from_cluster,
            pod.namespace,
            pod.name,
            !req.pod_manifest.is_empty()
        ));
        if pod.name == "ghost" {
            return Err(Status::not_found(
                "pod default/ghost not found in the API server",
            ));
        }
        Ok(Response::new(v1::ExplainResponse {
            json: r#"{"pod":{"name":"web"},"attachments":[]}"#.into(),
            text: "pod default/web: 1 network".into(),
            ok: true,
        }))
    }
    async fn get_status(
        &self,
        _: Request<v1::GetStatusRequest>,
    ) -> Result<Response<v1::GetStatusResponse>, Status> {
        Ok(Response::new(v1::GetStatusResponse {
            mode: "kubernetes".into(),
            node_name: "node-a".into(),
            kubernetes: Some(v1::KubernetesStatus {
                api_connected: false,
                last_error: "API server unreachable: connection refused".into(),
                nads_synced: true,
                nads: 3,
                pods_synced: true,
                pods: 7,
                status_backlog: 2,
                event_backlog: 5,
                oldest_pending_ms: 12_500,
                delivered: 40,
                dropped: 1,
            }),
        }))
    }
    async fn reconcile(
        &self,
        request: Request<v1::ReconcileRequest>,
    ) -> Result<Response<v1::ReconcileResponse>, Status> {
        let req = request.into_inner();
        let live = req.live_sandbox_ids;
        Ok(Response::new(v1::ReconcileResponse {
            torn_down: vec![format!("not-{} all={}", live.join("+"), req.all_listed)],
            failed: vec![],
            kept: vec!["young: set up after the live list was taken".into()],
        }))
    }
    type WatchStream = Events;
    async fn watch(
        &self,
        _: Request<v1::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("not used"))
    }
}

fn ctl(socket: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_plexusctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plexusctl_against_a_canned_server() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("plexus.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let canned = Canned::default();
    let seen = Arc::clone(&canned.seen);
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(NodeServer::new(canned))
            .serve_with_incoming(UnixListenerStream::new(listener)),
    );
    let s = socket.clone();
    let out = tokio::task::spawn_blocking(move || {
        let json = ctl(&s, &["attachments", "--pod", "iot/ha", "--output", "json"]);
        let text = ctl(&s, &["attachments", "--sandbox", "sb1"]);
        let attach = ctl(&s, &["attach", "--pod", "iot/ha", "other/net"]);
        let bad_pod = ctl(&s, &["attach", "--pod", "nameonly", "x"]);
        let reconcile = ctl(&s, &["reconcile", "a", "b"]);
        let reconcile_bare = ctl(&s, &["reconcile"]);
        let reconcile_all = ctl(&s, &["reconcile", "--all"]);
        let status = ctl(&s, &["status", "--sandbox", "sb1"]);
        let reconciles = (reconcile, reconcile_bare, reconcile_all);
        (json, text, attach, bad_pod, reconciles, status)
    })
    .await
    .unwrap();
    let (json, text, attach, bad_pod, reconciles, status) = out;
    let (reconcile, reconcile_bare, reconcile_all) = reconciles;

    assert!(json.status.success());
    let list: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let a = &list[0];
    assert_eq!(a["sandboxId"], "sb1");
    assert_eq!(a["pod"]["namespace"], "iot");
    assert_eq!(a["pod"]["name"], "ha");
    assert_eq!(a["interface"], "net1");
    assert_eq!(a["ips"][0], "192.0.2.10/24");
    assert_eq!(a["mac"], "02:00:00:00:00:01");

    assert!(text.status.success());
    assert!(String::from_utf8_lossy(&text.stdout).contains("iot/ha"));
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "sandbox= pod=iot/ha",
            "sandbox=sb1 pod=/",
            "sandbox=sb1 pod=/"
        ]
    );

    assert!(!attach.status.success());
    let err = String::from_utf8_lossy(&attach.stderr);
    assert!(
        err.contains("PermissionDenied") && err.contains("namespace isolation refuses other/net"),
        "{err}"
    );
    assert!(!bad_pod.status.success());
    assert!(String::from_utf8_lossy(&bad_pod.stderr).contains("namespace/name"));

    assert!(reconcile.status.success());
    assert_eq!(
        String::from_utf8_lossy(&reconcile.stdout),
        "torn down not-a+b all=false\nkept young: set up after the live list was taken\n"
    );
    // No ids without --all is refused before anything is sent.
    assert!(!reconcile_bare.status.success());
    assert!(reconcile_bare.stdout.is_empty());
    let err = String::from_utf8_lossy(&reconcile_bare.stderr);
    assert!(
        err.contains("--all") && err.contains("every recorded sandbox"),
        "{err}"
    );
    assert!(reconcile_all.status.success());
    assert_eq!(
        String::from_utf8_lossy(&reconcile_all.stdout),
        "torn down not- all=true\nkept young: set up after the live list was taken\n"
    );

    assert!(status.status.success());
    assert_eq!(
        String::from_utf8_lossy(&status.stdout),
        "[{\"name\": \"iot/lan\"}]\n"
    );

    let unreachable = ctl(&dir.path().join("none.sock"), &["attachments"]);
    assert!(!unreachable.status.success());
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("none.sock"));
    server.abort();
}

#[test]
fn a_bad_sandbox_id_is_refused_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    // No server: a connect would fail with a different message.
    let socket = dir.path().join("absent.sock");
    for args in [
        &["attachments", "--sandbox", "../../f"][..],
        &["detach", "--sandbox", "/tmp/x", "net1"],
        &["attach", "--sandbox", "a/b", "lan"],
        &["status", "--sandbox", ".."],
        &["reconcile", "ok", "bad/id"],
    ] {
        let out = ctl(&socket, args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(plexus_client::sandbox::RULE),
            "{args:?}: {err}"
        );
        assert!(!err.contains("absent.sock"), "{args:?} connected: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_status_and_explain_of_a_pod_in_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("plexus.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let canned = Canned::default();
    let seen = Arc::clone(&canned.seen);
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(NodeServer::new(canned))
            .serve_with_incoming(UnixListenerStream::new(listener)),
    );
    let s = socket.clone();
    let manifest = dir.path().join("pod.yaml");
    std::fs::write(&manifest, "kind: Pod\nmetadata: {name: web}\n").unwrap();
    let m = manifest.clone();
    let (text, json, explain, ghost, from_file, bad) = tokio::task::spawn_blocking(move || {
        (
            ctl(&s, &["status"]),
            ctl(&s, &["status", "--output", "json"]),
            ctl(&s, &["explain", "--pod", "default/web"]),
            ctl(&s, &["explain", "--pod", "default/ghost"]),
            ctl(&s, &["explain", "--pod", m.to_str().unwrap()]),
            ctl(&s, &["explain", "--pod", "Default/web"]),
        )
    })
    .await
    .unwrap();

    assert!(text.status.success());
    assert_eq!(
        String::from_utf8_lossy(&text.stdout),
        "MODE             kubernetes\n\
         NODE             node-a\n\
         API SERVER       not connected\n\
         LAST ERROR       API server unreachable: connection refused\n\
         NAD CACHE        synced (3 NADs)\n\
         POD WATCH        synced (7 pods)\n\
         PUBLISH BACKLOG  2 network-status, 5 events, oldest waiting 12.5s\n\
         PUBLISHED        40 delivered, 1 dropped\n"
    );
    assert!(json.status.success());
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "mode": "kubernetes",
            "nodeName": "node-a",
            "kubernetes": {
                "apiConnected": false,
                "lastError": "API server unreachable: connection refused",
                "nadsSynced": true, "nads": 3,
                "podsSynced": true, "pods": 7,
                "statusBacklog": 2, "eventBacklog": 5, "oldestPendingMs": 12500,
                "delivered": 40, "dropped": 1
            }
        })
    );

    assert!(explain.status.success());
    assert_eq!(
        String::from_utf8_lossy(&explain.stdout),
        "pod default/web: 1 network\n"
    );
    assert!(!ghost.status.success());
    let err = String::from_utf8_lossy(&ghost.stderr);
    assert!(
        err.contains("NotFound") && err.contains("default/ghost"),
        "{err}"
    );
    assert!(from_file.status.success());
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("DNS-1123 label"), "{err}");
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "explain from_cluster=true pod=default/web manifest=false",
            "explain from_cluster=true pod=default/ghost manifest=false",
            "explain from_cluster=false pod=/ manifest=true",
        ],
        "the bad name never reached the server"
    );
    server.abort();
}

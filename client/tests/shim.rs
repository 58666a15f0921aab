//! The plexus-cni shim as a process: VERSION without plexusd, ADD failing with code 11 naming
//! the socket, DEL spooled durably while plexusd is down, and verbatim forwarding to a fake
//! plexusd that records what it got.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use plexus_client::v1;
use plexus_client::v1::node_server::{Node, NodeServer};
use tonic::{Request, Response, Status};

fn shim(verb: &str, id: &str, socket: &Path, stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_plexus-cni"))
        .env_clear()
        .env("PLEXUS_SOCKET", socket)
        .env("CNI_COMMAND", verb)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", "/run/netns/x")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_ARGS", "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web")
        .env("CNI_PATH", "/opt/cni/bin")
        .env("NOT_CNI", "dropped")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn config(spool: &Path) -> String {
    serde_json::json!({
        "cniVersion": "0.4.0", "name": "plexus", "type": "plexus-cni",
        "spoolDir": spool,
    })
    .to_string()
}

#[test]
fn unreachable_daemon_is_a_cni_error_naming_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("absent.sock");
    let out = shim("ADD", "abc", &socket, &config(&dir.path().join("spool")));
    assert_eq!(out.status.code(), Some(1));
    let err: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(err["code"], 11);
    assert_eq!(err["cniVersion"], "0.4.0");
    let msg = err["msg"].as_str().unwrap();
    assert!(msg.contains(socket.to_str().unwrap()), "{msg}");
    assert!(!dir.path().join("spool").exists(), "ADD is never spooled");
}

#[test]
fn version_is_answered_without_plexusd() {
    let dir = tempfile::tempdir().unwrap();
    let out = shim(
        "VERSION",
        "",
        &dir.path().join("absent.sock"),
        r#"{"cniVersion":"1.0.0"}"#,
    );
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["cniVersion"], "1.0.0");
    assert_eq!(v["supportedVersions"].as_array().unwrap().len(), 7);
}

#[test]
fn del_while_plexusd_is_down_is_spooled_and_answered_success() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("state/cni-spool");
    let out = shim(
        "DEL",
        "sb-1.a_b",
        &dir.path().join("absent.sock"),
        &config(&spool),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty());
    let names: Vec<String> = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["sb-1.a_b.del"], "one file, no temp left");
    let body: serde_json::Value =
        serde_json::from_slice(&std::fs::read(spool.join("sb-1.a_b.del")).unwrap()).unwrap();
    assert_eq!(body["version"], 1);
    assert_eq!(body["containerId"], "sb-1.a_b");
    assert_eq!(body["netns"], "/run/netns/x");
}

#[test]
fn a_del_with_an_invalid_container_id_is_refused_not_spooled() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    for id in ["../../etc/passwd", "", "-x", &"a".repeat(129)] {
        let out = shim("DEL", id, &dir.path().join("absent.sock"), &config(&spool));
        assert_eq!(out.status.code(), Some(1), "{id}");
        let err: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(err["code"], 4, "{id}");
    }
    assert!(!spool.exists());
}

/// A plexusd that records Cni calls and answers with a scripted outcome.
#[derive(Clone)]
struct FakeNode {
    seen: Arc<Mutex<Vec<v1::CniRequest>>>,
    answer: v1::CniResponse,
}

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not in this fake"))
}

#[tonic::async_trait]
impl Node for FakeNode {
    async fn setup_pod(
        &self,
        _: Request<v1::SetupPodRequest>,
    ) -> Result<Response<v1::SetupPodResponse>, Status> {
        unimplemented()
    }
    async fn teardown_pod(
        &self,
        _: Request<v1::TeardownPodRequest>,
    ) -> Result<Response<v1::TeardownPodResponse>, Status> {
        unimplemented()
    }
    async fn cni(
        &self,
        request: Request<v1::CniRequest>,
    ) -> Result<Response<v1::CniResponse>, Status> {
        self.seen.lock().unwrap().push(request.into_inner());
        Ok(Response::new(self.answer.clone()))
    }
    async fn attach(
        &self,
        _: Request<v1::AttachRequest>,
    ) -> Result<Response<v1::AttachResponse>, Status> {
        unimplemented()
    }
    async fn detach(
        &self,
        _: Request<v1::DetachRequest>,
    ) -> Result<Response<v1::DetachResponse>, Status> {
        unimplemented()
    }
    async fn list_attachments(
        &self,
        _: Request<v1::ListAttachmentsRequest>,
    ) -> Result<Response<v1::ListAttachmentsResponse>, Status> {
        unimplemented()
    }
    async fn explain(
        &self,
        _: Request<v1::ExplainRequest>,
    ) -> Result<Response<v1::ExplainResponse>, Status> {
        unimplemented()
    }
    async fn reconcile(
        &self,
        _: Request<v1::ReconcileRequest>,
    ) -> Result<Response<v1::ReconcileResponse>, Status> {
        unimplemented()
    }
    type WatchStream = futures::stream::Empty<Result<v1::WatchEvent, Status>>;
    async fn watch(
        &self,
        _: Request<v1::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        unimplemented()
    }
    async fn get_status(
        &self,
        _: Request<v1::GetStatusRequest>,
    ) -> Result<Response<v1::GetStatusResponse>, Status> {
        unimplemented()
    }
}

/// Serves `fake` on a socket in `dir` on a runtime thread; returns the socket path.
fn serve(dir: &Path, fake: FakeNode) -> std::path::PathBuf {
    let socket = dir.join("plexus.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::UnixListener::from_std(listener).unwrap();
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
            tonic::transport::Server::builder()
                .add_service(NodeServer::new(fake))
                .serve_with_incoming(incoming)
                .await
                .unwrap();
        });
    });
    socket
}

#[test]
fn every_other_verb_is_forwarded_verbatim_and_the_answer_printed() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let result = br#"{"cniVersion":"0.4.0","interfaces":[{"name":"eth0"}]}"#.to_vec();
    let socket = serve(
        dir.path(),
        FakeNode {
            seen: seen.clone(),
            answer: v1::CniResponse {
                outcome: Some(v1::cni_response::Outcome::Stdout(result.clone())),
            },
        },
    );
    let stdin = config(&dir.path().join("spool"));
    let out = shim("ADD", "sb1", &socket, &stdin);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.stdout, result);
    let out = shim("DEL", "sb1", &socket, &stdin);
    assert_eq!(out.status.code(), Some(0));
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.len(),
        2,
        "DEL reaches a running plexusd, it is not spooled"
    );
    assert_eq!(seen[0].stdin, stdin.as_bytes());
    let env: &HashMap<String, String> = &seen[0].env;
    assert_eq!(env["CNI_COMMAND"], "ADD");
    assert_eq!(env["CNI_CONTAINERID"], "sb1");
    assert_eq!(
        env["CNI_ARGS"],
        "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web"
    );
    assert!(
        !env.contains_key("NOT_CNI"),
        "only the CNI_* environment is forwarded"
    );
    assert!(!dir.path().join("spool").exists());
}

#[test]
fn a_cni_error_from_plexusd_is_printed_with_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let socket = serve(
        dir.path(),
        FakeNode {
            seen: Arc::default(),
            answer: v1::CniResponse {
                outcome: Some(v1::cni_response::Outcome::Error(v1::CniError {
                    code: 7,
                    msg: "plexus ADD failed".into(),
                    details: "network lan: bad".into(),
                    cni_version: String::new(),
                })),
            },
        },
    );
    let out = shim("ADD", "sb1", &socket, &config(&dir.path().join("spool")));
    assert_eq!(out.status.code(), Some(1));
    let err: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(err["code"], 7);
    assert_eq!(err["details"], "network lan: bad");
    assert_eq!(
        err["cniVersion"], "0.4.0",
        "labelled with the request's version"
    );
}

//! Fakes for the component tests: a fake runtime playing containerd's side of NRI on a
//! unix socket, and a fake plexusd serving the node API on another, recording every
//! call and able to fail or delay.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plexus_nri::error::CallError;
use plexus_nri::mux::{Mux, PLUGIN_SERVICE_CONN, RUNTIME_SERVICE_CONN};
use plexus_nri::service::{PLUGIN_SERVICE, RUNTIME_SERVICE};
use plexus_nri::ttrpc::client::Client;
use plexus_nri::ttrpc::server::{Call, Service, serve};
use plexus_nri::ttrpc::{Status, code};
use plexus_proto::nri::{
    ConfigureRequest, ConfigureResponse, Empty, LinuxNamespace, LinuxPodSandbox, PodSandbox,
    RegisterPluginRequest, StateChangeEvent, SynchronizeRequest, SynchronizeResponse,
};
use plexus_proto::v1::node_server::{Node, NodeServer};
use plexus_proto::v1::*;
use prost::Message;
use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tonic::{Request, Response};

/// Generous upper bound for anything a test waits for.
pub const WAIT: Duration = Duration::from_secs(10);
/// What containerd puts in `timeout_nano` (its 2 s request timeout).
pub const RUNTIME_TIMEOUT_NANO: i64 = 2_000_000_000;

/// A pod as containerd 1.7 sends it in RunPodSandbox.
pub fn pod(id: &str, netns: Option<&str>, networks: Option<&str>) -> PodSandbox {
    let mut namespaces = vec![LinuxNamespace {
        r#type: "ipc".into(),
        path: String::new(),
    }];
    if let Some(path) = netns {
        namespaces.push(LinuxNamespace {
            r#type: "network".into(),
            path: path.into(),
        });
    }
    let mut annotations = std::collections::HashMap::from([(
        "io.kubernetes.cri.sandbox-id".to_owned(),
        id.to_owned(),
    )]);
    if let Some(n) = networks {
        annotations.insert("k8s.v1.cni.cncf.io/networks".into(), n.into());
    }
    PodSandbox {
        id: id.into(),
        name: format!("pod-{id}"),
        uid: format!("uid-{id}"),
        namespace: "prod".into(),
        labels: [("app".to_owned(), "demo".to_owned())].into(),
        annotations,
        linux: Some(LinuxPodSandbox {
            namespaces,
            ..Default::default()
        }),
        pid: 4242,
        ..Default::default()
    }
}

/// A pod as containerd 1.7 sends it in StopPodSandbox: no namespaces, pid 0.
pub fn stopped(pod: &PodSandbox) -> PodSandbox {
    PodSandbox {
        linux: None,
        pid: 0,
        ..pod.clone()
    }
}

// ---------------------------------------------------------------------------------
// fake runtime

/// The runtime's listening NRI socket.
pub struct FakeRuntime {
    listener: UnixListener,
}

impl FakeRuntime {
    /// Listens on `path`.
    pub fn bind(path: &Path) -> Self {
        Self {
            listener: UnixListener::bind(path).expect("bind fake NRI socket"),
        }
    }

    /// Accepts the next plugin connection and serves the Runtime service on conn 2.
    pub async fn accept(&self) -> RuntimeConn {
        let (stream, _) = tokio::time::timeout(WAIT, self.listener.accept())
            .await
            .expect("plugin connected in time")
            .expect("accept");
        let (mux, mut readers) = Mux::start(stream, &[PLUGIN_SERVICE_CONN, RUNTIME_SERVICE_CONN]);
        let (tx, registrations) = mpsc::unbounded_channel();
        tokio::spawn(serve(
            readers.remove(&RUNTIME_SERVICE_CONN).unwrap(),
            mux.writer(RUNTIME_SERVICE_CONN),
            Arc::new(RuntimeService { tx }),
        ));
        let client = Client::new(
            readers.remove(&PLUGIN_SERVICE_CONN).unwrap(),
            mux.writer(PLUGIN_SERVICE_CONN),
        );
        RuntimeConn {
            mux,
            client,
            registrations,
        }
    }
}

struct RuntimeService {
    tx: mpsc::UnboundedSender<RegisterPluginRequest>,
}

impl Service for RuntimeService {
    fn name(&self) -> &str {
        RUNTIME_SERVICE
    }

    #[allow(clippy::manual_async_fn)]
    fn call(
        &self,
        call: Call,
    ) -> impl std::future::Future<Output = Result<Vec<u8>, Status>> + Send + 'static {
        let tx = self.tx.clone();
        async move {
            match call.method.as_str() {
                "RegisterPlugin" => {
                    let req = RegisterPluginRequest::decode(call.payload)
                        .map_err(|e| Status::new(code::INVALID_ARGUMENT, e.to_string()))?;
                    let _ = tx.send(req);
                    Ok(Vec::new())
                }
                other => Err(Status::unknown_method(other)),
            }
        }
    }
}

/// One accepted plugin connection, seen from the runtime.
pub struct RuntimeConn {
    pub mux: Mux,
    client: Client,
    registrations: mpsc::UnboundedReceiver<RegisterPluginRequest>,
}

impl RuntimeConn {
    /// Waits for the plugin's RegisterPlugin.
    pub async fn registered(&mut self) -> RegisterPluginRequest {
        tokio::time::timeout(WAIT, self.registrations.recv())
            .await
            .expect("registration in time")
            .expect("registration")
    }

    /// Calls a Plugin method with an encoded request.
    pub async fn call(&self, method: &str, payload: &[u8]) -> Result<Vec<u8>, CallError> {
        self.call_service(PLUGIN_SERVICE, method, payload).await
    }

    /// Calls any service/method, as containerd does (timeout_nano = 2 s).
    pub async fn call_service(
        &self,
        service: &str,
        method: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, CallError> {
        self.client
            .call(service, method, payload, RUNTIME_TIMEOUT_NANO, WAIT)
            .await
            .map(|b| b.to_vec())
    }

    /// Configure; `request_timeout_ms` as NRI >= 0.7 sends it (0: absent).
    pub async fn configure(&self, request_timeout_ms: i64) -> ConfigureResponse {
        let req = ConfigureRequest {
            runtime_name: "containerd".into(),
            runtime_version: "v1.7.24".into(),
            request_timeout: request_timeout_ms,
            ..Default::default()
        };
        let body = self
            .call("Configure", &req.encode_to_vec())
            .await
            .expect("configure");
        ConfigureResponse::decode(&body[..]).unwrap()
    }

    /// Synchronize with `pods`.
    pub async fn synchronize(&self, pods: Vec<PodSandbox>, more: bool) -> SynchronizeResponse {
        let req = SynchronizeRequest {
            pods,
            containers: Vec::new(),
            more,
        };
        let body = self
            .call("Synchronize", &req.encode_to_vec())
            .await
            .expect("synchronize");
        SynchronizeResponse::decode(&body[..]).unwrap()
    }

    /// A StateChange pod event; `Ok` means an empty (success) reply.
    pub async fn event(&self, event: i32, pod: &PodSandbox) -> Result<(), CallError> {
        let req = StateChangeEvent {
            event,
            pod: Some(pod.clone()),
            container: None,
        };
        let body = self.call("StateChange", &req.encode_to_vec()).await?;
        Empty::decode(&body[..]).unwrap();
        Ok(())
    }
}

/// The status of a failed call, or a panic.
pub fn status_of(res: Result<impl std::fmt::Debug, CallError>) -> Status {
    match res {
        Err(CallError::Status(s)) => s,
        other => panic!("expected an error status, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------
// fake plexusd

/// One call the fake plexusd received.
#[derive(Debug, Clone)]
pub enum Recorded {
    /// SetupPod with its request, traceparent and grpc-timeout metadata.
    Setup {
        req: SetupPodRequest,
        traceparent: Option<String>,
        grpc_timeout: Option<String>,
    },
    /// TeardownPod.
    Teardown(TeardownPodRequest),
    /// Reconcile, when it arrived.
    ReconcileStart(ReconcileRequest),
    /// Reconcile, when it answered.
    ReconcileEnd,
}

/// A gate a fake call waits at until [`Hold::release`]: tests order events with it instead
/// of delays and clocks ("answered while the work was still held").
#[derive(Debug, Clone)]
pub struct Hold(Arc<tokio::sync::Semaphore>);

impl Hold {
    /// A closed gate.
    pub fn new() -> Hold {
        Hold(Arc::new(tokio::sync::Semaphore::new(0)))
    }

    /// Opens the gate for every call waiting at it and every later one.
    pub fn release(&self) {
        self.0.close();
    }

    async fn wait(&self) {
        // A closed semaphore fails every acquire at once: that is the release.
        let _ = self.0.acquire().await;
    }
}

impl Default for Hold {
    fn default() -> Self {
        Hold::new()
    }
}

/// How the fake plexusd behaves; change it any time. A call reads it when it arrives.
#[derive(Debug, Default, Clone)]
pub struct Behaviour {
    pub setup_error: Option<tonic::Status>,
    pub setup_delay: Duration,
    /// SetupPod waits here (after recording the call) until released.
    pub setup_hold: Option<Hold>,
    pub teardown_error: Option<tonic::Status>,
    pub teardown_delay: Duration,
    /// TeardownPod waits here until released.
    pub teardown_hold: Option<Hold>,
    pub reconcile_delay: Duration,
    /// Reconcile waits here until released.
    pub reconcile_hold: Option<Hold>,
    /// A SetupPod that may finish later is answered `finishing` (as plexusd does when the
    /// setup is still running when the answer is due).
    pub setup_finishing: bool,
    /// SetupPod answers `stop_at_once` (plexusd holds the pod's netns until its teardown).
    pub stop_at_once: bool,
}

/// A recording node API server on a unix socket.
#[derive(Clone, Default)]
pub struct FakeNode {
    pub calls: Arc<Mutex<Vec<Recorded>>>,
    pub behaviour: Arc<Mutex<Behaviour>>,
    /// Sandboxes whose SetupPod completed and were not torn down since.
    pub known: Arc<Mutex<std::collections::HashSet<String>>>,
}

impl FakeNode {
    /// Serves on `path` until the test ends.
    pub fn serve(&self, path: &Path) {
        let listener = UnixListener::bind(path).expect("bind fake plexusd socket");
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        let svc = NodeServer::new(self.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(incoming)
                .await
                .expect("fake plexusd serves");
        });
    }

    /// A snapshot of the recorded calls.
    pub fn calls(&self) -> Vec<Recorded> {
        self.calls.lock().unwrap().clone()
    }

    /// Changes the behaviour.
    pub fn set(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self.behaviour.lock().unwrap());
    }

    /// Waits until `pred` holds for the recorded calls.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[Recorded]) -> bool) -> Vec<Recorded> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let calls = self.calls();
            if pred(&calls) {
                return calls;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; calls: {calls:#?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn record(&self, r: Recorded) {
        self.calls.lock().unwrap().push(r);
    }

    fn behaviour(&self) -> Behaviour {
        self.behaviour.lock().unwrap().clone()
    }
}

fn meta(req: &Request<impl Sized>, key: &str) -> Option<String> {
    req.metadata()
        .get(key)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[tonic::async_trait]
impl Node for FakeNode {
    async fn setup_pod(
        &self,
        request: Request<SetupPodRequest>,
    ) -> Result<Response<SetupPodResponse>, tonic::Status> {
        self.record(Recorded::Setup {
            traceparent: meta(&request, "traceparent"),
            grpc_timeout: meta(&request, "grpc-timeout"),
            req: request.get_ref().clone(),
        });
        let b = self.behaviour();
        tokio::time::sleep(b.setup_delay).await;
        if let Some(hold) = &b.setup_hold {
            hold.wait().await;
        }
        if let Some(err) = b.setup_error {
            return Err(err);
        }
        let req = request.into_inner();
        if b.setup_finishing && req.may_finish_later {
            return Ok(Response::new(SetupPodResponse {
                finishing: true,
                ..Default::default()
            }));
        }
        self.known.lock().unwrap().insert(req.sandbox_id.clone());
        Ok(Response::new(SetupPodResponse {
            attachments: vec![Attachment {
                sandbox_id: req.sandbox_id,
                interface: "net1".into(),
                ..Default::default()
            }],
            network_status: "[]".into(),
            finishing: false,
            stop_at_once: b.stop_at_once,
        }))
    }

    async fn teardown_pod(
        &self,
        request: Request<TeardownPodRequest>,
    ) -> Result<Response<TeardownPodResponse>, tonic::Status> {
        let req = request.into_inner();
        self.record(Recorded::Teardown(req.clone()));
        let b = self.behaviour();
        tokio::time::sleep(b.teardown_delay).await;
        if let Some(hold) = &b.teardown_hold {
            hold.wait().await;
        }
        if let Some(err) = b.teardown_error {
            return Err(err);
        }
        let known = self.known.lock().unwrap().remove(&req.sandbox_id);
        Ok(Response::new(TeardownPodResponse {
            removed: Vec::new(),
            known,
        }))
    }

    async fn reconcile(
        &self,
        request: Request<ReconcileRequest>,
    ) -> Result<Response<ReconcileResponse>, tonic::Status> {
        self.record(Recorded::ReconcileStart(request.into_inner()));
        let b = self.behaviour();
        tokio::time::sleep(b.reconcile_delay).await;
        if let Some(hold) = &b.reconcile_hold {
            hold.wait().await;
        }
        self.record(Recorded::ReconcileEnd);
        Ok(Response::new(ReconcileResponse::default()))
    }

    async fn cni(&self, _: Request<CniRequest>) -> Result<Response<CniResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("fake"))
    }

    async fn attach(
        &self,
        _: Request<AttachRequest>,
    ) -> Result<Response<AttachResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("fake"))
    }

    async fn detach(
        &self,
        _: Request<DetachRequest>,
    ) -> Result<Response<DetachResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("fake"))
    }

    async fn list_attachments(
        &self,
        _: Request<ListAttachmentsRequest>,
    ) -> Result<Response<ListAttachmentsResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("fake"))
    }

    async fn explain(
        &self,
        _: Request<ExplainRequest>,
    ) -> Result<Response<ExplainResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("fake"))
    }

    type WatchStream = tokio_stream::Pending<Result<WatchEvent, tonic::Status>>;

    async fn watch(
        &self,
        _: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("fake"))
    }

    async fn get_status(
        &self,
        _: Request<plexus_proto::v1::GetStatusRequest>,
    ) -> Result<Response<plexus_proto::v1::GetStatusResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("fake"))
    }
}

/// Temp dir with socket paths for one test.
pub struct Sockets {
    pub dir: tempfile::TempDir,
    pub nri: PathBuf,
    pub plexusd: PathBuf,
}

impl Sockets {
    /// Fresh paths.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let nri = dir.path().join("nri.sock");
        let plexusd = dir.path().join("plexus.sock");
        Self { dir, nri, plexusd }
    }
}

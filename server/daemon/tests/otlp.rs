//! One traced SetupPod through the real gRPC service on a unix socket, exported over OTLP/gRPC
//! to a real test collector: the RPC span continues the `traceparent` the client sent, carries
//! the pod's identity, and the attachment and delegate spans made while the attacher works hang
//! below it. The attacher is the recording fake wrapped so it makes the spans the engine makes
//! (`plexus_telemetry::test_util::{attachment_span, delegate_span}`), so no root is needed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use plexus_core::plan::{Plan, PlannedAttachment};
use plexus_core::pod::PodIdentity;
use plexus_proto::v1;
use plexus_server::attacher::Attacher;
use plexus_server::model::{
    AttachmentView, RecoveryOutcome, SandboxSpec, SandboxView, TeardownOutcome,
};
use plexus_server::node::{Limits, Node};
use plexus_server::planner::{Explanation, Planner};
use plexus_server::server::{Access, Socket, serve};
use plexus_server::test_util::{FakeAttacher, FakePlanner};
use plexus_telemetry::test_util::{OtlpReceiver, ReceivedSpan};
use plexus_telemetry::test_util::{attachment_span, delegate_span, record_outcome};
use plexus_telemetry::{LogFormat, TelemetryConfig};
use tracing::Instrument as _;

const WAIT: Duration = Duration::from_secs(20);
const PARENT: &str = "00f067aa0ba902b7";

/// The recording fake attacher, making one `attachment` span per planned attachment and, for the ones
/// not handled natively, a `delegate` span per plugin, as the engine does.
#[derive(Debug, Default)]
struct TracedAttacher(FakeAttacher);

fn driver(planned: &PlannedAttachment) -> &'static str {
    let native = ["macvlan", "bridge", "host-device", "ipvlan", "vlan"];
    let all_native = planned
        .config
        .plugin_types
        .iter()
        .all(|t| native.contains(&t.as_str()));
    if planned.force_exec || !all_native {
        "exec"
    } else {
        "native"
    }
}

impl Attacher for TracedAttacher {
    async fn recover(&self) -> plexus_server::Result<RecoveryOutcome> {
        self.0.recover().await
    }

    async fn lock(&self, sandbox_id: &plexus_core::SandboxId) -> plexus_engine::SandboxLock {
        self.0.lock(sandbox_id).await
    }

    async fn setup(
        &self,
        lock: &plexus_engine::SandboxLock,
        spec: SandboxSpec,
        plan: Plan,
        deadline: Option<plexus_core::deadline::Deadline>,
    ) -> plexus_server::Result<plexus_server::attacher::SetupDone> {
        for planned in &plan.attachments {
            let driver = driver(planned);
            let span = attachment_span(&planned.network, &planned.interface, driver);
            async {
                if driver == "exec" {
                    for plugin in &planned.config.plugin_types {
                        let delegate = delegate_span(plugin, "ADD");
                        record_outcome(&delegate, "ok");
                    }
                }
            }
            .instrument(span.clone())
            .await;
            record_outcome(&span, "ok");
        }
        self.0.setup(lock, spec, plan, deadline).await
    }

    async fn teardown(
        &self,
        lock: &plexus_engine::SandboxLock,
        links: plexus_engine::LinkDeletion,
        deadline: Option<plexus_core::deadline::Deadline>,
    ) -> plexus_server::Result<TeardownOutcome> {
        self.0.teardown(lock, links, deadline).await
    }

    async fn attach(
        &self,
        lock: &plexus_engine::SandboxLock,
        attachment: PlannedAttachment,
        deadline: Option<plexus_core::deadline::Deadline>,
    ) -> plexus_server::Result<AttachmentView> {
        self.0.attach(lock, attachment, deadline).await
    }

    async fn detach(
        &self,
        lock: &plexus_engine::SandboxLock,
        interface: plexus_core::InterfaceName,
        deadline: Option<plexus_core::deadline::Deadline>,
    ) -> plexus_server::Result<AttachmentView> {
        self.0.detach(lock, interface, deadline).await
    }

    fn sandboxes(&self) -> plexus_server::Result<Vec<SandboxView>> {
        self.0.sandboxes()
    }

    fn sandbox(
        &self,
        sandbox_id: &plexus_core::SandboxId,
    ) -> plexus_server::Result<Option<SandboxView>> {
        self.0.sandbox(sandbox_id)
    }
}

/// The fake planner, except that networks named `sriov*` are delegated to the `sriov` plugin.
#[derive(Debug, Default)]
struct SriovPlanner(FakePlanner);

fn sriov(mut planned: PlannedAttachment) -> PlannedAttachment {
    if planned
        .network
        .split('/')
        .nth(1)
        .is_some_and(|n| n.starts_with("sriov"))
    {
        planned.config.plugin_types = vec!["sriov".to_owned()];
    }
    planned
}

impl Planner for SriovPlanner {
    fn plan(
        &self,
        pod: &PodIdentity,
        annotations: &BTreeMap<String, String>,
    ) -> plexus_server::Result<Plan> {
        let mut plan = self.0.plan(pod, annotations)?;
        plan.attachments = plan.attachments.into_iter().map(sriov).collect();
        Ok(plan)
    }

    fn plan_one(
        &self,
        pod: &PodIdentity,
        selection: &str,
        present: &[String],
    ) -> plexus_server::Result<PlannedAttachment> {
        self.0.plan_one(pod, selection, present).map(sriov)
    }

    fn explain(&self, pod: &PodIdentity, annotations: &BTreeMap<String, String>) -> Explanation {
        self.0.explain(pod, annotations)
    }

    fn network_status(&self, sandbox: &SandboxView) -> plexus_server::Result<String> {
        self.0.network_status(sandbox)
    }
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_pod_continues_the_callers_trace_down_to_attachments() {
    let receiver = OtlpReceiver::start().await;
    let guard = plexus_telemetry::init(TelemetryConfig {
        service_name: "plexusd".to_owned(),
        log_format: LogFormat::Human,
        log_filter: "warn".to_owned(),
        otlp_endpoint: Some(receiver.endpoint()),
    })
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plexus.sock");
    let socket = Socket::bind(&path).await.unwrap();
    let node = Node::new(
        Arc::new(TracedAttacher::default()),
        Arc::new(SriovPlanner::default()),
        Limits {
            max_parallel: 4,
            max_queued: 4,
            setup_budget: None,
        },
    );
    let uid = nix::unistd::geteuid().as_raw();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        socket,
        node,
        Access::root_and(vec![uid]),
        Default::default(),
        async {
            let _ = stopped.await;
        },
    ));

    let trace_id = format!("{:08x}5e7a00000000000000000001", std::process::id());
    let mut client = plexus_client::connect(&path).await.unwrap();
    let mut request = tonic::Request::new(v1::SetupPodRequest {
        pod: Some(v1::PodRef {
            namespace: "default".to_owned(),
            name: "web-0".to_owned(),
            uid: "0b7c5e2e-1111-4c4c-9b9b-000000000001".to_owned(),
        }),
        sandbox_id: "sandbox-otlp-1".to_owned(),
        netns_path: "/var/run/netns/test-otlp".to_owned(),
        annotations: [(
            "k8s.v1.cni.cncf.io/networks".to_owned(),
            "macvlan-conf@net1,default/sriov-net@net2".to_owned(),
        )]
        .into(),
        labels: Default::default(),
        may_finish_later: false,
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{PARENT}-01").parse().unwrap(),
    );
    let answer = client.setup_pod(request).await.unwrap().into_inner();
    assert_eq!(answer.attachments.len(), 2, "{answer:?}");

    guard.flush().await.unwrap();
    let spans = receiver.wait_for_spans(4, WAIT).await;

    let rpc = spans
        .iter()
        .find(|s| s.attributes.get("rpc.method").map(String::as_str) == Some("SetupPod"))
        .unwrap_or_else(|| panic!("no span with rpc.method=SetupPod in {spans:#?}"));
    assert_eq!(
        (rpc.trace_id.as_str(), rpc.parent_span_id.as_str()),
        (trace_id.as_str(), PARENT),
        "the SetupPod span does not continue the caller's traceparent: service.rs must make it \
         with plexus_telemetry::rpc_span(\"plexus.v1.Node\", \"SetupPod\", request.metadata()) \
         (before into_inner) and plexus_telemetry::record_pod"
    );
    assert_eq!(rpc.name, "plexus.v1.Node/SetupPod");
    assert_eq!(rpc.kind, 2, "rpc span is a server span");
    assert_eq!(rpc.service_name, "plexusd");
    assert_eq!(rpc.resource["service.version"], env!("CARGO_PKG_VERSION"));
    assert!(!rpc.resource["host.name"].is_empty(), "{:?}", rpc.resource);
    assert_eq!(rpc.attr("rpc.system"), "grpc");
    assert_eq!(rpc.attr("k8s.namespace.name"), "default");
    assert_eq!(rpc.attr("k8s.pod.name"), "web-0");
    assert_eq!(rpc.attr("plexus.sandbox.id"), "sandbox-otlp-1");
    assert_eq!(
        rpc.attr("k8s.pod.uid"),
        "0b7c5e2e-1111-4c4c-9b9b-000000000001"
    );
    assert_eq!(rpc.attr("rpc.grpc.status_code"), "0");
    assert_eq!(rpc.attr("trace_id"), trace_id);
    assert_eq!(rpc.status_code, 0, "no ERROR status on a successful call");
    // The layer's bookkeeping is not exported as attributes.
    for noise in [
        "busy_ns",
        "idle_ns",
        "code.filepath",
        "code.lineno",
        "thread.id",
        "thread.name",
        "target",
    ] {
        assert!(
            !rpc.attributes.contains_key(noise),
            "{noise} in {:?}",
            rpc.attributes
        );
    }

    for attachment in spans.iter().filter(|s| s.name.starts_with("attach ")) {
        assert_eq!(
            attachment.parent_span_id, rpc.span_id,
            "spans made inside the attacher are not children of the rpc span: the tokio::spawn \
             in Node::run must carry the caller's span (spawn `fut.in_current_span()`, \
             tracing::Instrument)"
        );
    }
    let spans = receiver.trace(&trace_id);
    let native = named(&spans, "attach default/macvlan-conf");
    assert_eq!(native.len(), 1, "{spans:#?}");
    assert_eq!(
        native[0].parent_span_id, rpc.span_id,
        "attachment under the rpc span"
    );
    assert_eq!(native[0].attr("network.interface.name"), "net1");
    assert_eq!(native[0].attr("plexus.driver"), "native");
    assert_eq!(native[0].attr("plexus.outcome"), "ok");

    let exec = named(&spans, "attach default/sriov-net");
    assert_eq!(exec.len(), 1, "{spans:#?}");
    assert_eq!(
        exec[0].parent_span_id, rpc.span_id,
        "attachment under the rpc span"
    );
    assert_eq!(exec[0].attr("network.interface.name"), "net2");
    assert_eq!(exec[0].attr("plexus.driver"), "exec");
    let delegate = named(&spans, "ADD sriov");
    assert_eq!(delegate.len(), 1, "{spans:#?}");
    assert_eq!(
        delegate[0].parent_span_id, exec[0].span_id,
        "delegate under its attachment"
    );
    assert_eq!(delegate[0].attr("plexus.cni.plugin"), "sriov");
    assert_eq!(delegate[0].attr("plexus.outcome"), "ok");

    drop(client);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    guard.shutdown().await.unwrap();
}

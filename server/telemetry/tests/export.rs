//! `init` with an OTLP endpoint exports spans, made with this crate's constructors the way the
//! server makes them, to a real OTLP/gRPC collector with the documented structure: the RPC span
//! continues the caller's `traceparent`, attachment spans are its children, delegate spans
//! theirs, and a client call made inside a span carries that span as parent.
//!
//! One process-wide subscriber exports to one test collector; both live on one shared runtime
//! (the exporter's gRPC channel is bound to the runtime it was created on). Each test makes its
//! own trace id and looks only at that trace.

use std::sync::OnceLock;
use std::time::Duration;

use plexus_telemetry::test_util::{
    OtlpReceiver, ReceivedSpan, attachment_span, delegate_span, record_outcome,
};
use plexus_telemetry::{Guard, TelemetryConfig, inject_context, record_pod, rpc_span};
use tonic::metadata::MetadataMap;
use tracing::Instrument as _;

const SERVICE: &str = "plexus.v1.Node";
const WAIT: Duration = Duration::from_secs(20);

struct Harness {
    runtime: tokio::runtime::Runtime,
    receiver: OtlpReceiver,
    guard: Guard,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (receiver, guard) = runtime.block_on(async {
            let receiver = OtlpReceiver::start().await;
            let guard = plexus_telemetry::init(TelemetryConfig {
                service_name: "plexusd-test".to_owned(),
                log_format: plexus_telemetry::LogFormat::Json,
                log_filter: "warn".to_owned(),
                otlp_endpoint: Some(receiver.endpoint()),
            })
            .unwrap();
            (receiver, guard)
        });
        assert!(guard.is_exporting());
        Harness {
            runtime,
            receiver,
            guard,
        }
    })
}

/// A caller's trace context: unique trace id per call (pid + counter), fixed parent span id.
fn caller_context(salt: u32) -> (String, String, MetadataMap) {
    let trace_id = format!("{:08x}{:08x}0000000000000a11", std::process::id(), salt);
    let parent = "00f067aa0ba902b7".to_owned();
    let mut metadata = MetadataMap::new();
    metadata.insert(
        "traceparent",
        format!("00-{trace_id}-{parent}-01").parse().unwrap(),
    );
    (trace_id, parent, metadata)
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.name == name).collect()
}

/// Asserts the RPC → attachment → delegate tree of one traced SetupPod and returns the RPC span.
fn assert_setup_tree<'a>(
    spans: &'a [ReceivedSpan],
    parent: &str,
    sandbox: &str,
) -> &'a ReceivedSpan {
    let rpc = named(spans, "plexus.v1.Node/SetupPod");
    assert_eq!(rpc.len(), 1, "one rpc span in {spans:#?}");
    let rpc = rpc[0];
    assert_eq!(
        rpc.parent_span_id, parent,
        "rpc span continues the caller's span"
    );
    assert_eq!(rpc.kind, 2, "rpc span is a server span");
    assert_eq!(rpc.service_name, "plexusd-test");
    assert_eq!(rpc.attr("rpc.system"), "grpc");
    assert_eq!(rpc.attr("rpc.method"), "SetupPod");
    assert_eq!(rpc.attr("k8s.namespace.name"), "default");
    assert_eq!(rpc.attr("k8s.pod.name"), "web-0");
    assert_eq!(rpc.attr("plexus.sandbox.id"), sandbox);

    let attachments = named(spans, "attach default/macvlan-conf")
        .into_iter()
        .chain(named(spans, "attach default/flaky"))
        .collect::<Vec<_>>();
    assert_eq!(attachments.len(), 2, "two attachment spans in {spans:#?}");
    for attachment in &attachments {
        assert_eq!(attachment.parent_span_id, rpc.span_id, "{attachment:#?}");
    }
    let native = named(spans, "attach default/macvlan-conf")[0];
    assert_eq!(native.attr("plexus.network"), "default/macvlan-conf");
    assert_eq!(native.attr("network.interface.name"), "net1");
    assert_eq!(native.attr("plexus.driver"), "native");
    assert_eq!(native.attr("plexus.outcome"), "ok");
    let exec = named(spans, "attach default/flaky")[0];
    assert_eq!(exec.attr("plexus.driver"), "exec");
    assert_eq!(exec.attr("network.interface.name"), "net2");

    let delegate = named(spans, "ADD sriov");
    assert_eq!(delegate.len(), 1, "one delegate span in {spans:#?}");
    assert_eq!(delegate[0].parent_span_id, exec.span_id);
    assert_eq!(delegate[0].attr("plexus.cni.plugin"), "sriov");
    assert_eq!(delegate[0].attr("plexus.cni.command"), "ADD");
    assert_eq!(delegate[0].attr("plexus.outcome"), "ok");
    rpc
}

#[test]
fn spans_made_like_the_server_reach_the_collector_as_one_tree() {
    let h = harness();
    let (trace_id, parent, metadata) = caller_context(1);
    let outgoing = h.runtime.block_on(async {
        let rpc = rpc_span(SERVICE, "SetupPod", &metadata);
        record_pod(&rpc, "default", "web-0", "uid-1", "sandbox-1");
        let outgoing = async {
            let native = attachment_span("default/macvlan-conf", "net1", "native");
            async { tokio::time::sleep(Duration::from_millis(1)).await }
                .instrument(native.clone())
                .await;
            record_outcome(&native, "ok");
            drop(native);

            let exec = attachment_span("default/flaky", "net2", "exec");
            let outgoing = async {
                let delegate = delegate_span("sriov", "ADD");
                let mut outgoing = MetadataMap::new();
                delegate.in_scope(|| inject_context(&mut outgoing));
                record_outcome(&delegate, "ok");
                outgoing
            }
            .instrument(exec.clone())
            .await;
            record_outcome(&exec, "ok");
            outgoing
        }
        .instrument(rpc)
        .await;
        h.guard.flush().await.unwrap();
        outgoing
    });

    let spans = h
        .runtime
        .block_on(h.receiver.wait_for_trace(&trace_id, 4, WAIT));
    assert_setup_tree(&spans, &parent, "sandbox-1");
    let delegate = named(&spans, "ADD sriov")[0];
    assert_eq!(
        outgoing.get("traceparent").unwrap().to_str().unwrap(),
        format!("00-{trace_id}-{}-01", delegate.span_id),
        "a client call made inside the delegate span carries the delegate as parent"
    );
}

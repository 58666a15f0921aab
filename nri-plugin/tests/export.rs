//! plexus-nri exports each pod event's span to a real OTLP/gRPC collector (the test
//! receiver of plexus-telemetry on 127.0.0.1), and the `traceparent` it sends plexusd is
//! that span's context, so plexusd's spans hang below the runtime's event instead of
//! pointing at a parent that never reaches the backend. A failed setup is an ERROR span.
//! The plugin runs in-process between the fake runtime and the fake plexusd.

mod support;

use std::sync::Arc;
use std::time::Duration;

use plexus_nri::{Config, Plugin};
use plexus_proto::nri::Event;
use plexus_telemetry::test_util::OtlpReceiver;
use plexus_telemetry::{LogFormat, TelemetryConfig};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_span_is_exported_and_is_plexusds_parent() {
    let receiver = OtlpReceiver::start().await;
    let guard = plexus_telemetry::init(TelemetryConfig {
        service_name: "plexus-nri".to_owned(),
        log_format: LogFormat::Human,
        log_filter: "warn".to_owned(),
        otlp_endpoint: Some(receiver.endpoint()),
    })
    .unwrap();
    let sockets = Sockets::new();
    let node = FakeNode::default();
    node.serve(&sockets.plexusd);
    let runtime = FakeRuntime::bind(&sockets.nri);
    let plugin = Arc::new(
        Plugin::new(Config {
            nri_socket: sockets.nri.clone(),
            plexusd_socket: sockets.plexusd.clone(),
            ..Config::default()
        })
        .unwrap(),
    );
    let task = tokio::spawn(async move { plugin.run().await });
    let mut conn = runtime.accept().await;
    conn.registered().await;
    conn.configure(0).await;

    let ok = pod("sb-ok", Some("/var/run/netns/cni-ok"), Some("iot"));
    conn.event(Event::RunPodSandbox as i32, &ok)
        .await
        .expect("run succeeds");
    node.set(|b| b.setup_error = Some(tonic::Status::not_found("network iot not found")));
    let bad = pod("sb-bad", Some("/var/run/netns/cni-bad"), Some("iot"));
    assert!(conn.event(Event::RunPodSandbox as i32, &bad).await.is_err());

    let sent: Vec<String> = node
        .calls()
        .iter()
        .filter_map(|c| match c {
            Recorded::Setup { traceparent, .. } => traceparent.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 2, "{sent:?}");
    guard.flush().await.unwrap();
    let spans = receiver.wait_for_spans(2, Duration::from_secs(20)).await;
    for (traceparent, sandbox, failed) in [(&sent[0], "sb-ok", false), (&sent[1], "sb-bad", true)] {
        // 00-<trace id>-<parent span id>-01
        let (trace_id, parent) = (&traceparent[3..35], &traceparent[36..52]);
        let span = spans
            .iter()
            .find(|s| s.trace_id == trace_id)
            .unwrap_or_else(|| panic!("no exported span of trace {trace_id}: {spans:#?}"));
        assert_eq!(
            span.span_id, parent,
            "plexusd's parent is the exported event span"
        );
        assert_eq!(
            span.parent_span_id, "",
            "the event span is the trace's root"
        );
        assert_eq!(span.name, "nri RunPodSandbox");
        assert_eq!(span.kind, 2, "server span");
        assert_eq!(span.service_name, "plexus-nri");
        assert_eq!(span.attr("plexus.sandbox.id"), sandbox);
        assert_eq!(span.attr("k8s.namespace.name"), "prod");
        assert_eq!(span.attr("k8s.pod.name"), format!("pod-{sandbox}"));
        assert_eq!(span.attr("k8s.pod.uid"), format!("uid-{sandbox}"));
        assert_eq!(span.attr("trace_id"), trace_id);
        match failed {
            true => {
                assert_eq!(span.status_code, 2, "ERROR status on the failed event");
                assert!(
                    span.status_message.contains("network iot not found"),
                    "{span:#?}"
                );
            }
            false => assert_eq!(span.status_code, 0, "{span:#?}"),
        }
    }
    task.abort();
    guard.shutdown().await.unwrap();
}

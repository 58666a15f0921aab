//! Without an OTLP endpoint `init` exports nothing: no OpenTelemetry layer is installed, so spans
//! carry no trace context to propagate, and a second `init` in the same process is refused.

use plexus_telemetry::{Error, LogFormat, TelemetryConfig, inject_context, rpc_span};
use tonic::metadata::MetadataMap;

#[test]
fn without_an_endpoint_nothing_is_traced_and_init_runs_once() {
    let guard = plexus_telemetry::init(TelemetryConfig {
        service_name: "plexusd-test".to_owned(),
        log_format: LogFormat::Human,
        log_filter: "info".to_owned(),
        otlp_endpoint: None,
    })
    .unwrap();
    assert!(!guard.is_exporting());

    let mut incoming = MetadataMap::new();
    incoming.insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    let span = rpc_span("plexus.v1.Node", "SetupPod", &incoming);
    let mut outgoing = MetadataMap::new();
    span.in_scope(|| inject_context(&mut outgoing));
    assert!(
        outgoing.get("traceparent").is_none(),
        "no exporter, so no trace context: {outgoing:?}"
    );

    let again = plexus_telemetry::init(TelemetryConfig::new("plexusd-test"));
    assert!(
        matches!(again, Err(Error::InstallSubscriber { .. })),
        "{again:?}"
    );
}

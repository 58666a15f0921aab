//! Dropping the [`Guard`](plexus_telemetry::Guard) inside a multi-threaded runtime flushes the
//! spans still buffered in the batch processor to the collector (what plexusd relies on when it
//! exits), without an explicit flush.

use std::time::Duration;

use plexus_telemetry::test_util::OtlpReceiver;
use plexus_telemetry::test_util::delegate_span;
use plexus_telemetry::{LogFormat, TelemetryConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_guard_exports_buffered_spans() {
    let receiver = OtlpReceiver::start().await;
    let guard = plexus_telemetry::init(TelemetryConfig {
        service_name: "plexusd-test".to_owned(),
        log_format: LogFormat::Human,
        log_filter: "warn".to_owned(),
        otlp_endpoint: Some(receiver.endpoint()),
    })
    .unwrap();
    drop(delegate_span("bridge", "DEL"));
    // The batch processor exports every 5 s by default: without the flush on drop nothing
    // would have arrived yet.
    assert!(receiver.spans().is_empty());
    drop(guard);
    let spans = receiver.wait_for_spans(1, Duration::from_secs(2)).await;
    assert_eq!(spans[0].name, "DEL bridge");
    assert_eq!(spans[0].attr("plexus.cni.plugin"), "bridge");
    assert_eq!(spans[0].service_name, "plexusd-test");
}

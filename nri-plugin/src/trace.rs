//! W3C trace context for one pod event. Each event runs in its own span ([`event_span`]);
//! when plexus-nri exports spans (`--otlp-endpoint`), that span is the root of the pod
//! event's trace and its context goes to plexusd as `traceparent` metadata, so plexusd's
//! spans hang below it. Without export a fresh random `traceparent` still goes along, so
//! plexusd's log lines of one event share a trace id.

use std::collections::hash_map::RandomState;

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tonic::metadata::MetadataMap;
use tracing::field::Empty;

/// gRPC metadata key of the trace context.
pub const TRACEPARENT_KEY: &str = "traceparent";

/// A sampled W3C trace context (version 00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// 16-byte trace id, never all zero.
    pub trace_id: u128,
    /// 8-byte parent span id, never zero.
    pub span_id: u64,
}

impl TraceParent {
    /// A new random trace and span id.
    pub fn random() -> Self {
        let trace_id = (u128::from(random_u64()) << 64) | u128::from(random_u64());
        Self {
            trace_id: trace_id.max(1),
            span_id: random_u64().max(1),
        }
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{:032x}-{:016x}-01", self.trace_id, self.span_id)
    }
}

/// The span of one pod event (`RunPodSandbox`, `StopPodSandbox`, ...), exported as
/// `nri <event>` with kind server and the pod's `k8s.*` identity; `trace_id` and a failure
/// status are recorded by [`traceparent_for`] and `plexus_telemetry::record_error`.
pub fn event_span(
    event: &str,
    namespace: &str,
    name: &str,
    uid: &str,
    sandbox: &str,
) -> tracing::Span {
    tracing::info_span!(
        "nri_event",
        otel.name = format!("nri {event}"),
        otel.kind = "server",
        otel.status_code = Empty,
        otel.status_description = Empty,
        nri.event = event,
        k8s.namespace.name = namespace,
        k8s.pod.name = name,
        k8s.pod.uid = uid,
        plexus.sandbox.id = sandbox,
        trace_id = Empty,
    )
}

/// The `traceparent` to send for the work of `span`: the span's own context when spans are
/// exported, else a fresh random one. Its trace id is recorded on the span as `trace_id`.
pub fn traceparent_for(span: &tracing::Span) -> String {
    let mut metadata = MetadataMap::new();
    plexus_telemetry::inject_span_context(span, &mut metadata);
    let traceparent = metadata
        .get(TRACEPARENT_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| TraceParent::random().to_string());
    if let Some(id) = traceparent.get(3..35) {
        span.record("trace_id", id);
    }
    traceparent
}

/// 64 random bits from std's randomly keyed SipHash over a counter and the clock; not
/// cryptographic, unique enough for trace ids.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    hasher.write_u128(nanos);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_has_the_w3c_shape() {
        let tp = TraceParent {
            trace_id: 0x0af7651916cd43dd8448eb211c80319c,
            span_id: 0xb7ad6b7169203331,
        };
        assert_eq!(
            tp.to_string(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
    }

    #[test]
    fn without_export_the_traceparent_is_random_and_its_trace_id_recorded() {
        let span = event_span("RunPodSandbox", "default", "web-0", "uid-1", "sb1");
        let a = traceparent_for(&span);
        let b = traceparent_for(&span);
        assert_ne!(a, b);
        assert_eq!(a.len(), 55);
        assert!(a.starts_with("00-") && a.ends_with("-01"), "{a}");
    }

    #[test]
    fn random_traceparents_differ() {
        let a = TraceParent::random();
        let b = TraceParent::random();
        assert_ne!(a, b);
        assert_eq!(a.to_string().len(), 55);
    }
}

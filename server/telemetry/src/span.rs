//! The RPC span every node-service request runs in, named and attributed as
//! `docs/telemetry.md` documents (OpenTelemetry semantic conventions where they apply, own
//! attributes under `plexus.`). The engine makes the spans below it (`attachment`,
//! `delegate`, `native`) itself with `tracing::info_span!`, because it does not depend on
//! this crate; test stand-ins for those live in `test_util`.

use opentelemetry::trace::TraceContextExt as _;
use tonic::metadata::MetadataMap;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::propagation::set_parent_from_metadata;

/// The span of one node-API RPC (`rpc`), continuing the caller's trace from `metadata`.
///
/// Fields: `rpc.system="grpc"`, `rpc.service`, `rpc.method`, `rpc.grpc.status_code` (see
/// [`record_rpc_status`]), `k8s.namespace.name`, `k8s.pod.name`, `k8s.pod.uid`,
/// `plexus.sandbox.id` (see [`record_pod`]), and `trace_id` (the trace's id in hex, so log
/// lines inside the span can be joined with the exported trace). The exported span is
/// named `<service>/<method>` and has kind server.
pub fn rpc_span(service: &str, method: &str, metadata: &MetadataMap) -> tracing::Span {
    let span = tracing::info_span!(
        "rpc",
        otel.name = format!("{service}/{method}"),
        otel.kind = "server",
        otel.status_code = Empty,
        otel.status_description = Empty,
        error.type = Empty,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        rpc.grpc.status_code = Empty,
        k8s.namespace.name = Empty,
        k8s.pod.name = Empty,
        k8s.pod.uid = Empty,
        plexus.sandbox.id = Empty,
        trace_id = Empty,
    );
    set_parent_from_metadata(&span, metadata);
    if let Some(id) = trace_id(&span, metadata) {
        span.record("trace_id", id.as_str());
    }
    span
}

/// The span's trace id: the exported one when spans are exported, else the caller's from
/// its `traceparent` (so logs carry it even without an exporter).
fn trace_id(span: &tracing::Span, metadata: &MetadataMap) -> Option<String> {
    let context = span.context();
    let exported = context.span().span_context().trace_id();
    if exported != opentelemetry::trace::TraceId::INVALID {
        return Some(format!("{exported}"));
    }
    let traceparent = metadata.get("traceparent")?.to_str().ok()?;
    let mut parts = traceparent.split('-');
    let (_version, id) = (parts.next()?, parts.next()?);
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && id != "0".repeat(32))
        .then(|| id.to_ascii_lowercase())
}

/// Records the pod a request is about on its [`rpc_span`]; empty values are left unset.
pub fn record_pod(span: &tracing::Span, namespace: &str, name: &str, uid: &str, sandbox_id: &str) {
    for (field, value) in [
        ("k8s.namespace.name", namespace),
        ("k8s.pod.name", name),
        ("k8s.pod.uid", uid),
        ("plexus.sandbox.id", sandbox_id),
    ] {
        if !value.is_empty() {
            span.record(field, value);
        }
    }
}

/// Records how an [`rpc_span`]'s call ended: `rpc.grpc.status_code` (0 for OK), and for a
/// failure status ERROR with `message` as its description and `error_type` (a short fixed
/// reason, or the gRPC code's name) as `error.type`.
pub fn record_rpc_status(span: &tracing::Span, code: tonic::Code, failure: Option<(&str, &str)>) {
    span.record("rpc.grpc.status_code", code as i64);
    if let Some((error_type, message)) = failure {
        record_error(span, message);
        span.record("error.type", error_type);
    }
}

/// Marks `span` failed: exported status ERROR with `message` as its description (the span
/// must declare `otel.status_code` and `otel.status_description`).
pub fn record_error(span: &tracing::Span, message: &str) {
    span.record("otel.status_code", "ERROR");
    span.record("otel.status_description", message);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_id_without_an_exporter_comes_from_the_callers_traceparent() {
        let mut md = MetadataMap::new();
        md.insert(
            "traceparent",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"
                .parse()
                .unwrap(),
        );
        let span = tracing::info_span!("t");
        assert_eq!(
            trace_id(&span, &md).as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        for bad in [
            "garbage",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-xyz-b7ad6b7169203331-01",
        ] {
            md.insert("traceparent", bad.parse().unwrap());
            assert_eq!(trace_id(&span, &md), None, "{bad}");
        }
        assert_eq!(trace_id(&span, &MetadataMap::new()), None);
    }
}

//! Constructors for the three kinds of spans plexus emits, so their names and field names stay
//! the same wherever they are created (see the crate docs for the conventions). These only
//! create `tracing` spans; whether they are exported is decided by [`init`](crate::init).
//! Code that does not depend on this crate (the engine) may create the same spans with
//! `tracing::info_span!` and the field names documented on each function.

use tonic::metadata::MetadataMap;
use tracing::field::Empty;

use crate::propagation::set_parent_from_metadata;

/// Outcome recorded on attachment and delegate spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The step completed.
    Ok,
    /// The step failed.
    Error,
    /// The step was undone after a later step failed.
    Undone,
}

impl Outcome {
    /// The value written to the `outcome` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Undone => "undone",
        }
    }
}

/// The span of one node-API RPC (`rpc`), continuing the caller's trace from `metadata`.
///
/// Fields: `rpc.system="grpc"`, `rpc.service`, `rpc.method`, and `pod.namespace`, `pod.name`,
/// `sandbox.id` (fill them with [`record_pod`] once the request is decoded). The exported span is
/// named `<service>/<method>` and has kind server.
pub fn rpc_span(service: &str, method: &str, metadata: &MetadataMap) -> tracing::Span {
    let span = tracing::info_span!(
        "rpc",
        otel.name = format!("{service}/{method}"),
        otel.kind = "server",
        otel.status_code = Empty,
        otel.status_description = Empty,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        pod.namespace = Empty,
        pod.name = Empty,
        sandbox.id = Empty,
    );
    set_parent_from_metadata(&span, metadata);
    span
}

/// Records the pod a request is about on its [`rpc_span`]; empty values are left unset.
pub fn record_pod(span: &tracing::Span, namespace: &str, name: &str, sandbox_id: &str) {
    for (field, value) in [
        ("pod.namespace", namespace),
        ("pod.name", name),
        ("sandbox.id", sandbox_id),
    ] {
        if !value.is_empty() {
            span.record(field, value);
        }
    }
}

/// Marks an [`rpc_span`] as failed: exported status ERROR with `message` as its description.
pub fn record_rpc_error(span: &tracing::Span, message: &str) {
    span.record("otel.status_code", "ERROR");
    span.record("otel.status_description", message);
}

/// The span of one attachment (`attachment`), a child of the current span.
///
/// Fields: `network` (`namespace/name`), `interface` (name in the pod), `driver`
/// (`native`|`exec`), `outcome` (see [`record_outcome`]).
pub fn attachment_span(network: &str, interface: &str, driver: &str) -> tracing::Span {
    tracing::info_span!(
        "attachment",
        otel.name = format!("attach {network}"),
        network = network,
        interface = interface,
        driver = driver,
        outcome = Empty,
    )
}

/// The span of one CNI delegate invocation (`delegate`), a child of the current span.
///
/// Fields: `plugin.type` (the CNI `type`), `cni.command` (`ADD`|`DEL`|`CHECK`), `outcome`.
pub fn delegate_span(plugin_type: &str, command: &str) -> tracing::Span {
    tracing::info_span!(
        "delegate",
        otel.name = format!("{command} {plugin_type}"),
        plugin.type = plugin_type,
        cni.command = command,
        outcome = Empty,
    )
}

/// Records how an attachment or delegate step ended.
pub fn record_outcome(span: &tracing::Span, outcome: Outcome) {
    span.record("outcome", outcome.as_str());
}

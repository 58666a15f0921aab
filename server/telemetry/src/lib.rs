//! Observability for plexus: tracing setup, OTLP span export, W3C trace-context propagation over
//! gRPC metadata, and Prometheus metrics with a tiny scrape endpoint. This crate wires and names
//! things; it makes no networking decisions and knows nothing of pods beyond span field names.
//!
//! # Setup
//!
//! [`init`] installs the process-wide subscriber once: log lines on stderr ([`LogFormat::Human`]
//! or [`LogFormat::Json`], filtered by [`TelemetryConfig::log_filter`] or `RUST_LOG`) and, only
//! when [`TelemetryConfig::otlp_endpoint`] is set, an OpenTelemetry layer exporting spans over
//! OTLP/gRPC with a batch processor. Without an endpoint nothing is exported and no connection
//! is made. Keep the returned [`Guard`]: dropping it flushes the last spans.
//!
//! # Span conventions
//!
//! One trace per node-service request, continuing the caller's trace when the request carries
//! `traceparent`/`tracestate` metadata (the NRI plugin and the CNI shim inject them with
//! [`inject_context`]):
//!
//! - `rpc` ([`rpc_span`]): one per RPC, exported as `plexus.v1.Node/<Method>`, kind server;
//!   fields `rpc.system`, `rpc.service`, `rpc.method`, `pod.namespace`, `pod.name`,
//!   `sandbox.id` ([`record_pod`]); status ERROR via [`record_rpc_error`].
//!   - `attachment` ([`attachment_span`]): one per network attached or detached, child of the
//!     RPC span; fields `network` (`namespace/name`), `interface`, `driver` (`native`|`exec`),
//!     `outcome` (`ok`|`error`|`undone`, [`record_outcome`]).
//!     - `delegate` ([`delegate_span`]): one per CNI plugin execution, child of its attachment;
//!       fields `plugin.type`, `cni.command`, `outcome`.
//!
//! Spans at `info` and above are exported regardless of the log level; the exporter's own
//! crates (`tonic`, `h2`, `hyper`, `tower`, `opentelemetry*`) never are.
//!
//! # Metrics
//!
//! [`Metrics::new`] registers the `plexus_*` families (see [`metrics`]) in a
//! [`Registry`]; [`serve_metrics`] serves that registry at `GET /metrics`, with `/healthz`
//! and `/readyz` (a [`Readiness`] flag) for the DaemonSet's probes.
//!
//! # Wiring (plexusd)
//!
//! - `main`, inside the runtime: `let _guard = init(config)?;` then
//!   `let mut registry = Registry::default(); let metrics = Metrics::new(&mut registry);` and,
//!   when a metrics address is configured, keep
//!   `serve_metrics(addr, Arc::new(registry), readiness.clone()).await?` and call
//!   `readiness.set_ready()` once plexusd can take work.
//! - each RPC handler, before `into_inner()`:
//!   `let span = rpc_span("plexus.v1.Node", "SetupPod", request.metadata());`, then
//!   [`record_pod`] and `.instrument(span)` around the work.
//! - work moved to another task must keep the span: `tokio::spawn(fut.in_current_span())`,
//!   otherwise attachment spans start new traces.
//! - the engine (which does not depend on this crate) makes `attachment` and `delegate` spans
//!   with `tracing::info_span!` and the field names above.

pub mod endpoint;
pub mod error;
pub mod metrics;
pub mod propagation;
pub mod span;
pub mod subscriber;

#[cfg(feature = "test-util")]
pub mod test_util;

pub use endpoint::{MetricsServer, Readiness, serve_metrics};
pub use error::{Error, Result};
pub use metrics::{Driver, GaugeGuard, Metrics, Operation, Path, render};
pub use prometheus_client::registry::Registry;
pub use propagation::{
    extract_context, inject_context, inject_span_context, set_parent_from_metadata,
};
pub use span::{
    Outcome, attachment_span, delegate_span, record_outcome, record_pod, record_rpc_error, rpc_span,
};
pub use subscriber::{Guard, LogFormat, TelemetryConfig, init};

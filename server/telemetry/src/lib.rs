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
//! One trace per pod event, rooted at the NRI plugin's event span (plexus-nri exports it
//! with the same OTLP settings) or at the caller's span when the request carries
//! `traceparent`/`tracestate` metadata ([`inject_context`] writes them):
//!
//! - `rpc` ([`rpc_span`]): one per RPC, exported as `plexus.v1.Node/<Method>`, kind server;
//!   `rpc.system`, `rpc.service`, `rpc.method`, `rpc.grpc.status_code`, `k8s.namespace.name`,
//!   `k8s.pod.name`, `k8s.pod.uid`, `plexus.sandbox.id` ([`record_pod`]); status ERROR with
//!   `error.type` via [`record_rpc_status`].
//!   - below it the engine's `attachment`, `delegate` and `native` spans
//!     (`plexus_engine::observe`), each with ERROR status exactly where a step failed.
//!
//! The whole catalogue (names, attributes, values) is in `docs/telemetry.md`. Spans at
//! `info` and above are exported regardless of the log level; the exporter's own crates
//! (`tonic`, `h2`, `hyper`, `tower`, `opentelemetry*`) never are.
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
//!   [`record_pod`], `.instrument(span)` around the work and [`record_rpc_status`] at the end.
//! - work moved to another task must keep the span: `tokio::spawn(fut.in_current_span())`,
//!   otherwise attachment spans start new traces.
//! - the engine (which does not depend on this crate) makes `attachment`, `delegate` and
//!   `native` spans with `tracing::info_span!` and the names in `docs/telemetry.md`.

pub mod endpoint;
pub mod error;
mod json;
pub mod log_queue;
pub mod metrics;
pub mod process;
pub mod propagation;
pub mod span;
pub mod subscriber;

#[cfg(feature = "test-util")]
pub mod test_util;

pub use endpoint::{MetricsServer, Readiness, serve_metrics};
pub use error::{Error, Result};
pub use metrics::{
    Driver, GaugeGuard, Metrics, Operation, Outcome, Path, render, render_prometheus,
};
pub use prometheus_client::registry::Registry;
pub use propagation::{
    extract_context, inject_context, inject_span_context, set_parent_from_metadata,
};
pub use span::{record_error, record_pod, record_rpc_status, rpc_span};
pub use subscriber::{
    Guard, LogFormat, TelemetryConfig, check_endpoint as check_otlp_endpoint, init,
};

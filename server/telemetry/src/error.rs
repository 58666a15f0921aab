//! The one error type of `plexus-telemetry`: every variant names the operation that failed and
//! carries what an operator needs to fix the telemetry configuration.

use std::net::SocketAddr;

/// Errors from setting up tracing, exporting spans or serving metrics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log filter is not a valid `tracing_subscriber::EnvFilter` directive list.
    #[error(
        "invalid log filter {filter:?} (expected directives like \"info\" or \"plexus=debug,warn\")"
    )]
    ParseLogFilter {
        /// The filter as given.
        filter: String,
        /// Why it did not parse.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// The log format is neither `human` nor `json`.
    #[error("invalid log format {value:?} (accepted: \"human\", \"json\")")]
    ParseLogFormat {
        /// The value as given.
        value: String,
    },
    /// The OTLP endpoint is not an `http://host:port` URI this build can export to.
    #[error("invalid otlp endpoint {endpoint:?}: {reason}")]
    InvalidOtlpEndpoint {
        /// The endpoint as configured.
        endpoint: String,
        /// What is wrong with it and what is accepted.
        reason: &'static str,
    },
    /// OTLP export was configured but `init` was called outside a Tokio runtime.
    #[error("otlp export to {endpoint} needs a tokio runtime: call init from inside the runtime")]
    NoRuntime {
        /// The endpoint as configured.
        endpoint: String,
    },
    /// The OTLP gRPC span exporter could not be built.
    #[error("building the otlp span exporter for {endpoint}")]
    BuildOtlpExporter {
        /// The endpoint as configured.
        endpoint: String,
        /// The exporter's error.
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// A global tracing subscriber was already installed in this process.
    #[error("installing the global tracing subscriber (init may be called once per process)")]
    InstallSubscriber {
        /// The subscriber's error.
        #[source]
        source: tracing_subscriber::util::TryInitError,
    },
    /// Flushing or shutting down the span exporter failed.
    #[error("flushing spans to the otlp endpoint")]
    FlushSpans {
        /// The SDK's error.
        #[source]
        source: opentelemetry_sdk::error::OTelSdkError,
    },
    /// The metrics endpoint could not bind its TCP address.
    #[error("binding the metrics endpoint on {addr}")]
    BindMetrics {
        /// The address asked for.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! Process-wide tracing setup: the log layer (human or JSON lines on stderr, filtered by an
//! `EnvFilter`) and, only when an OTLP endpoint is configured, the OpenTelemetry layer that
//! exports spans over OTLP/gRPC through a batch processor. Nothing here creates spans or decides
//! what to log; it only wires layers, and the [`Guard`] flushes what is buffered.

use std::io::IsTerminal;
use std::str::FromStr;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer, Registry};

use crate::error::{Error, Result};
use crate::log_queue::{self, LogQueue};

/// How long one OTLP export call may take before the batch is dropped.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Crates whose spans must never reach the exporter: they carry the exporter's own traffic, and
/// exporting them would make every export produce more spans to export.
const EXPORTER_INTERNALS: [&str; 7] = [
    "h2",
    "hyper",
    "hyper_util",
    "tonic",
    "tower",
    "opentelemetry",
    "opentelemetry_sdk",
];

/// Format of the log lines written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One readable line per event (colours only when stderr is a terminal).
    #[default]
    Human,
    /// One JSON object per line, with the current span's fields.
    Json,
}

impl FromStr for LogFormat {
    type Err = Error;

    fn from_str(value: &str) -> Result<Self> {
        match value {
            "human" => Ok(Self::Human),
            "json" => Ok(Self::Json),
            _ => Err(Error::ParseLogFormat {
                value: value.to_owned(),
            }),
        }
    }
}

/// What [`init`] sets up.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// `service.name` of the exported spans, e.g. `plexusd`.
    pub service_name: String,
    /// Format of the log lines on stderr.
    pub log_format: LogFormat,
    /// `EnvFilter` directives for the log lines, e.g. `info` or `plexus_server=debug,info`.
    /// Multus's level names are accepted as whole filters too: `panic` and `error` mean
    /// `error`, `verbose` means `info`, `debug` means `debug` (`warning` means `warn`).
    /// The `RUST_LOG` environment variable, when set and non-empty, takes precedence.
    pub log_filter: String,
    /// OTLP/gRPC collector endpoint (`http://host:4317`); `None` exports nothing.
    pub otlp_endpoint: Option<String>,
}

impl TelemetryConfig {
    /// Human logs at `info`, no export.
    pub fn new(service_name: impl Into<String>) -> Self {
        Self {
            service_name: service_name.into(),
            log_format: LogFormat::Human,
            log_filter: "info".to_owned(),
            otlp_endpoint: None,
        }
    }
}

/// Keeps the span exporter alive; dropping it flushes buffered spans and shuts the exporter down.
///
/// Dropping blocks until the flush ends (at most a few seconds). Inside a multi-threaded Tokio
/// runtime that is fine; on a current-thread runtime call [`Guard::shutdown`] instead, because
/// the exporter needs the runtime to make progress while the flush waits.
#[derive(Debug)]
#[must_use = "dropping the guard shuts span export down"]
pub struct Guard {
    provider: Option<SdkTracerProvider>,
    /// The log lines' queue, flushed on drop (none when its thread could not start:
    /// lines then go straight to stderr).
    log: Option<LogQueue>,
}

impl Guard {
    /// Whether spans are exported (an OTLP endpoint was configured).
    pub fn is_exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports every finished span now, without blocking a runtime thread.
    pub async fn flush(&self) -> Result<()> {
        let Some(provider) = self.provider.clone() else {
            return Ok(());
        };
        run_blocking(move || provider.force_flush()).await
    }

    /// Flushes and shuts the exporter down, without blocking a runtime thread.
    pub async fn shutdown(mut self) -> Result<()> {
        let Some(provider) = self.provider.take() else {
            return Ok(());
        };
        run_blocking(move || provider.shutdown()).await
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shutdown_export();
        // Last, so lines logged while the export shut down are written too.
        if let Some(log) = &self.log {
            log.flush();
        }
    }
}

impl Guard {
    /// Flushes and stops span export (nothing when no endpoint was configured).
    fn shutdown_export(&mut self) {
        let Some(provider) = self.provider.take() else {
            return;
        };
        let shutdown = move || {
            // Nothing useful can be done with a failed flush while the process ends.
            let _ = provider.shutdown();
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(shutdown);
            }
            _ => shutdown(),
        }
    }
}

async fn run_blocking(
    task: impl FnOnce() -> opentelemetry_sdk::error::OTelSdkResult + Send + 'static,
) -> Result<()> {
    let outcome = tokio::task::spawn_blocking(task)
        .await
        .unwrap_or_else(|join| {
            Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(
                join.to_string(),
            ))
        });
    outcome.map_err(|source| Error::FlushSpans { source })
}

/// Installs the global tracing subscriber and the W3C trace-context propagator.
///
/// Call once per process, early in `main`, from inside the Tokio runtime when an OTLP endpoint is
/// configured (the gRPC channel is spawned on it). Keep the returned [`Guard`] until exit.
pub fn init(config: TelemetryConfig) -> Result<Guard> {
    let filter = log_filter(&config.log_filter)?;
    let provider = match &config.otlp_endpoint {
        Some(endpoint) => Some(tracer_provider(&config.service_name, endpoint)?),
        None => None,
    };

    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
    if let Some(provider) = &provider {
        let tracer = provider.tracer("plexus");
        // No busy_ns/idle_ns, code.*, thread.* or target attributes: bookkeeping, not
        // telemetry (the span names and plexus.* attributes say where a span comes from).
        let otel = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_tracked_inactivity(false)
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_filter(export_filter());
        layers.push(Box::new(otel));
    }
    let log = LogQueue::start(std::io::stderr(), log_queue::CAPACITY, config.log_format).ok();
    layers.push(log_layer(config.log_format, filter, log.clone()));

    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|source| Error::InstallSubscriber { source })?;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    if let Some(provider) = &provider {
        opentelemetry::global::set_tracer_provider(provider.clone());
    }
    Ok(Guard { provider, log })
}

fn log_filter(configured: &str) -> Result<EnvFilter> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(from_env) if !from_env.trim().is_empty() => from_env,
        _ => configured.to_owned(),
    };
    parse_filter(filter)
}

fn parse_filter(filter: String) -> Result<EnvFilter> {
    // A bare word is a target to EnvFilter, so Multus's `verbose` would silence everything.
    let directives = match filter.trim() {
        "panic" => "error",
        "verbose" => "info",
        "warning" => "warn",
        other => other,
    };
    EnvFilter::builder()
        .parse(directives)
        .map_err(|source| Error::ParseLogFilter { filter, source })
}

fn log_layer(
    format: LogFormat,
    filter: EnvFilter,
    queue: Option<LogQueue>,
) -> Box<dyn Layer<Registry> + Send + Sync> {
    // Through the queue: a slow stderr must not stall the thread that logs (`log_queue`).
    let writer = match queue {
        Some(queue) => BoxMakeWriter::new(queue),
        None => BoxMakeWriter::new(std::io::stderr),
    };
    let base = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Human => base
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed(),
        // The span list carries the RPC span's pod, sandbox and trace id on every line
        // logged below it (an attachment's warning names the pod it belongs to); keys are
        // never repeated within an object (see `json`).
        LogFormat::Json => base
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(crate::json::JsonLines)
            .with_filter(filter)
            .boxed(),
    }
}

/// Spans at `info` and above are exported whatever the log level, except the exporter's own.
fn export_filter() -> Targets {
    EXPORTER_INTERNALS.iter().fold(
        Targets::new().with_default(LevelFilter::INFO),
        |targets, name| targets.with_target(*name, LevelFilter::OFF),
    )
}

fn tracer_provider(service_name: &str, endpoint: &str) -> Result<SdkTracerProvider> {
    check_endpoint(endpoint)?;
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(Error::NoRuntime {
            endpoint: endpoint.to_owned(),
        });
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|source| Error::BuildOtlpExporter {
            endpoint: endpoint.to_owned(),
            source,
        })?;
    let resource = Resource::builder()
        .with_service_name(service_name.to_owned())
        .with_attributes(resource_attributes())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// `service.version`, and the node as `host.name` and `k8s.node.name` (from `NODE_NAME`,
/// which the chart sets from `spec.nodeName`, else the kernel's host name).
fn resource_attributes() -> Vec<opentelemetry::KeyValue> {
    let mut attributes = vec![opentelemetry::KeyValue::new(
        "service.version",
        env!("CARGO_PKG_VERSION"),
    )];
    let node = std::env::var("NODE_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        });
    if let Some(node) = node {
        attributes.push(opentelemetry::KeyValue::new("host.name", node.clone()));
        attributes.push(opentelemetry::KeyValue::new("k8s.node.name", node));
    }
    attributes
}

/// Accepts `http://host:port[/]`; this build has no TLS for the exporter.
pub fn check_endpoint(endpoint: &str) -> Result<()> {
    let invalid = |reason| Error::InvalidOtlpEndpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|_| invalid("not a URI; expected http://host:port"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(invalid(
                "https is not supported by this build; use http:// to a local collector",
            ));
        }
        _ => return Err(invalid("expected an http://host:port URI")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("no host; expected http://host:port"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_format_parses_the_documented_names() {
        assert_eq!("human".parse::<LogFormat>().unwrap(), LogFormat::Human);
        assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
        let err = "yaml".parse::<LogFormat>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid log format \"yaml\" (accepted: \"human\", \"json\")"
        );
    }

    #[test]
    fn endpoint_must_be_plain_http_with_a_host() {
        assert!(check_endpoint("http://127.0.0.1:4317").is_ok());
        assert!(check_endpoint("http://collector.monitoring:4317/").is_ok());
        for bad in [
            "https://c:4317",
            "127.0.0.1:4317",
            "grpc://c:4317",
            "",
            "http://",
        ] {
            let err = check_endpoint(bad).unwrap_err();
            assert!(
                matches!(err, Error::InvalidOtlpEndpoint { .. }),
                "{bad:?} gave {err}"
            );
        }
    }

    #[test]
    fn export_without_runtime_is_an_error_not_a_panic() {
        let err = tracer_provider("t", "http://127.0.0.1:4317").unwrap_err();
        assert!(matches!(err, Error::NoRuntime { .. }), "{err}");
    }

    #[test]
    fn bad_log_filter_names_the_filter() {
        assert!(parse_filter("info,plexus_server=debug".into()).is_ok());
        let err = parse_filter("plexus=loud".into()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid log filter \"plexus=loud\""),
            "{err}"
        );
    }

    #[test]
    fn multus_level_names_mean_levels_not_targets() {
        for (level, expected) in [
            ("panic", LevelFilter::ERROR),
            ("error", LevelFilter::ERROR),
            ("verbose", LevelFilter::INFO),
            ("debug", LevelFilter::DEBUG),
            (" warning ", LevelFilter::WARN),
        ] {
            let filter = parse_filter(level.to_owned()).unwrap();
            assert_eq!(filter.max_level_hint(), Some(expected), "{level:?}");
        }
    }

    #[test]
    fn exporter_internals_are_never_exported() {
        let targets = export_filter();
        assert!(!targets.would_enable("h2::proto", &tracing::Level::ERROR));
        assert!(!targets.would_enable("tonic::transport", &tracing::Level::INFO));
        assert!(targets.would_enable("plexus_server::service", &tracing::Level::INFO));
        assert!(!targets.would_enable("plexus_server::service", &tracing::Level::DEBUG));
    }
}

//! Test helpers, compiled only for tests (`test-util` feature): [`OtlpReceiver`], a real
//! OTLP/gRPC collector (`opentelemetry.proto.collector.trace.v1.TraceService`) on 127.0.0.1:0
//! that keeps every span it receives, flattened with its resource's `service.name`, so tests of
//! this and other crates can assert trace structure and attributes. Never used in production.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use tokio::sync::Notify;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// One received span, with ids in lowercase hex (empty parent for a root span).
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// `service.name` of the resource that sent the span.
    pub service_name: String,
    /// Every attribute of that resource, rendered as text.
    pub resource: BTreeMap<String, String>,
    /// Trace id, 32 hex digits.
    pub trace_id: String,
    /// Span id, 16 hex digits.
    pub span_id: String,
    /// Parent span id, empty for a root span.
    pub parent_span_id: String,
    /// Span name.
    pub name: String,
    /// `opentelemetry.proto.trace.v1.Span.SpanKind` (2 = server).
    pub kind: i32,
    /// `Status.code` (0 unset, 1 ok, 2 error).
    pub status_code: i32,
    /// `Status.message`.
    pub status_message: String,
    /// String, bool and number attributes rendered as text.
    pub attributes: BTreeMap<String, String>,
}

impl ReceivedSpan {
    /// The attribute `key`, or a panic naming the span and what it has.
    pub fn attr(&self, key: &str) -> &str {
        self.attributes.get(key).unwrap_or_else(|| {
            panic!(
                "span {:?} has no attribute {key:?}; it has {:?}",
                self.name, self.attributes
            )
        })
    }
}

#[derive(Debug, Default)]
struct Store {
    spans: Mutex<Vec<ReceivedSpan>>,
    arrived: Notify,
}

#[derive(Debug, Clone)]
struct Collector(Arc<Store>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans.resource.unwrap_or_default();
            let resource = attributes(&resource.attributes);
            let service_name = resource.get("service.name").cloned().unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    let status = span.status.unwrap_or_default();
                    received.push(ReceivedSpan {
                        service_name: service_name.clone(),
                        resource: resource.clone(),
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        name: span.name,
                        kind: span.kind,
                        status_code: status.code,
                        status_message: status.message,
                        attributes: attributes(&span.attributes),
                    });
                }
            }
        }
        self.0.spans.lock().unwrap().extend(received);
        self.0.arrived.notify_waiters();
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, String> {
    list.iter()
        .filter_map(|kv| Some((kv.key.clone(), text(kv.value.as_ref()?)?)))
        .collect()
}

fn text(value: &AnyValue) -> Option<String> {
    match value.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The running receiver; it serves until its runtime ends.
#[derive(Debug)]
pub struct OtlpReceiver {
    addr: SocketAddr,
    store: Arc<Store>,
}

impl OtlpReceiver {
    /// Binds 127.0.0.1:0 and serves on the current runtime.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let store = Arc::new(Store::default());
        let service = TraceServiceServer::new(Collector(Arc::clone(&store)));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        Self { addr, store }
    }

    /// The endpoint to configure as `otlp_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.store.spans.lock().unwrap().clone()
    }

    /// Every span received so far with `trace_id`.
    pub fn trace(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        let mut spans = self.spans();
        spans.retain(|s| s.trace_id == trace_id);
        spans
    }

    /// Waits until at least `count` spans (of any trace) arrived; panics after `timeout`.
    pub async fn wait_for_spans(&self, count: usize, timeout: Duration) -> Vec<ReceivedSpan> {
        self.wait(count, timeout, None).await
    }

    /// Waits until at least `count` spans of `trace_id` arrived; panics after `timeout`.
    pub async fn wait_for_trace(
        &self,
        trace_id: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<ReceivedSpan> {
        self.wait(count, timeout, Some(trace_id)).await
    }

    async fn wait(
        &self,
        count: usize,
        timeout: Duration,
        trace_id: Option<&str>,
    ) -> Vec<ReceivedSpan> {
        let matching = || match trace_id {
            Some(id) => self.trace(id),
            None => self.spans(),
        };
        let waited = tokio::time::timeout(timeout, async {
            loop {
                let arrived = self.store.arrived.notified();
                let spans = matching();
                if spans.len() >= count {
                    return spans;
                }
                arrived.await;
            }
        })
        .await;
        waited.unwrap_or_else(|_| {
            let seen: Vec<String> = self
                .spans()
                .iter()
                .map(|s| {
                    format!(
                        "{} (trace {}, parent {:?})",
                        s.name, s.trace_id, s.parent_span_id
                    )
                })
                .collect();
            panic!(
                "the collector did not get {count} spans of trace {} within {timeout:?}; \
                 it got: {seen:#?}",
                trace_id.unwrap_or("(any)")
            )
        })
    }
}

/// Stand-in for the engine's `attachment` span (same name and fields, see
/// `plexus_engine::observe`), for tests of the export path that run without the engine.
pub fn attachment_span(network: &str, interface: &str, driver: &str) -> tracing::Span {
    tracing::info_span!(
        "attachment",
        otel.name = format!("attach {network}"),
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
        error.type = tracing::field::Empty,
        plexus.network = network,
        network.interface.name = interface,
        plexus.driver = driver,
        plexus.outcome = tracing::field::Empty,
    )
}

/// Stand-in for the engine's `delegate` span: one CNI plugin execution.
pub fn delegate_span(plugin_type: &str, command: &str) -> tracing::Span {
    tracing::info_span!(
        "delegate",
        otel.name = format!("{command} {plugin_type}"),
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
        error.type = tracing::field::Empty,
        plexus.cni.plugin = plugin_type,
        plexus.cni.command = command,
        plexus.outcome = tracing::field::Empty,
    )
}

/// Records `plexus.outcome` (`ok`, `error`, `undone`) on a stand-in span.
pub fn record_outcome(span: &tracing::Span, outcome: &str) {
    span.record("plexus.outcome", outcome);
}

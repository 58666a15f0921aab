//! W3C trace-context (`traceparent`, `tracestate`) carried in gRPC metadata: extraction on the
//! server side, so an RPC span continues the caller's trace, and injection on the client side.
//! Always the W3C format, independent of the global propagator, so behaviour does not depend on
//! whether [`init`](crate::init) ran. Without the OpenTelemetry layer (no OTLP endpoint) setting
//! a parent is a no-op and injection writes nothing.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, KeyRef, MetadataMap};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Reads trace-context keys from gRPC metadata (ASCII entries only).
#[derive(Debug)]
pub struct MetadataExtractor<'a>(pub &'a MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|key| match key {
                KeyRef::Ascii(key) => Some(key.as_str()),
                KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// Writes trace-context keys into gRPC metadata; values that are not valid metadata are dropped.
#[derive(Debug)]
pub struct MetadataInjector<'a>(pub &'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        let (Ok(key), Ok(value)) = (
            key.parse::<AsciiMetadataKey>(),
            AsciiMetadataValue::try_from(value),
        ) else {
            return;
        };
        self.0.insert(key, value);
    }
}

/// The remote parent carried by `traceparent`/`tracestate`, or an empty context.
pub fn extract_context(metadata: &MetadataMap) -> Context {
    TraceContextPropagator::new().extract(&MetadataExtractor(metadata))
}

/// Makes `span` a child of the trace in `metadata`, if any. Call before entering the span.
pub fn set_parent_from_metadata(span: &tracing::Span, metadata: &MetadataMap) {
    let parent = extract_context(metadata);
    // Errors mean no OpenTelemetry layer (nothing exported) or a span already started by its
    // creator; in both cases the span keeps its local parent, which is the right fallback.
    let _ = span.set_parent(parent);
}

/// Writes the trace context of `span` into outgoing `metadata`.
pub fn inject_span_context(span: &tracing::Span, metadata: &mut MetadataMap) {
    TraceContextPropagator::new().inject_context(&span.context(), &mut MetadataInjector(metadata));
}

/// Writes the trace context of the current span into outgoing `metadata`.
pub fn inject_context(metadata: &mut MetadataMap) {
    inject_span_context(&tracing::Span::current(), metadata);
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanContext, TraceContextExt as _, TraceFlags, TraceState};
    use opentelemetry::trace::{SpanId, TraceId};

    use super::*;

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn extracts_the_remote_parent_from_metadata() {
        let mut metadata = MetadataMap::new();
        metadata.insert("traceparent", TRACEPARENT.parse().unwrap());
        metadata.insert("tracestate", "vendor=abc".parse().unwrap());
        let cx = extract_context(&metadata);
        let remote = cx.span().span_context().clone();
        assert!(remote.is_remote());
        assert_eq!(
            remote.trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert_eq!(
            remote.span_id(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap()
        );
        assert!(remote.is_sampled());
        assert_eq!(remote.trace_state().get("vendor"), Some("abc"));
    }

    #[test]
    fn missing_or_garbled_traceparent_gives_no_parent() {
        assert!(!extract_context(&MetadataMap::new()).has_active_span());
        let mut metadata = MetadataMap::new();
        metadata.insert("traceparent", "00-zz-yy-01".parse().unwrap());
        assert!(!extract_context(&metadata).has_active_span());
    }

    #[test]
    fn injects_w3c_headers_that_round_trip() {
        let context = SpanContext::new(
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
            SpanId::from_hex("b7ad6b7169203331").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let cx = Context::new().with_remote_span_context(context);
        let mut metadata = MetadataMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut MetadataInjector(&mut metadata));
        assert_eq!(
            metadata.get("traceparent").unwrap().to_str().unwrap(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
        let back = extract_context(&metadata);
        assert_eq!(
            back.span().span_context().trace_id(),
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap()
        );
    }

    #[test]
    fn injecting_without_a_tracing_layer_writes_nothing() {
        let mut metadata = MetadataMap::new();
        inject_context(&mut metadata);
        assert!(metadata.get("traceparent").is_none());
    }
}

//! W3C trace context for one pod event. The plugin does not link OpenTelemetry (a heavy
//! dependency for a thin edge): it makes a fresh `traceparent` per event, records it in
//! the event's tracing span and sends it to plexusd as gRPC metadata, where the server's
//! OpenTelemetry layer continues the trace.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

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
    fn random_traceparents_differ() {
        let a = TraceParent::random();
        let b = TraceParent::random();
        assert_ne!(a, b);
        assert_eq!(a.to_string().len(), 55);
    }
}

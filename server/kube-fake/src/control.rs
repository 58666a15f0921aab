//! What tests can steer and observe, shared between the handle and the request router:
//! accepted tokens, injected failures, the request log, and the signal that ends open watches.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::rbac::Denial;
use crate::store::Store;

/// How an injected failure answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// `500 InternalError`.
    InternalError,
    /// `429 TooManyRequests` with `Retry-After: secs`.
    TooManyRequests {
        /// Seconds in `Retry-After` and `details.retryAfterSeconds`.
        retry_after_secs: u64,
    },
    /// `409 Conflict` as for a write racing another (the optimistic-lock answer, for
    /// writes that carry no `resourceVersion` and so never conflict here otherwise).
    Conflict,
}

/// An injected failure: the next `count` requests whose path contains `path_contains`
/// (and whose method is `method`, when given) are answered with `kind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Substring of the request path to match (`"/status"`, `"/api/v1/namespaces/a/pods"`).
    pub path_contains: String,
    /// HTTP method to match (`"PATCH"`), any when `None`.
    pub method: Option<String>,
    /// How many matching requests fail.
    pub count: usize,
    /// The answer.
    pub kind: FailureKind,
}

/// One served request, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method (`GET`, `PATCH`, ...).
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Raw query string (empty when none).
    pub query: String,
    /// `Content-Type` of the request, if any.
    pub content_type: Option<String>,
    /// `Accept` of the request, if any.
    pub accept: Option<String>,
    /// The HTTP status answered (200 for a watch that was opened).
    pub status: u16,
}

impl RequestRecord {
    /// Whether this was a watch request.
    pub fn is_watch(&self) -> bool {
        self.query
            .split('&')
            .any(|kv| kv == "watch=true" || kv == "watch=1")
    }
}

/// State shared by the router and the handle.
#[derive(Debug)]
pub struct Shared {
    /// The objects.
    pub store: Arc<Store>,
    tokens: Mutex<Vec<String>>,
    failures: Mutex<Vec<Failure>>,
    denials: Mutex<Vec<Denial>>,
    log: Mutex<Vec<RequestRecord>>,
    /// Bumped to end every open watch stream.
    pub close_watches: tokio::sync::watch::Sender<u64>,
    bookmark_interval: Mutex<Duration>,
    nad_crd: std::sync::atomic::AtomicBool,
    address: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The API server's default: a bookmark about once a minute.
pub const DEFAULT_BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);

/// Most requests kept in the log (older ones are dropped).
pub const LOG_LIMIT: usize = 100_000;

impl Shared {
    /// Shared state accepting `token`.
    pub fn new(token: String, address: String) -> Self {
        Shared {
            store: Arc::new(Store::new()),
            tokens: Mutex::new(vec![token]),
            failures: Mutex::new(Vec::new()),
            denials: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            close_watches: tokio::sync::watch::Sender::new(0),
            bookmark_interval: Mutex::new(DEFAULT_BOOKMARK_INTERVAL),
            nad_crd: std::sync::atomic::AtomicBool::new(true),
            address,
        }
    }

    /// Whether `token` is accepted.
    pub fn token_ok(&self, token: &str) -> bool {
        lock(&self.tokens).iter().any(|t| t == token)
    }

    /// Replaces the accepted tokens.
    pub fn set_token(&self, token: String) {
        *lock(&self.tokens) = vec![token];
    }

    /// Makes `token` the current one while the previous ones stay accepted.
    pub fn add_token(&self, token: String) {
        lock(&self.tokens).insert(0, token);
    }

    /// Keeps only the current token.
    pub fn revoke_old_tokens(&self) {
        lock(&self.tokens).truncate(1);
    }

    /// The current token.
    pub fn token(&self) -> String {
        lock(&self.tokens).first().cloned().unwrap_or_default()
    }

    /// Adds an injected failure.
    pub fn inject(&self, f: Failure) {
        lock(&self.failures).push(f);
    }

    /// Takes one matching injected failure, if any.
    pub fn take_failure(&self, method: &str, path: &str) -> Option<FailureKind> {
        let mut fs = lock(&self.failures);
        let i = fs.iter().position(|f| {
            f.count > 0
                && path.contains(&f.path_contains)
                && f.method
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(method))
        })?;
        fs[i].count -= 1;
        let kind = fs[i].kind;
        if fs[i].count == 0 {
            fs.remove(i);
        }
        Some(kind)
    }

    /// Denies a verb on a resource (RBAC).
    pub fn deny(&self, d: Denial) {
        let mut ds = lock(&self.denials);
        if !ds.contains(&d) {
            ds.push(d);
        }
    }

    /// Lifts every denial.
    pub fn allow_all(&self) {
        lock(&self.denials).clear();
    }

    /// Whether `verb` on `resource` is denied.
    pub fn denied(&self, verb: &str, resource: &str) -> bool {
        lock(&self.denials)
            .iter()
            .any(|d| d.verb == verb && d.resource == resource)
    }

    /// Drops all injected failures not yet used.
    pub fn clear_failures(&self) {
        lock(&self.failures).clear();
    }

    /// Appends to the request log.
    pub fn log(&self, r: RequestRecord) {
        let mut log = lock(&self.log);
        if log.len() >= LOG_LIMIT {
            log.remove(0);
        }
        log.push(r);
    }

    /// A copy of the request log.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.log).clone()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        lock(&self.log).clear();
    }

    /// The interval between watch bookmarks.
    pub fn bookmark_interval(&self) -> Duration {
        *lock(&self.bookmark_interval)
    }

    /// Sets the interval between watch bookmarks.
    pub fn set_bookmark_interval(&self, d: Duration) {
        *lock(&self.bookmark_interval) = d.max(Duration::from_millis(10));
    }

    /// Whether the NetworkAttachmentDefinition CRD is installed (served and discoverable).
    pub fn nad_crd_installed(&self) -> bool {
        self.nad_crd.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Installs or removes the NetworkAttachmentDefinition CRD.
    pub fn set_nad_crd_installed(&self, on: bool) {
        self.nad_crd.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// `host:port` the server listens on (for discovery documents).
    pub fn address(&self) -> &str {
        &self.address
    }
}

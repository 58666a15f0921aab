//! Watch streams: newline-delimited JSON `WatchEvent`s (`ADDED`, `MODIFIED`, `DELETED`,
//! `BOOKMARK`, `ERROR`) from a resourceVersion, as the API server's watch cache serves them.
//!
//! - From an unset or `"0"` resourceVersion the stream starts with synthetic `ADDED` events for
//!   the current state; from a version `X` it carries every change after `X`.
//! - A version older than the compacted history is answered on the open stream with an
//!   `ERROR` event holding a `410 Expired` Status, then the stream ends (the HTTP status is 200).
//! - With selectors, an object that stops matching is sent as `DELETED` and one that starts
//!   matching as `ADDED`.
//! - With `allowWatchBookmarks`, `BOOKMARK` events carrying only `metadata.resourceVersion`
//!   are sent every bookmark interval and just before the stream ends at `timeoutSeconds`;
//!   with `sendInitialEvents=true` the initial events end with a bookmark annotated
//!   `k8s.io/initial-events-end: "true"`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::resource::Resource;
use crate::select::{FieldSelector, LabelSelector};
use crate::store::{Change, ChangeKind, Store};

/// What a watch asks for.
#[derive(Debug, Clone)]
pub struct Params {
    /// The resource watched.
    pub resource: Resource,
    /// One namespace, or all.
    pub namespace: Option<String>,
    /// Field selector.
    pub fields: FieldSelector,
    /// Label selector.
    pub labels: LabelSelector,
    /// `None`: start with the current state as `ADDED`; `Some(x)`: changes after `x`.
    pub after: Option<u64>,
    /// Send `PartialObjectMetadata` objects.
    pub metadata_only: bool,
    /// `allowWatchBookmarks=true`.
    pub bookmarks: bool,
    /// `sendInitialEvents=true`.
    pub send_initial_events: bool,
    /// When the stream ends (`timeoutSeconds`).
    pub timeout: Duration,
    /// How often bookmarks are sent.
    pub bookmark_interval: Duration,
}

struct State {
    store: Arc<Store>,
    p: Params,
    rx: tokio::sync::watch::Receiver<u64>,
    close: tokio::sync::watch::Receiver<u64>,
    pending: VecDeque<Bytes>,
    last: u64,
    started: bool,
    done: bool,
    deadline: Instant,
    next_bookmark: Instant,
}

/// Shapes an object as sent to this watch (full, or `PartialObjectMetadata`).
pub fn render(obj: &Value, metadata_only: bool) -> Value {
    if metadata_only {
        json!({ "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"] })
    } else {
        obj.clone()
    }
}

fn line(kind: &str, object: Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({ "type": kind, "object": object })).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

impl State {
    fn matches(&self, obj: &Value) -> bool {
        self.p.fields.matches(obj) && self.p.labels.matches(obj)
    }

    fn bookmark(&self, initial_end: bool) -> Bytes {
        let (kind, api_version) = if self.p.metadata_only {
            ("PartialObjectMetadata", "meta.k8s.io/v1")
        } else {
            (self.p.resource.kind(), self.p.resource.api_version())
        };
        let mut meta =
            json!({ "resourceVersion": self.last.to_string(), "creationTimestamp": null });
        if initial_end {
            meta["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        line(
            "BOOKMARK",
            json!({ "kind": kind, "apiVersion": api_version, "metadata": meta }),
        )
    }

    fn in_scope(&self, c: &Change) -> bool {
        c.key.0 == self.p.resource && self.p.namespace.as_ref().is_none_or(|n| *n == c.key.1)
    }

    fn push_change(&mut self, c: &Change) {
        if !self.in_scope(c) {
            return;
        }
        let was = c.prev.as_ref().is_some_and(|p| self.matches(p));
        let kind = match c.kind {
            ChangeKind::Added => self.matches(&c.object).then_some("ADDED"),
            ChangeKind::Deleted => was.then_some("DELETED"),
            ChangeKind::Modified => match (was, self.matches(&c.object)) {
                (true, true) => Some("MODIFIED"),
                (false, true) => Some("ADDED"),
                (true, false) => Some("DELETED"),
                (false, false) => None,
            },
        };
        if let Some(k) = kind {
            self.pending
                .push_back(line(k, render(&c.object, self.p.metadata_only)));
        }
    }

    /// Unset/`"0"` versions, and `sendInitialEvents=true` (whose version only bounds how stale
    /// the state may be), start with the current state as `ADDED`; other versions replay.
    fn start(&mut self) {
        self.started = true;
        match self.p.after {
            Some(x) if !self.p.send_initial_events => self.last = x,
            _ => match self
                .store
                .list(self.p.resource, self.p.namespace.as_deref(), None)
            {
                Ok((items, rv)) => {
                    let added: Vec<Bytes> = items
                        .iter()
                        .filter(|o| self.matches(o))
                        .map(|o| line("ADDED", render(o, self.p.metadata_only)))
                        .collect();
                    self.pending.extend(added);
                    self.last = rv;
                    if self.p.send_initial_events && self.p.bookmarks {
                        let b = self.bookmark(true);
                        self.pending.push_back(b);
                    }
                }
                Err(e) => self.fail(e.body),
            },
        }
    }

    fn fail(&mut self, status: Value) {
        self.pending.push_back(line("ERROR", status));
        self.done = true;
    }

    async fn next(mut self) -> Option<(Bytes, State)> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Some((b, self));
            }
            if self.done {
                return None;
            }
            if self.close.has_changed().unwrap_or(true) {
                // closed by the handle: end now, even with changes not yet sent
                self.done = true;
                continue;
            }
            self.rx.borrow_and_update();
            if !self.started {
                self.start();
                continue;
            }
            match self.store.changes_after(self.last) {
                Err(e) => {
                    self.fail(e.body);
                    continue;
                }
                Ok((changes, rv)) => {
                    for c in &changes {
                        self.push_change(c);
                    }
                    // a watch from a version the server has not reached yet stays there
                    self.last = self.last.max(rv);
                }
            }
            if !self.pending.is_empty() {
                continue;
            }
            let bookmarks = self.p.bookmarks;
            tokio::select! {
                _ = self.rx.changed() => {}
                _ = self.close.changed() => self.done = true,
                _ = tokio::time::sleep_until(self.deadline) => {
                    self.done = true;
                    if bookmarks {
                        let b = self.bookmark(false);
                        self.pending.push_back(b);
                    }
                }
                _ = tokio::time::sleep_until(self.next_bookmark), if bookmarks => {
                    self.next_bookmark = Instant::now() + self.p.bookmark_interval;
                    let b = self.bookmark(false);
                    self.pending.push_back(b);
                }
            }
        }
    }
}

/// The body stream of one watch. `close` ends it when its value changes.
pub fn stream(
    store: Arc<Store>,
    p: Params,
    close: tokio::sync::watch::Receiver<u64>,
) -> impl Stream<Item = Bytes> + Send + 'static {
    let now = Instant::now();
    let state = State {
        rx: store.subscribe(),
        store,
        close,
        pending: VecDeque::new(),
        last: 0,
        started: false,
        done: false,
        deadline: now + p.timeout,
        next_bookmark: now + p.bookmark_interval,
        p,
    };
    futures::stream::unfold(state, State::next)
}

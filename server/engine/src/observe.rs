//! What the engine tells the outside about its work, without depending on any telemetry
//! crate: `tracing` spans named and attributed as `docs/telemetry.md` documents, and the
//! [`Observer`] seam through which the daemon feeds its metrics.
//!
//! Spans (all at `info`, children of whatever span is current when the engine is called):
//!
//! - `attachment`: one per attachment made or removed. `otel.name` is
//!   `attach <network>`, `detach <network>` (teardown, detach) or `undo <network>` (a
//!   rollback after a later step failed, or recovery of a half-made attachment); fields
//!   `plexus.network`, `network.interface.name`, `plexus.driver` (`native`|`exec`|
//!   `runtime`), `plexus.outcome` (`ok`|`error`|`undone`; `undone` marks a successful
//!   rollback removal).
//!   - `delegate`: one per CNI plugin execution (every plugin of a chain, every verb),
//!     `otel.name` `<CNI command> <plugin type>`; fields `plexus.cni.plugin`,
//!     `plexus.cni.command`, `plexus.outcome`.
//!   - `native`: the in-process driver's work, `otel.name` `create <kind>` or
//!     `delete <kind>`; fields `plexus.native.kind`, `plexus.native.op`, `plexus.outcome`
//!     (no plugin runs, so no `cni.*` fields).
//!
//! A failed step also gets `otel.status_code` `ERROR`, `otel.status_description` (the
//! error) and `error.type` (one of [`crate::error::REASONS`]) on its own span, so the
//! exported trace shows the failure exactly where it happened.
//!
//! Spans cost no I/O; whether they go anywhere is the subscriber's business.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tracing::Span;
use tracing::field::Empty;

use crate::state::Driver;

/// Which half of an attachment's life an [`AttachmentEvent`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// The attachment was being made.
    Setup,
    /// The attachment was being removed (teardown, detach, rollback, recovery).
    Teardown,
}

/// The [`Engine`](crate::Engine) call the work belonged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    /// [`Engine::setup`](crate::Engine::setup) (also replacing an older record).
    Setup,
    /// [`Engine::attach`](crate::Engine::attach) (hot-plug).
    Attach,
    /// [`Engine::detach`](crate::Engine::detach) (hot-unplug).
    Detach,
    /// [`Engine::teardown`](crate::Engine::teardown).
    Teardown,
    /// [`Engine::recover`](crate::Engine::recover).
    Recover,
}

impl Call {
    /// True for the single-network hot-plug calls (attach, detach).
    pub fn is_hot_plug(self) -> bool {
        matches!(self, Call::Attach | Call::Detach)
    }
}

/// How one attachment step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It completed.
    Ok,
    /// A removal that rolled back a setup step after a later one failed (or a half-made
    /// attachment found by recovery) completed.
    Undone,
    /// It failed; the reason is one of [`crate::error::REASONS`].
    Error(&'static str),
}

impl Outcome {
    /// The value of the spans' `outcome` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Undone => "undone",
            Outcome::Error(_) => "error",
        }
    }
}

/// One attachment made or removed, as reported to an [`Observer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachmentEvent<'a> {
    /// Made or removed.
    pub op: Op,
    /// The engine call it belonged to.
    pub call: Call,
    /// Network (`namespace/name`; the CNI network name in a teardown without record).
    pub network: &'a str,
    /// Interface name in the pod.
    pub interface: &'a str,
    /// [`Driver::Native`] or [`Driver::Exec`] (runtime-made attachments are not reported).
    pub driver: Driver,
    /// How long this attachment's step took.
    pub elapsed: Duration,
    /// How it ended.
    pub outcome: Outcome,
}

/// Hears about every attachment step, exactly once per step, on the task doing it; set
/// with [`Engine::set_observer`](crate::Engine::set_observer). Keep it cheap: it runs on
/// the request path.
pub trait Observer: Send + Sync + 'static {
    /// One attachment was made or removed (or failed or was cancelled trying).
    fn attachment_done(&self, event: &AttachmentEvent<'_>);
}

/// The default observer: ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl Observer for NoObserver {
    fn attachment_done(&self, _event: &AttachmentEvent<'_>) {}
}

/// The engine's replaceable observer.
pub(crate) struct ObserverSlot(RwLock<Arc<dyn Observer>>);

impl ObserverSlot {
    pub(crate) fn new() -> ObserverSlot {
        ObserverSlot(RwLock::new(Arc::new(NoObserver)))
    }

    pub(crate) fn set(&self, observer: Arc<dyn Observer>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = observer;
    }

    pub(crate) fn get(&self) -> Arc<dyn Observer> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl std::fmt::Debug for ObserverSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ObserverSlot")
    }
}

/// An `attachment` span; `verb` is `attach`, `detach` or `undo`.
pub(crate) fn attachment_span(verb: &str, network: &str, interface: &str, driver: &str) -> Span {
    tracing::info_span!(
        "attachment",
        otel.name = format!("{verb} {network}"),
        otel.status_code = Empty,
        otel.status_description = Empty,
        error.type = Empty,
        plexus.network = network,
        network.interface.name = interface,
        plexus.driver = driver,
        plexus.outcome = Empty,
    )
}

/// A `delegate` span: one plugin execution.
pub(crate) fn delegate_span(plugin_type: &str, command: &str) -> Span {
    tracing::info_span!(
        "delegate",
        otel.name = format!("{command} {plugin_type}"),
        otel.status_code = Empty,
        otel.status_description = Empty,
        error.type = Empty,
        plexus.cni.plugin = plugin_type,
        plexus.cni.command = command,
        plexus.outcome = Empty,
    )
}

/// What a native driver step does to the pod's link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NativeOp {
    /// Create (or move in) the link and configure it.
    Create,
    /// Remove it (or move it back) and release its addresses.
    Delete,
}

/// A `native` span: the in-process driver doing `op` for `kind`.
pub(crate) fn native_span(kind: &str, op: NativeOp) -> Span {
    let op = match op {
        NativeOp::Create => "create",
        NativeOp::Delete => "delete",
    };
    tracing::info_span!(
        "native",
        otel.name = format!("{op} {kind}"),
        otel.status_code = Empty,
        otel.status_description = Empty,
        error.type = Empty,
        plexus.native.kind = kind,
        plexus.native.op = op,
        plexus.outcome = Empty,
    )
}

/// Records a failure on `span`: outcome `error`, status ERROR with `message`, `reason`
/// as `error.type`.
fn record_failure(span: &Span, reason: &str, message: &str) {
    span.record("plexus.outcome", "error");
    span.record("otel.status_code", "ERROR");
    span.record("otel.status_description", message);
    span.record("error.type", reason);
}

/// Records `outcome` on a step span when finished, or `error` if dropped unfinished.
pub(crate) struct StepSpan {
    span: Span,
    finished: bool,
}

impl StepSpan {
    pub(crate) fn new(span: Span) -> StepSpan {
        StepSpan {
            span,
            finished: false,
        }
    }

    /// The span, to instrument the step's future with.
    pub(crate) fn span(&self) -> Span {
        self.span.clone()
    }

    /// Records `ok`, or the failure: `(reason, message)`.
    pub(crate) fn finish(mut self, failure: Option<(&str, String)>) {
        self.finished = true;
        match failure {
            None => {
                self.span.record("plexus.outcome", "ok");
            }
            Some((reason, message)) => record_failure(&self.span, reason, &message),
        }
    }
}

impl Drop for StepSpan {
    fn drop(&mut self) {
        if !self.finished {
            record_failure(&self.span, "cancelled", "cancelled before it finished");
        }
    }
}

/// The failure to record for an engine result (see [`StepSpan::finish`]).
pub(crate) fn failure_of<T>(result: &crate::Result<T>) -> Option<(&'static str, String)> {
    result
        .as_ref()
        .err()
        .map(|e| (e.reason(), crate::error::chain(e)))
}

/// One attachment step in progress: its span, its clock, and the observer to tell. If
/// dropped unfinished (deadline, caller gone) it reports `error` / `cancelled`.
pub(crate) struct Tracked<'a> {
    span: Span,
    observer: Arc<dyn Observer>,
    op: Op,
    call: Call,
    network: &'a str,
    interface: &'a str,
    driver: Driver,
    started: Instant,
    finished: bool,
}

impl<'a> Tracked<'a> {
    /// Starts tracking; `verb` names the span (`attach`, `detach`, `undo`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        observer: Arc<dyn Observer>,
        verb: &str,
        op: Op,
        call: Call,
        network: &'a str,
        interface: &'a str,
        driver: Driver,
    ) -> Tracked<'a> {
        Tracked {
            span: attachment_span(verb, network, interface, driver.as_str()),
            observer,
            op,
            call,
            network,
            interface,
            driver,
            started: Instant::now(),
            finished: false,
        }
    }

    /// The span, to instrument the step's future with.
    pub(crate) fn span(&self) -> Span {
        self.span.clone()
    }

    /// Records how the step ended (`success` when `result` is `Ok`) and reports it.
    pub(crate) fn finish<T>(mut self, result: &crate::Result<T>, success: Outcome) {
        self.finished = true;
        match result {
            Ok(_) => self.report(success, ""),
            Err(e) => self.report(Outcome::Error(e.reason()), &crate::error::chain(e)),
        }
    }

    /// Records a step that failed although the caller carries on (`message` says why).
    pub(crate) fn finish_failed(mut self, reason: &'static str, message: &str) {
        self.finished = true;
        self.report(Outcome::Error(reason), message);
    }

    fn report(&self, outcome: Outcome, message: &str) {
        match outcome {
            Outcome::Error(reason) => record_failure(&self.span, reason, message),
            _ => {
                self.span.record("plexus.outcome", outcome.as_str());
            }
        }
        if self.driver == Driver::Runtime {
            return;
        }
        self.observer.attachment_done(&AttachmentEvent {
            op: self.op,
            call: self.call,
            network: self.network,
            interface: self.interface,
            driver: self.driver,
            elapsed: self.started.elapsed(),
            outcome,
        });
    }
}

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.report(
                Outcome::Error("cancelled"),
                "cancelled before it finished (deadline or caller gone)",
            );
        }
    }
}

//! The node service's operations in domain terms: admission, per-sandbox serialisation,
//! deadlines, resolution, execution through the [`Attacher`], events.
//!
//! Every mutating operation runs on its own task: if the caller goes away (or tonic drops the
//! handler when `grpc-timeout` passes), the work still finishes or undoes itself and the
//! sandbox lock is held until it has. No wire types here; `service.rs` adapts to gRPC.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use plexus_core::id::SandboxId;
use plexus_core::pod::PodIdentity;
use plexus_telemetry::{Metrics, Operation};
use tokio::sync::broadcast;

use crate::admission::Admission;
use crate::attacher::Attacher;
use crate::error::{Error, Result};
use crate::model::{AttachmentView, Event, EventKind, SandboxView, Selector, TeardownOutcome};
use crate::planner::{Explanation, Planner};
use fresh::SetupMarks;
use plexus_engine::{LinkDeletion, SandboxLock};

mod adopt;
mod early;
mod edit;
mod finishing;
mod fresh;
mod hotplug;
mod reconcile;
mod run;
mod setup;
mod sweep;

pub use adopt::{ADOPTED_DRIVER, LivePod};
pub use early::{Early, Recent};
pub use edit::{Edited, NetworksAnnotation};
pub use finishing::{FINISH_BUDGET, Setup};
pub use hotplug::HotplugOutcome;
pub use sweep::{NetnsState, SweepOutcome, netns_state};

/// Events kept for slow Watch subscribers before they lag.
const EVENT_BUFFER: usize = 1024;

/// Concurrency limits and time budgets of a [`Node`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Mutating requests running at once.
    pub max_parallel: usize,
    /// Mutating requests waiting beyond that.
    pub max_queued: usize,
    /// Longest a SetupPod may take, with or without a `grpc-timeout` from the caller
    /// (`nri.deadlineBudget`: the pod-start path must answer before containerd gives up on
    /// the NRI hook). `None`: only the caller's timeout bounds it.
    pub setup_budget: Option<Duration>,
}

impl Default for Limits {
    /// The configuration defaults: 16 running, 256 queued, a 1500 ms setup budget.
    fn default() -> Self {
        Self {
            max_parallel: 16,
            max_queued: 256,
            setup_budget: Some(Duration::from_millis(1500)),
        }
    }
}

/// The node service's state: shared by every request.
#[derive(Debug)]
pub struct Node<A, P> {
    attacher: Arc<A>,
    planner: Arc<P>,
    admission: Admission,
    marks: SetupMarks,
    events: broadcast::Sender<Event>,
    closing: tokio::sync::watch::Sender<bool>,
    metrics: Option<Metrics>,
    setup_budget: Option<Duration>,
    /// Sandboxes torn down lately: an early setup never sets one up again.
    torn_down: std::sync::Mutex<early::Recent>,
    /// Kubernetes mode: the pods' networks annotations, for annotation-first Attach/Detach.
    annotation: std::sync::OnceLock<Arc<dyn NetworksAnnotation>>,
    /// The shim path: how plexus installs itself as the runtime's CNI network (the primary
    /// it wraps plans adopted pods' eth0).
    runtime_cni: std::sync::OnceLock<crate::cni::install::Settings>,
}

/// Result of a setup: the sandbox as recorded and its network-status.
#[derive(Debug, Clone)]
pub struct SetupOutcome {
    /// The recorded sandbox (empty attachments for host-network pods).
    pub sandbox: SandboxView,
    /// The network-status annotation value.
    pub network_status: String,
}

/// Result of a reconcile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileOutcome {
    /// Sandboxes torn down.
    pub torn_down: Vec<String>,
    /// `"<id>: <cause>"` for each failure.
    pub failed: Vec<String>,
    /// `"<id>: <why>"` for each stale-looking sandbox kept because a setup or attach was in
    /// flight, or started or finished after the request arrived (the live list predates it).
    pub kept: Vec<String>,
}

impl<A: Attacher, P: Planner> Node<A, P> {
    /// A node over an attacher and a planner.
    pub fn new(attacher: Arc<A>, planner: Arc<P>, limits: Limits) -> Arc<Self> {
        Self::build(attacher, planner, limits, None)
    }

    /// A node that also records request metrics.
    pub fn with_metrics(
        attacher: Arc<A>,
        planner: Arc<P>,
        limits: Limits,
        metrics: Metrics,
    ) -> Arc<Self> {
        Self::build(attacher, planner, limits, Some(metrics))
    }

    fn build(
        attacher: Arc<A>,
        planner: Arc<P>,
        limits: Limits,
        metrics: Option<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            attacher,
            planner,
            admission: Admission::new(limits.max_parallel, limits.max_queued),
            marks: SetupMarks::default(),
            torn_down: std::sync::Mutex::new(early::Recent::new(early::TORN_DOWN)),
            events: broadcast::channel(EVENT_BUFFER).0,
            closing: tokio::sync::watch::channel(false).0,
            metrics,
            setup_budget: limits.setup_budget,
            annotation: std::sync::OnceLock::new(),
            runtime_cni: std::sync::OnceLock::new(),
        })
    }

    /// The attacher (for recovery at start).
    pub fn attacher(&self) -> &A {
        &self.attacher
    }

    /// Tells the node plexus is the runtime's CNI network, installed with `settings`
    /// (`cni.install: auto`).
    pub fn set_runtime_cni(&self, settings: crate::cni::install::Settings) {
        let _ = self.runtime_cni.set(settings);
    }

    /// The planner (the CNI path resolves with the wrapped primary).
    pub fn planner(&self) -> &P {
        &self.planner
    }

    /// Admission counters: (running, queued).
    pub fn load(&self) -> (usize, usize) {
        (self.admission.running(), self.admission.queued())
    }

    /// True while a setup or attach of `sandbox_id` waits or runs.
    pub fn busy(&self, sandbox_id: &str) -> bool {
        self.marks.busy_since(sandbox_id, Instant::now()).is_some()
    }

    /// Subscribes to attachment events.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Sets the attachments-by-network gauge from the records (no-op without metrics).
    pub fn refresh_attachment_gauge(&self) -> Result<()> {
        let Some(metrics) = &self.metrics else {
            return Ok(());
        };
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for sandbox in self.attacher.sandboxes()? {
            for a in sandbox.attachments {
                *counts.entry(a.network).or_default() += 1;
            }
        }
        metrics.clear_attachments();
        for (network, count) in counts {
            metrics.set_attachments(&network, count);
        }
        Ok(())
    }

    /// Ends every Watch stream (at shutdown, so graceful shutdown does not wait on them).
    pub fn close_watchers(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once [`Node::close_watchers`] was called.
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.closing.subscribe();
        async move {
            // An error means the node is gone, which also ends the stream.
            let _ = rx.wait_for(|closing| *closing).await;
        }
    }

    pub(super) fn publish(
        &self,
        kind: EventKind,
        sandbox: &SandboxView,
        a: Option<&AttachmentView>,
        msg: &str,
    ) {
        if let (Some(metrics), Some(a)) = (&self.metrics, a) {
            match kind {
                EventKind::Attached => metrics.attachment_added(&a.network),
                EventKind::Detached => metrics.attachment_removed(&a.network),
                EventKind::AttachFailed | EventKind::DetachFailed => {}
            }
        }
        // No subscriber is fine.
        let _ = self.events.send(Event {
            kind,
            sandbox_id: sandbox.sandbox_id.to_string(),
            pod: sandbox.pod.clone(),
            attachment: a.cloned(),
            message: msg.to_owned(),
            at: SystemTime::now(),
        });
    }

    /// Tears down everything recorded for a sandbox.
    /// `links` says whether the links the kernel destroys with the pod's netns may be
    /// deleted after the answer (the runtime removes the netns right after).
    pub async fn teardown_pod(
        self: &Arc<Self>,
        sandbox_id: SandboxId,
        timeout: Option<Duration>,
        links: LinkDeletion,
    ) -> Result<TeardownOutcome> {
        let op = format!("tearing down sandbox {sandbox_id}");
        let run = self.run(
            Operation::Teardown,
            op,
            sandbox_id.clone(),
            timeout,
            None,
            move |node, deadline, lock| node.teardown_locked(lock, deadline, links),
        );
        self.measured(Operation::Teardown, run).await
    }

    async fn teardown_locked(
        self: Arc<Self>,
        lock: SandboxLock,
        deadline: Option<plexus_core::deadline::Deadline>,
        links: LinkDeletion,
    ) -> Result<TeardownOutcome> {
        let sandbox_id = lock.sandbox_id().clone();
        // Under the lock, before anything is removed: an early setup waiting for it must
        // not set the sandbox up again afterwards.
        self.torn_down
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sandbox_id.as_str());
        let result = self.attacher.teardown(&lock, links, deadline).await;
        // The pod, for the events: the outcome names it; after a failure the record kept
        // for the retry does (read only then, off a stop's usual path).
        let pod = match &result {
            Ok(outcome) => outcome.pod.clone(),
            Err(_) => self
                .attacher
                .sandbox(&sandbox_id)
                .ok()
                .flatten()
                .map(|s| s.pod),
        };
        let view = SandboxView {
            sandbox_id,
            pod: pod.unwrap_or_default(),
            netns: Default::default(),
            attachments: Vec::new(),
        };
        match &result {
            Ok(outcome) => {
                self.marks.forget(view.sandbox_id.as_str());
                for a in &outcome.removed {
                    self.publish(EventKind::Detached, &view, Some(a), "");
                }
            }
            Err(err) => self.publish(EventKind::DetachFailed, &view, None, &err.to_string()),
        }
        result
    }

    /// The one recorded sandbox a selector names.
    pub fn find(&self, selector: &Selector) -> Result<SandboxView> {
        if let Selector::Sandbox(id) = selector {
            return self
                .attacher
                .sandbox(id)?
                .ok_or_else(|| Error::SandboxNotFound {
                    selector: selector.to_string(),
                });
        }
        if *selector == Selector::All {
            return Err(Error::InvalidRequest {
                message: "target: give a sandbox id or a pod namespace/name".to_owned(),
            });
        }
        let mut found: Vec<SandboxView> = self
            .attacher
            .sandboxes()?
            .into_iter()
            .filter(|s| selector.matches(s.sandbox_id.as_str(), &s.pod))
            .collect();
        match found.len() {
            0 => Err(Error::SandboxNotFound {
                selector: selector.to_string(),
            }),
            1 => Ok(found.remove(0)),
            count => Err(Error::AmbiguousPod {
                pod: selector.to_string(),
                count,
            }),
        }
    }

    /// Every recorded sandbox the selector matches.
    pub fn list(&self, selector: &Selector) -> Result<Vec<SandboxView>> {
        Ok(self
            .attacher
            .sandboxes()?
            .into_iter()
            .filter(|s| selector.matches(s.sandbox_id.as_str(), &s.pod))
            .collect())
    }

    /// The network-status annotation value of a recorded sandbox.
    pub fn network_status(&self, sandbox: &SandboxView) -> Result<String> {
        self.planner.network_status(sandbox)
    }

    /// Dry-run resolution.
    pub fn explain(
        &self,
        pod: &PodIdentity,
        annotations: &BTreeMap<String, String>,
    ) -> Explanation {
        self.planner.explain(pod, annotations)
    }
}

/// True when `sandbox` holds exactly the plan's interfaces, all attached.
pub(super) fn require(field: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::InvalidRequest {
            message: format!("{field} is required"),
        });
    }
    Ok(())
}

//! Setting a pod up: resolving its networks, running the plan under the sandbox's lock,
//! publishing what was attached, and the hostNetwork case. The early setup from
//! containerd's events (`early.rs`) runs the same path, marked `early`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use plexus_telemetry::Operation;

use super::{Node, SetupOutcome, require};
use crate::attacher::{Attacher, SetupDone};
use crate::error::{Error, Result};
use crate::model::{EventKind, SandboxSpec, SandboxView};
use crate::planner::Planner;

/// Who a setup runs for, which decides what it does with a sandbox torn down meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// A runtime's or a caller's request: measured, its failures published.
    Request,
    /// An early setup (`early.rs`): nothing for a sandbox that has a record or was torn
    /// down; failures not published, not measured (the hook's own setup is).
    Early,
    /// A setup going on past its answer (`finishing.rs`): refused for a sandbox torn down
    /// before it got the lock (a Stop that overtook it), so it never sets up a stopped pod.
    Finishing,
}

impl<A: Attacher, P: Planner> Node<A, P> {
    /// Resolves and attaches a pod's networks, records them and renders network-status.
    pub async fn setup_pod(
        self: &Arc<Self>,
        spec: SandboxSpec,
        annotations: BTreeMap<String, String>,
        timeout: Option<Duration>,
    ) -> Result<SetupOutcome> {
        let budget = self.setup_budget;
        self.measured(
            Operation::Setup,
            self.setup_pod_unmeasured(spec, annotations, timeout, budget, Mode::Request),
        )
        .await
    }

    /// [`Node::setup_pod`] bounded by `budget` instead of the node's setup budget.
    pub(super) async fn setup_pod_unmeasured(
        self: &Arc<Self>,
        spec: SandboxSpec,
        annotations: BTreeMap<String, String>,
        timeout: Option<Duration>,
        budget: Option<Duration>,
        mode: Mode,
    ) -> Result<SetupOutcome> {
        require("pod.namespace", &spec.pod.namespace)?;
        require("pod.name", &spec.pod.name)?;
        let empty = SandboxView {
            sandbox_id: spec.sandbox_id.clone(),
            pod: spec.pod.clone(),
            netns: spec.netns.to_string_lossy().into_owned(),
            attachments: Vec::new(),
        };
        if spec.netns.as_os_str().is_empty() {
            self.no_netns(&empty, &annotations);
            return Ok(SetupOutcome {
                sandbox: empty,
                network_status: String::new(),
            });
        }
        let plan = self.planner.plan_fetching(&spec.pod, &annotations).await?;
        if plan.attachments.is_empty() {
            let network_status = self.planner.network_status(&empty)?;
            return Ok(SetupOutcome {
                sandbox: empty,
                network_status,
            });
        }
        self.setup_planned_as(spec, plan, timeout, budget, mode)
            .await
    }

    /// Executes a resolved plan for a sandbox (serialised with its other operations),
    /// records it and renders network-status; `budget` bounds it besides `timeout`.
    pub async fn setup_planned(
        self: &Arc<Self>,
        spec: SandboxSpec,
        plan: plexus_core::plan::Plan,
        timeout: Option<Duration>,
        budget: Option<Duration>,
    ) -> Result<SetupOutcome> {
        self.setup_planned_as(spec, plan, timeout, budget, Mode::Request)
            .await
    }

    /// [`Node::setup_planned`] run as `mode` says.
    pub(super) async fn setup_planned_as(
        self: &Arc<Self>,
        spec: SandboxSpec,
        plan: plexus_core::plan::Plan,
        timeout: Option<Duration>,
        budget: Option<Duration>,
        mode: Mode,
    ) -> Result<SetupOutcome> {
        let early = mode == Mode::Early;
        let empty = SandboxView {
            sandbox_id: spec.sandbox_id.clone(),
            pod: spec.pod.clone(),
            netns: spec.netns.to_string_lossy().into_owned(),
            attachments: Vec::new(),
        };
        let op = format!("setting up pod {} (sandbox {})", spec.pod, spec.sandbox_id);
        let id = spec.sandbox_id.clone();
        // Marked from arrival (queued included) until the work's task ends: see `fresh`.
        let busy = self.marks.begin(id.as_str());
        let run = self.run(
            Operation::Setup,
            op,
            id,
            timeout,
            budget,
            move |node, deadline, lock| async move {
                let _busy = busy;
                let view = empty.clone();
                let id = lock.sandbox_id();
                let gone = || {
                    node.torn_down
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .contains(id.as_str())
                };
                match mode {
                    Mode::Early if gone() || node.attacher.sandbox(id)?.is_some() => {
                        return Ok(SetupOutcome {
                            sandbox: view,
                            network_status: String::new(),
                        });
                    }
                    Mode::Finishing if gone() => {
                        return Err(Error::Conflict {
                            sandbox_id: id.to_string(),
                            message: "the pod was stopped before its networks were set up; \
                                      nothing was set up"
                                .to_owned(),
                        });
                    }
                    _ => {}
                }
                // A retried setup of a sandbox already set up exactly as planned is
                // answered from its record (the attacher decides), without new events.
                match node.attacher.setup(&lock, spec, plan, deadline).await {
                    Ok(SetupDone { sandbox, reused }) => {
                        if !reused {
                            for a in &sandbox.attachments {
                                node.publish(EventKind::Attached, &sandbox, Some(a), "");
                            }
                        }
                        let network_status = node.planner.network_status(&sandbox)?;
                        Ok(SetupOutcome {
                            sandbox,
                            network_status,
                        })
                    }
                    Err(err) => {
                        if !early {
                            node.publish(EventKind::AttachFailed, &view, None, &err.to_string());
                        }
                        Err(err)
                    }
                }
            },
        );
        match early {
            // The hook's own setup is what the metrics count.
            true => run.await,
            false => self.measured(Operation::Setup, run).await,
        }
    }

    /// A sandbox without a netns path (a hostNetwork pod, or a runtime that did not send
    /// the path) gets nothing, and still starts: refusing would keep a hostNetwork pod from
    /// ever running, and plexusd cannot tell the two apart. If the pod asked for networks,
    /// that is said loudly (a warning and a Watch `ATTACH_FAILED` event) instead of silently.
    fn no_netns(&self, view: &SandboxView, annotations: &BTreeMap<String, String>) {
        let requested = match self.planner.plan(&view.pod, annotations) {
            Ok(plan) => {
                let names: Vec<&str> = plan
                    .attachments
                    .iter()
                    .filter(|a| !a.runtime_managed)
                    .map(|a| a.network.as_str())
                    .collect();
                if names.is_empty() {
                    return;
                }
                names.join(", ")
            }
            Err(err) => format!("(unresolvable: {err})"),
        };
        let message = format!("host-network pod (no netns): networks {requested} ignored");
        tracing::warn!(sandbox.id = %view.sandbox_id, pod = %view.pod, "{message}");
        self.publish(EventKind::AttachFailed, view, None, &message);
    }
}

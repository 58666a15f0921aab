//! Adoption of live pods plexus has no record of (running before plexus was installed, or set
//! up by another agent), as reported by the runtime (NRI Synchronize → Reconcile). Their
//! current interfaces are recorded as they are — every planned attachment runtime-managed,
//! with no route change — so nothing in the pod is touched: no link made, moved or deleted,
//! no plugin run, no event. The record is what the hot-plug controller then compares the
//! pod's annotation with, so only later edits of the annotation are acted on. An adopted
//! interface is never detached by plexus (its maker holds its IPAM state); it goes with the
//! pod. One exception at teardown: where plexus is the runtime's CNI network (the shim path)
//! the runtime's DEL reaches only plexus, so plexus runs the primary's DEL for an adopted
//! eth0 (its lease would leak otherwise).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use plexus_core::plan::DefaultRoutePlan;
use plexus_telemetry::Operation;

use super::Node;
use crate::attacher::Attacher;
use crate::model::SandboxSpec;
use crate::planner::Planner;

/// A pod the runtime reports alive, with what a setup would be given.
#[derive(Debug, Clone)]
pub struct LivePod {
    /// Sandbox, pod identity and netns path.
    pub spec: SandboxSpec,
    /// The pod's annotations as the runtime has them.
    pub annotations: BTreeMap<String, String>,
}

/// The driver name of an adopted (runtime-managed, non-primary) attachment in views.
pub const ADOPTED_DRIVER: &str = "runtime";

impl<A: Attacher, P: Planner> Node<A, P> {
    /// On the shim path, the primary network plexus wraps: what made the eth0 of a pod
    /// started before plexus took the runtime's CNI slot. `None` on the NRI path, or when
    /// there is no usable primary (logged; the pod is then planned as on NRI).
    fn wrapped_primary(&self) -> Option<serde_json::Value> {
        let settings = self.runtime_cni.get()?;
        match crate::cni::install::wrapped_primary(settings) {
            Ok(primary) if primary.is_object() => Some(primary),
            Ok(_) => None,
            Err(reason) => {
                tracing::warn!(dir = %settings.primary_dir.display(), %reason,
                    "adoption: no primary network to wrap; an adopted eth0 is left to the runtime");
                None
            }
        }
    }

    /// Records every live pod with a netns and no record, without touching it. `arrived` is
    /// when the runtime's list was taken: a sandbox set up or busy since is left alone.
    /// Returns the adopted sandbox ids; a pod whose networks do not resolve now is skipped
    /// (logged) and tried again at the next reconcile.
    pub async fn adopt(self: &Arc<Self>, live: Vec<LivePod>, arrived: Instant) -> Vec<String> {
        let mut adopted = Vec::new();
        let wrapped = self.wrapped_primary();
        for pod in live {
            if pod.spec.netns.as_os_str().is_empty() {
                continue;
            }
            let id = pod.spec.sandbox_id.clone();
            match self.attacher.sandbox(&id) {
                Ok(None) => {}
                Ok(Some(_)) => continue,
                Err(err) => {
                    tracing::warn!(sandbox.id = %id, error = %err, "adoption: reading the record");
                    continue;
                }
            }
            let planned = match &wrapped {
                Some(primary) => self.planner.plan_cni(
                    &pod.spec.pod,
                    &pod.annotations,
                    &plexus_core::InterfaceName::eth0(),
                    Some(primary),
                ),
                None => self.planner.plan(&pod.spec.pod, &pod.annotations),
            };
            let mut plan = match planned {
                Ok(plan) => plan,
                Err(err) => {
                    tracing::warn!(sandbox.id = %id, pod = %pod.spec.pod, error = %err,
                        "not adopted now: its networks do not resolve (tried again at the next reconcile)");
                    continue;
                }
            };
            for a in &mut plan.attachments {
                // A primary the plan has plexus make (plexus is the runtime's CNI network,
                // the shim path) was made by the runtime before plexus took that place:
                // the runtime will not DEL it any more, so plexus does at teardown.
                a.release_on_teardown = a.primary && !a.runtime_managed;
                a.runtime_managed = true;
                a.route_plan = DefaultRoutePlan::default();
            }
            let op = format!("adopting pod {} (sandbox {id})", pod.spec.pod);
            let spec = pod.spec;
            let result = self
                .run(
                    Operation::Setup,
                    op,
                    id.clone(),
                    None,
                    None,
                    move |node, deadline, lock| async move {
                        // Under the lock: a setup that started after the list wins.
                        if node
                            .marks
                            .busy_since(spec.sandbox_id.as_str(), arrived)
                            .is_some()
                            || node.attacher.sandbox(&spec.sandbox_id)?.is_some()
                        {
                            return Ok(false);
                        }
                        node.attacher
                            .setup(&lock, spec, plan, deadline)
                            .await
                            .map(|_| true)
                    },
                )
                .await;
            match result {
                Ok(true) => adopted.push(id.to_string()),
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(sandbox.id = %id, error = %err, "adoption failed");
                }
            }
        }
        if !adopted.is_empty() {
            tracing::info!(
                ?adopted,
                "adopted live pods plexus had no record of; their interfaces are left as they are"
            );
        }
        adopted
    }
}

//! Reconcile: tearing down every recorded sandbox the runtime no longer lists, without
//! touching one that was set up or changed after the list was taken.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plexus_core::id::SandboxId;
use plexus_telemetry::Operation;

use super::{Node, ReconcileOutcome};
use crate::attacher::Attacher;
use crate::error::Result;
use crate::model::TeardownOutcome;
use crate::planner::Planner;

impl<A: Attacher, P: Planner> Node<A, P> {
    /// Tears down every recorded sandbox that is not live. The live list is the runtime's
    /// snapshot when it sent the request: each stale-looking sandbox is checked again under
    /// its lock and kept if a setup or attach is in flight or touched it after the request
    /// arrived (a pod started meanwhile is missing from the list but alive).
    pub async fn reconcile(
        self: &Arc<Self>,
        live: Vec<SandboxId>,
        timeout: Option<Duration>,
    ) -> Result<ReconcileOutcome> {
        self.measured(
            Operation::Reconcile,
            self.reconcile_unmeasured(live, timeout),
        )
        .await
    }

    async fn reconcile_unmeasured(
        self: &Arc<Self>,
        live: Vec<SandboxId>,
        timeout: Option<Duration>,
    ) -> Result<ReconcileOutcome> {
        let arrived = Instant::now();
        let live: HashSet<SandboxId> = live.into_iter().collect();
        let stale: Vec<SandboxId> = self
            .attacher
            .sandboxes()?
            .into_iter()
            .map(|s| s.sandbox_id)
            .filter(|id| !live.contains(id))
            .collect();
        let end = timeout.map(|t| arrived + t);
        let mut outcome = ReconcileOutcome::default();
        for id in stale {
            // The caller's budget covers the whole reconcile, not each teardown.
            let left = end.map(|end| end.saturating_duration_since(Instant::now()));
            match self.reconcile_one(id.clone(), arrived, left).await {
                Ok(Ok(_)) => outcome.torn_down.push(id.to_string()),
                Ok(Err(why)) => outcome.kept.push(format!("{id}: {why}")),
                Err(err) => outcome.failed.push(format!("{id}: {err}")),
            }
        }
        if !outcome.kept.is_empty() {
            tracing::info!(kept = ?outcome.kept,
                "reconcile kept sandboxes missing from the live list but set up since it was taken");
        }
        Ok(outcome)
    }

    /// Tears one stale-looking sandbox down like TeardownPod unless, once its lock is held,
    /// it turns out to be busy or fresh (`Ok(Err(why))`) or no longer recorded.
    async fn reconcile_one(
        self: &Arc<Self>,
        id: SandboxId,
        arrived: Instant,
        timeout: Option<Duration>,
    ) -> Result<std::result::Result<TeardownOutcome, &'static str>> {
        let op = format!("tearing down sandbox {id} (not live)");
        self.run(
            Operation::Teardown,
            op,
            id.clone(),
            timeout,
            None,
            move |node, deadline, lock| async move {
                if let Some(why) = node.marks.busy_since(id.as_str(), arrived) {
                    return Ok(Err(why));
                }
                if node.attacher.sandbox(&id)?.is_none() {
                    return Ok(Err("already torn down"));
                }
                node.teardown_locked(lock, deadline, plexus_engine::LinkDeletion::BeforeAnswer)
                    .await
                    .map(Ok)
            },
        )
        .await
    }
}

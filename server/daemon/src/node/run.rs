//! How every operation runs: on its own task, under its sandbox lock and then a
//! parallelism slot, within its deadline, labelled by its entry point; and how a request
//! is measured once, whatever stage it fails at.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plexus_core::id::SandboxId;
use plexus_engine::SandboxLock;
use plexus_telemetry::{Metrics, Operation, Path};
use tracing::Instrument;

use super::Node;
use crate::attacher::Attacher;
use crate::error::{Error, Result};
use crate::planner::Planner;
use plexus_core::deadline::Deadline;

impl<A: Attacher, P: Planner> Node<A, P> {
    /// Runs `work` on its own task with `sandbox` locked (the attacher's lock, the one lock
    /// of a sandbox, handed to `work` for the attacher's calls) and then after admission.
    /// `timeout` is the caller's budget, `budget` the operation's own; the deadline `work`
    /// gets is the earlier of the two (see [`Deadline::for_request`]).
    ///
    /// Setup and attach undo themselves when the deadline passes and answer with what was
    /// undone. Teardown and detach run to the end whatever the deadline (a half-finished
    /// removal would leak): once it passes, the caller is answered `DEADLINE_EXCEEDED`
    /// saying so while the task finishes, still holding the sandbox lock, so a retry waits
    /// for it and then sees the result.
    pub(super) async fn run<T, F, Fut>(
        self: &Arc<Self>,
        kind: Operation,
        operation: String,
        sandbox: SandboxId,
        timeout: Option<Duration>,
        budget: Option<Duration>,
        work: F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Self>, Option<Deadline>, SandboxLock) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + Send,
    {
        let deadline = Deadline::for_request(Instant::now(), timeout, budget);
        let work_until = deadline.map(|d| d.work());
        let node = Arc::clone(self);
        let op = operation.clone();
        let entry = crate::entry::current().unwrap_or(Path::Api);
        // The task carries the caller's span, so the engine's spans hang below the RPC,
        // and its entry point, so the engine's per-attachment metrics are labelled by it.
        let task = tokio::spawn(crate::entry::scope(
            entry,
            async move {
                // The sandbox lock first, then a parallelism slot: a request queued behind
                // a busy sandbox (Stop and Remove both tear down) must not hold a slot
                // while it waits, or it starves other pods' starts node-wide.
                let lock = node.attacher.lock(&sandbox);
                let lock = match work_until {
                    Some(until) => {
                        tokio::time::timeout_at(until.into(), lock)
                            .await
                            .map_err(|_| Error::DeadlineExceeded {
                                operation: format!("waiting for other work on sandbox {sandbox}"),
                                undone: "nothing was done".to_owned(),
                            })?
                    }
                    None => lock.await,
                };
                let queued = node.metrics.as_ref().map(Metrics::queued);
                let _slot = node.admission.enter(&op, work_until).await?;
                drop(queued);
                let _running = node.metrics.as_ref().map(Metrics::in_flight);
                if deadline.is_some_and(|d| d.passed()) {
                    return Err(Error::DeadlineExceeded {
                        operation: op,
                        undone: "nothing was done (the deadline passed while waiting)".to_owned(),
                    });
                }
                let result = work(Arc::clone(&node), deadline, lock).await;
                if runs_to_completion(kind) && deadline.is_some_and(|d| d.passed()) {
                    match &result {
                        Ok(_) => {
                            tracing::info!(operation = %op, "finished after the caller's deadline")
                        }
                        Err(err) => tracing::warn!(operation = %op, error = %err,
                            "failed after the caller's deadline"),
                    }
                }
                result
            }
            .in_current_span(),
        ));
        let joined = match deadline {
            Some(deadline) if runs_to_completion(kind) => {
                let mut task = task;
                // On timeout the handle is dropped, not aborted: the task keeps running.
                // Nothing is undone, so the answer may wait until the undo time.
                tokio::time::timeout_at(deadline.undo().into(), &mut task)
                    .await
                    .ok()
            }
            _ => Some(task.await),
        };
        match joined {
            Some(joined) => joined
                .map_err(|e| Error::Worker {
                    operation,
                    message: e.to_string(),
                })
                .and_then(|r| r),
            None => Err(Error::DeadlineExceeded {
                operation,
                undone: "nothing is undone: it runs to the end in the background, as a \
                         half-finished removal would leak; ask again for the outcome"
                    .to_owned(),
            }),
        }
    }

    /// Runs one request's `work` and records it in the metrics, whatever stage it fails
    /// at (resolution included): its duration by entry point, operation and outcome, and
    /// a failure's reason. Calls nested in a measured one are not counted again.
    pub(crate) async fn measured<T>(
        &self,
        kind: Operation,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        if crate::entry::measured() {
            return work.await;
        }
        let started = Instant::now();
        let result = crate::entry::measuring(work).await;
        if let Some(metrics) = &self.metrics {
            let path = crate::entry::current().unwrap_or(Path::Api);
            let failure = result.as_ref().err().map(Error::reason);
            metrics.request_done(path, kind, started.elapsed(), failure);
        }
        result
    }
}

/// Teardown and detach are never cut short by a deadline.
fn runs_to_completion(kind: Operation) -> bool {
    matches!(kind, Operation::Teardown | Operation::Detach)
}

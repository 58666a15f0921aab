//! A setup that may finish after its answer (`SetupPodRequest.may_finish_later`): the
//! runtime's NRI `RunPodSandbox` must be answered within containerd's timeout, but when
//! the kernel keeps its rtnl lock for seconds (a burst of pod starts) a setup can still be
//! making its links when the answer is due. Cutting it short fails the pod and makes the
//! kubelet start a new sandbox, whose setup meets the same kernel. Instead, the caller
//! (plexus-nri) holds the pod's containers back at NRI `CreateContainer` until the setup
//! has finished, and the setup goes on within [`FINISH_BUDGET`].
//!
//! The answer is due when the request's undo time comes (nothing needs undoing before it,
//! so the work may use that time too). A setup that ends before then answers as any
//! setup does, its failure included. One that goes on publishes its events and logs its
//! outcome when it ends; its failure undoes what it made, as any failed setup's does, and
//! the caller's next SetupPod (at `CreateContainer`) sets the pod up again or reports why
//! not. It is measured to its end (the request metrics' duration is the setup's).
//!
//! Two orders with the runtime's Stop: a Stop that comes while the setup runs waits for
//! the sandbox's lock (its teardown is bounded far beyond [`FINISH_BUDGET`]) and removes
//! what was made, once; a Stop that got the lock first (the setup was still resolving the
//! pod's networks) marks the sandbox torn down, and the setup then refuses it
//! ([`Mode::Finishing`]). The same covers an answer that never reaches plexus-nri (tonic
//! ends the call at its `grpc-timeout`, a reserve/4 after the answer is due): plexus-nri
//! fails the pod, containerd stops it, and that Stop removes what the setup made.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plexus_core::deadline::Deadline;
use plexus_telemetry::Operation;
use tracing::Instrument as _;

use super::setup::Mode;
use super::{Node, SetupOutcome};
use crate::attacher::Attacher;
use crate::error::{Error, Result};
use crate::model::SandboxSpec;
use crate::planner::Planner;

/// Bound on a setup that goes on after its answer: as long as an early setup's, since no
/// runtime call waits on it (the pod's `CreateContainer` waits for it within its own
/// deadline, and is retried by the kubelet).
pub const FINISH_BUDGET: Duration = super::early::EARLY_BUDGET;

/// What a setup that may finish later answered.
#[derive(Debug, Clone)]
pub enum Setup {
    /// It ended before its answer was due.
    Done(SetupOutcome),
    /// It goes on after the answer.
    Finishing,
}

impl<A: Attacher, P: Planner> Node<A, P> {
    /// Sets up a pod as [`Node::setup_pod`] does, except that a setup still running when
    /// the answer is due (the undo time of `timeout` and the node's setup budget) goes on
    /// within [`FINISH_BUDGET`] and is answered [`Setup::Finishing`].
    pub async fn setup_pod_finishing_later(
        self: &Arc<Self>,
        spec: SandboxSpec,
        annotations: BTreeMap<String, String>,
        timeout: Option<Duration>,
    ) -> Result<Setup> {
        let answer_by =
            Deadline::for_request(Instant::now(), timeout, self.setup_budget).map(|d| d.undo());
        let (node, entry) = (Arc::clone(self), crate::entry::current());
        let (id, pod) = (spec.sandbox_id.clone(), spec.pod.clone());
        let started = Instant::now();
        let work = async move {
            let setup = node.setup_pod_unmeasured(
                spec,
                annotations,
                None,
                Some(FINISH_BUDGET),
                Mode::Finishing,
            );
            node.measured(Operation::Setup, setup).await
        };
        let work = match entry {
            Some(path) => tokio::spawn(crate::entry::scope(path, work).in_current_span()),
            None => tokio::spawn(work.in_current_span()),
        };
        let mut work = work;
        let joined = match answer_by {
            Some(at) => match tokio::time::timeout_at(at.into(), &mut work).await {
                Ok(joined) => joined,
                Err(_) => {
                    tracing::info!(sandbox.id = %id, %pod,
                        "pod network setup goes on after the answer; the pod's containers wait for it");
                    tokio::spawn(
                        async move {
                            match work.await {
                                Ok(Ok(_)) => tracing::info!(sandbox.id = %id, %pod,
                                    elapsed_ms = started.elapsed().as_millis() as u64,
                                    "pod networks set up after the answer"),
                                Ok(Err(err)) => tracing::warn!(sandbox.id = %id, %pod,
                                    error = %err,
                                    "pod network setup failed after the answer; the pod's \
                                     containers are held back until a setup succeeds"),
                                Err(err) => tracing::warn!(sandbox.id = %id, %pod,
                                    error = %err, "pod network setup ended abnormally"),
                            }
                        }
                        .in_current_span(),
                    );
                    return Ok(Setup::Finishing);
                }
            },
            None => work.await,
        };
        joined
            .map_err(|e| Error::Worker {
                operation: "setting up a pod".to_owned(),
                message: e.to_string(),
            })?
            .map(Setup::Done)
    }
}

//! Early setup on the NRI path: a pod's networks are set up when containerd creates its
//! sandbox container, while runc creates the sandbox's task, instead of when the runtime's
//! NRI `RunPodSandbox` asks (`crate::containerd_early` watches for the containers). The
//! hook's own SetupPod then finds the sandbox set up exactly as planned and answers from
//! its record; the pod's start no longer waits for the links to be made.
//!
//! The hook stays the authority: an early setup that cannot resolve the pod's networks,
//! fails or runs out of its bound publishes nothing and leaves its sandbox as it was (what
//! it made is undone as any failed setup's is); the hook then runs the setup itself and
//! reports what is wrong, to the runtime and in the pod's events, exactly once.

use std::sync::Arc;
use std::time::Duration;

use super::{LivePod, Node};
use crate::attacher::Attacher;
use crate::error::Result;
use crate::planner::Planner;

/// Bound on one early setup. No runtime waits on it (its hook waits for the sandbox's lock
/// within the hook's own deadline), so it may outlast a slow moment of the kernel, such as
/// a multi-second rtnl wait in a burst of pod starts, that would cut a hook's setup short.
pub const EARLY_BUDGET: Duration = Duration::from_secs(10);

/// What an early setup did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Early {
    /// The pod's networks were set up (or already were): the hook will find them.
    SetUp,
    /// Nothing for plexus to make (no netns, or no network of plexus's): the hook decides.
    Nothing,
}

impl<A: Attacher, P: Planner> Node<A, P> {
    /// Sets up `pod`, just created by the runtime, before its NRI hook arrives, within
    /// [`EARLY_BUDGET`]. An error is the hook's to report; nothing is published for it.
    pub async fn setup_early(self: &Arc<Self>, pod: LivePod) -> Result<Early> {
        let LivePod { spec, annotations } = pod;
        if spec.netns.as_os_str().is_empty() {
            return Ok(Early::Nothing);
        }
        let plan = self.planner.plan_fetching(&spec.pod, &annotations).await?;
        if plan.attachments.iter().all(|a| a.runtime_managed) {
            return Ok(Early::Nothing);
        }
        self.setup_planned_as(spec, plan, None, Some(EARLY_BUDGET), false)
            .await?;
        Ok(Early::SetUp)
    }
}

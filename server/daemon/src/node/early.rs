//! Early setup on the NRI path: a pod's networks are set up once containerd has written
//! its IP into the sandbox container's metadata, while runc creates the sandbox's task,
//! instead of when the runtime's NRI `RunPodSandbox` asks (`crate::containerd_early`
//! follows the containers). The hook's own SetupPod then finds the sandbox set up exactly
//! as planned and answers from its record, without making links within its budget.
//!
//! The hook stays the authority: an early setup that cannot resolve the pod's networks,
//! fails or runs out of its bound publishes no event, is not counted in the request
//! metrics and leaves its sandbox as it was (what it made is undone as any failed setup's
//! is); the hook then runs the setup itself and reports what is wrong, to the runtime and
//! in the pod's events, exactly once.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use super::setup::Mode;
use super::{LivePod, Node};
use crate::attacher::Attacher;
use crate::error::Result;
use crate::planner::Planner;

/// Bound on one early setup. No runtime waits on it (its hook waits for the sandbox's lock
/// within the hook's own deadline), so it may outlast a slow moment of the kernel, such as
/// a multi-second rtnl wait in a burst of pod starts, that would cut a hook's setup short.
pub const EARLY_BUDGET: Duration = Duration::from_secs(10);

/// Sandboxes torn down that an early setup must never set up again.
pub(super) const TORN_DOWN: usize = 4096;

/// The last `cap` ids remembered, the oldest forgotten first.
#[derive(Debug)]
pub struct Recent {
    cap: usize,
    order: VecDeque<String>,
    ids: HashSet<String>,
}

impl Recent {
    /// Remembers at most `cap` ids.
    pub fn new(cap: usize) -> Recent {
        Recent {
            cap: cap.max(1),
            order: VecDeque::new(),
            ids: HashSet::new(),
        }
    }

    /// Remembers `id`; true when it was not remembered yet.
    pub fn insert(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        if self.order.len() == self.cap
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        self.order.push_back(id.to_owned());
        self.ids.insert(id.to_owned());
        true
    }

    /// Whether `id` is remembered.
    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }
}

/// What an early setup did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Early {
    /// The pod's networks were set up (or already were): the hook will find them.
    SetUp,
    /// Nothing for plexus to make (no netns, or no network of plexus's): the hook decides.
    Nothing,
    /// The sandbox has a record already (its hook came first) or was torn down: untouched.
    Handled,
}

impl<A: Attacher, P: Planner> Node<A, P> {
    /// Sets up `pod`, just created by the runtime, before its NRI hook arrives, within
    /// [`EARLY_BUDGET`]. Under the sandbox's lock it does nothing when the sandbox has a
    /// record (the hook came first, or another early setup) or was torn down (a pod that
    /// ended before this ran). An error is the hook's to report: no event is published
    /// for it and it is not counted in the request metrics.
    pub async fn setup_early(self: &Arc<Self>, pod: LivePod) -> Result<Early> {
        let LivePod { spec, annotations } = pod;
        super::require("pod.namespace", &spec.pod.namespace)?;
        super::require("pod.name", &spec.pod.name)?;
        if spec.netns.as_os_str().is_empty() {
            return Ok(Early::Nothing);
        }
        let plan = self.planner.plan_fetching(&spec.pod, &annotations).await?;
        if plan.attachments.iter().all(|a| a.runtime_managed) {
            return Ok(Early::Nothing);
        }
        let outcome = self
            .setup_planned_as(spec, plan, None, Some(EARLY_BUDGET), Mode::Early)
            .await?;
        // Under the sandbox's lock it found a record or a teardown: it did nothing.
        Ok(match outcome.sandbox.attachments.is_empty() {
            true => Early::Handled,
            false => Early::SetUp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Recent;

    #[test]
    fn recent_ids_are_remembered_once_and_the_oldest_forgotten() {
        let mut recent = Recent::new(3);
        assert!(recent.insert("a"));
        assert!(!recent.insert("a"));
        assert!(recent.insert("b") && recent.insert("c"));
        assert!(recent.contains("a"));
        assert!(recent.insert("d"));
        assert!(!recent.contains("a"), "the oldest is forgotten");
        assert!(recent.contains("b") && recent.contains("d"));
        assert!(recent.insert("a"));
    }
}

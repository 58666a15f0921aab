//! The periodic sweep: tears down recorded sandboxes whose network namespace is gone.
//!
//! containerd removes a sandbox's netns bind mount on StopPodSandbox, but a pod created
//! before a containerd restart and deleted after it gets no NRI Stop/Remove, and no
//! Synchronize comes until the next reconnect: its leases and host-side links would leak.
//! The sweep stats every recorded netns path (one `stat` per record, off the request path)
//! and tears down those whose path is missing through the same path as TeardownPod
//! (admission, the sandbox's lock, metrics, Watch events). Only a missing path (`ENOENT`)
//! counts as gone, and it is checked again under the sandbox's lock, so a setup or teardown
//! in flight is never confused with a dead pod. Any other answer (`EACCES`, `ENOTDIR`, a
//! netns directory plexusd cannot see at all) keeps the sandbox and is logged.

use std::io::ErrorKind;
use std::path::{Component, Path};
use std::sync::Arc;
use std::time::Duration;

use plexus_telemetry::Operation;

use super::Node;
use crate::attacher::Attacher;
use crate::error::Result;
use crate::model::{SandboxView, TeardownOutcome};
use crate::planner::Planner;

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepOutcome {
    /// Sandboxes whose netns was gone, torn down.
    pub torn_down: Vec<String>,
    /// `"<id>: <cause>"` for each teardown that failed (tried again next sweep).
    pub failed: Vec<String>,
    /// `"<id>: <netns>: <why>"` for each sandbox kept because its netns could not be
    /// checked (anything but a missing path).
    pub unchecked: Vec<String>,
}

/// What a `stat` of a recorded netns path says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetnsState {
    /// The path exists: the pod may be alive.
    Present,
    /// The path is missing (`ENOENT`) and its directory is visible: the pod is gone.
    Gone,
    /// Anything else; the sandbox is kept. Says why.
    Unknown(String),
}

/// Where a netns path lives: `/proc` for `/proc/<pid>/ns/net` (the whole `/proc/<pid>`
/// vanishes with the process), else the path's directory (`/var/run/netns`).
fn anchor(path: &Path) -> Option<&Path> {
    let mut parts = path.components();
    if parts.next() == Some(Component::RootDir)
        && parts.next() == Some(Component::Normal("proc".as_ref()))
    {
        return Some(Path::new("/proc"));
    }
    path.parent().filter(|p| !p.as_os_str().is_empty())
}

/// Checks a recorded netns path. A missing path only counts as gone when its directory
/// exists: a plexusd that cannot see the runtime's netns directory at all (not mounted into
/// its container) must not take every pod for dead.
pub fn netns_state(path: &Path) -> NetnsState {
    match std::fs::symlink_metadata(path) {
        Ok(_) => NetnsState::Present,
        Err(err) if err.kind() == ErrorKind::NotFound => match anchor(path) {
            None => NetnsState::Unknown("not an absolute path".to_owned()),
            Some(dir) => match std::fs::metadata(dir) {
                Ok(meta) if meta.is_dir() => NetnsState::Gone,
                Ok(_) => NetnsState::Unknown(format!("{} is not a directory", dir.display())),
                Err(err) => NetnsState::Unknown(format!(
                    "its directory {} is not visible to plexusd: {err}",
                    dir.display()
                )),
            },
        },
        Err(err) => NetnsState::Unknown(err.to_string()),
    }
}

impl<A: Attacher, P: Planner> Node<A, P> {
    /// One sweep: tears down every recorded sandbox whose netns path is gone (see the
    /// module docs). Records with an empty netns path are skipped. `Err` only when the
    /// records cannot be listed.
    pub async fn sweep(self: &Arc<Self>) -> Result<SweepOutcome> {
        let mut outcome = SweepOutcome::default();
        for sandbox in self.attacher.sandboxes()? {
            if sandbox.netns.is_empty() {
                continue;
            }
            match netns_state(Path::new(&sandbox.netns)) {
                NetnsState::Present => continue,
                NetnsState::Unknown(why) => {
                    let id = &sandbox.sandbox_id;
                    outcome
                        .unchecked
                        .push(format!("{id}: {}: {why}", sandbox.netns));
                    continue;
                }
                NetnsState::Gone => {}
            }
            let id = sandbox.sandbox_id.clone();
            let (pod, netns) = (sandbox.pod.to_string(), sandbox.netns.clone());
            let one = self.measured(Operation::Teardown, self.sweep_one(sandbox));
            match crate::entry::scope(plexus_telemetry::Path::Sweep, one).await {
                Ok(Some(done)) => {
                    let removed: Vec<String> = done
                        .removed
                        .iter()
                        .map(|a| format!("{} ({})", a.interface, a.network))
                        .collect();
                    tracing::info!(sandbox.id = %id, pod = %pod, netns = %netns,
                        removed = ?removed, "reclaimed the attachments of a sandbox whose network namespace is gone");
                    outcome.torn_down.push(id.to_string());
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(sandbox.id = %id, pod = %pod, netns = %netns, error = %err,
                        "tearing down a sandbox whose network namespace is gone failed; retried next sweep");
                    outcome.failed.push(format!("{id}: {err}"));
                }
            }
        }
        if !outcome.unchecked.is_empty() {
            tracing::warn!(kept = ?outcome.unchecked,
                "sweep kept sandboxes whose network namespace could not be checked");
        }
        Ok(outcome)
    }

    /// Tears one sandbox down like TeardownPod, if its netns is still gone once its lock is
    /// held. `None`: nothing to do any more (torn down meanwhile, or set up again).
    async fn sweep_one(self: &Arc<Self>, seen: SandboxView) -> Result<Option<TeardownOutcome>> {
        let id = seen.sandbox_id.clone();
        let op = format!(
            "tearing down sandbox {id} (its network namespace {} is gone)",
            seen.netns
        );
        self.run(
            Operation::Teardown,
            op,
            id.clone(),
            None,
            None,
            move |node, deadline, lock| async move {
                // The listing was taken without the lock: a teardown may have finished, a
                // setup may have recorded the sandbox again, in the meantime.
                let Some(now) = node.attacher.sandbox(&id)? else {
                    return Ok(None);
                };
                if now.netns.is_empty() || netns_state(Path::new(&now.netns)) != NetnsState::Gone {
                    return Ok(None);
                }
                node.teardown_locked(lock, deadline, plexus_engine::LinkDeletion::BeforeAnswer)
                    .await
                    .map(Some)
            },
        )
        .await
    }

    /// Runs [`Node::sweep`] every `period` (the first one period from now) until the
    /// returned task is aborted. One sweep at a time; a slow sweep delays the next.
    pub fn sweep_every(self: &Arc<Self>, period: Duration) -> tokio::task::JoinHandle<()> {
        let node = Arc::clone(self);
        tokio::spawn(async move {
            let start = tokio::time::Instant::now() + period;
            let mut tick = tokio::time::interval_at(start, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(err) = node.sweep().await {
                    tracing::warn!(error = %err, "sweep for sandboxes whose network namespace is gone");
                }
            }
        })
    }
}

//! Early setup through containerd's events, on the NRI path (issue 14): containerd 1.7
//! writes a pod's IP into its sandbox container's CRI metadata (with the pod's identity,
//! annotations and netns already there) tens of milliseconds before it calls NRI
//! `RunPodSandbox`, while runc creates the sandbox's task. plexusd follows
//! `/containers/update` (`plexus_containerd::created`) and sets each such sandbox's
//! networks up at once ([`Node::setup_early`]); the hook then finds them made.
//!
//! Early setups run at most half of `concurrency.maxParallel` at once; the others wait
//! for room (holding nothing: a sandbox's lock is taken only once its setup runs), at most
//! [`QUEUED`] of them and each at most [`QUEUE_WAIT`], after which it is left to its hook.
//! So in a burst the hooks, which containerd sends one at a time, each within its timeout,
//! wait only for their own sandbox's early setup, never behind other pods'. When
//! containerd cannot be reached, plexusd logs it once and retries; pods are then set up by
//! their hooks as without early setup.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use plexus_containerd::created::{Created, Inspector};
use tokio::sync::Semaphore;

use crate::attacher::Attacher;
use crate::config::ContainerdConfig;
use crate::entry::{self, Path};
use crate::node::{Early, Node, Recent};
use crate::planner::Planner;

/// Bound on connecting and subscribing, and on reading one sandbox back.
const CONTAINERD_TIMEOUT: Duration = Duration::from_secs(10);

/// Wait before subscribing again after containerd ended or broke the stream.
const RETRY: Duration = Duration::from_secs(5);

/// Early setups waiting for room at most.
const QUEUED: usize = 256;

/// Longest an early setup waits for room; by then its hook has usually come.
const QUEUE_WAIT: Duration = Duration::from_secs(3);

/// Sandboxes remembered as handled, so that another change of one during its creation
/// does not set it up twice.
const REMEMBERED: usize = 1024;

/// Watches containerd's new sandboxes and sets each up early, until the task is dropped.
pub fn start<A: Attacher, P: Planner>(
    node: &Arc<Node<A, P>>,
    config: ContainerdConfig,
    max_parallel: usize,
) -> tokio::task::JoinHandle<()> {
    let node = Arc::downgrade(node);
    let room = Room {
        running: Arc::new(Semaphore::new((max_parallel / 2).max(1))),
        queued: Arc::new(Semaphore::new(QUEUED)),
    };
    tokio::spawn(async move {
        let cfg = plexus_containerd::Config {
            socket: config.socket.clone(),
            namespace: config.namespace.clone(),
            timeout: CONTAINERD_TIMEOUT,
        };
        let mut failures = crate::recurring::Recurring::default();
        let seen = Arc::new(Mutex::new(Recent::new(REMEMBERED)));
        loop {
            match Created::subscribe(&cfg).await {
                Ok(mut created) => {
                    tracing::info!(socket = %cfg.socket.display(),
                        "early setup: watching containerd for new pod sandboxes");
                    failures.cleared();
                    loop {
                        match created.next().await {
                            Ok(Some(Ok(id))) => {
                                let Some(node) = node.upgrade() else { return };
                                spawn_one(node, &room, created.inspector(), &seen, id);
                            }
                            Ok(Some(Err(why))) => {
                                tracing::trace!(%why, "early setup: event passed over");
                            }
                            Ok(None) => {
                                tracing::info!(
                                    "early setup: containerd ended the event stream; subscribing again"
                                );
                                break;
                            }
                            Err(err) => {
                                tracing::warn!(error = %err, "early setup: containerd's event stream broke; subscribing again (pods are set up by their NRI hooks meanwhile)");
                                break;
                            }
                        }
                    }
                }
                Err(err) => {
                    let text = err.to_string();
                    if failures.failed(&text) {
                        tracing::warn!(error = %text, "early setup: cannot watch containerd for new pod sandboxes; retrying (pods are set up by their NRI hooks meanwhile)");
                    } else {
                        tracing::debug!(error = %text, "early setup: containerd still not reachable");
                    }
                }
            }
            if node.strong_count() == 0 {
                return;
            }
            tokio::time::sleep(RETRY).await;
        }
    })
}

/// Early setups running and waiting.
struct Room {
    running: Arc<Semaphore>,
    queued: Arc<Semaphore>,
}

/// In its own task: reads sandbox `id` back and, while it is being created with its
/// networks to be made, sets it up once there is room; when too many wait, or it waited
/// [`QUEUE_WAIT`], leaves it to its hook.
fn spawn_one<A: Attacher, P: Planner>(
    node: Arc<Node<A, P>>,
    room: &Room,
    mut inspector: Inspector,
    seen: &Arc<Mutex<Recent>>,
    id: String,
) {
    let Ok(queued) = room.queued.clone().try_acquire_owned() else {
        tracing::info!(sandbox.id = %id, "early setup: too many waiting; left to the NRI hook");
        return;
    };
    let (running, seen) = (room.running.clone(), seen.clone());
    tokio::spawn(async move {
        let seen_at = std::time::Instant::now();
        let inspected = tokio::time::timeout(CONTAINERD_TIMEOUT, inspector.inspect(&id)).await;
        let Ok(inspected) = inspected else {
            tracing::info!(sandbox.id = %id, "early setup: containerd did not answer in time; left to the NRI hook");
            return;
        };
        let sandbox = match inspected {
            Ok(Ok(sandbox)) => sandbox,
            Ok(Err(why)) => {
                tracing::debug!(%why, "early setup: sandbox passed over");
                return;
            }
            Err(err) => {
                tracing::debug!(sandbox.id = %id, error = %err, "early setup: containerd not asked; left to the NRI hook");
                return;
            }
        };
        // Another change of the same sandbox may arrive while this one runs.
        if !seen.lock().unwrap_or_else(|p| p.into_inner()).insert(&id) {
            return;
        }
        let pod = match crate::convert::containerd_sandbox(sandbox) {
            Ok(pod) => pod,
            Err(err) => {
                tracing::debug!(sandbox.id = %id, error = %err, "early setup: sandbox passed over");
                return;
            }
        };
        let permit = tokio::time::timeout(QUEUE_WAIT, running.acquire_owned()).await;
        drop(queued);
        let Ok(Ok(_permit)) = permit else {
            tracing::info!(sandbox.id = %id, "early setup: no room in time; left to the NRI hook");
            return;
        };
        let spec = pod.spec.clone();
        let waited = seen_at.elapsed();
        match entry::scope(Path::Nri, node.setup_early(pod)).await {
            Ok(Early::SetUp) => {
                let (waited_ms, took_ms) = (ms(waited), ms(seen_at.elapsed() - waited));
                tracing::info!(sandbox.id = %spec.sandbox_id, pod = %spec.pod, waited_ms,
                    took_ms, "early setup done");
            }
            Ok(Early::Nothing) => {}
            Ok(Early::Handled) => {
                tracing::debug!(sandbox.id = %spec.sandbox_id, "early setup: the hook or a teardown came first");
            }
            Err(err) => {
                tracing::info!(sandbox.id = %spec.sandbox_id, pod = %spec.pod, error = %err,
                    "early setup failed; left to the NRI hook");
            }
        }
    });
}

/// `d` in milliseconds, for the log.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

//! Adoption through containerd's API, for the CNI shim path: with NRI on, the runtime lists
//! its live pods to plexus-nri (Synchronize → Reconcile); with NRI off nothing does, so a
//! pod started before plexusd was installed (or while its state was lost) would stay
//! unknown — no network-status, no hot-plug. When `containerd.socket` is set, plexusd asks
//! containerd itself, once at start and then with every `reconcile.interval`, and adopts
//! the running sandboxes it has no record of exactly as [`Node::adopt`] does for NRI:
//! recorded as they are, nothing in the pod touched. Only records are added here; a dead
//! pod's record is the sweep's (its netns is gone), never inferred from a listing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::attacher::Attacher;
use crate::config::ContainerdConfig;
use crate::entry::{self, Path};
use crate::node::Node;
use crate::planner::Planner;

/// Bound on one listing of containerd's sandboxes.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a first listing is retried when the sweep is off (containerd may start after
/// plexusd).
const RETRY: Duration = Duration::from_secs(30);

/// What one adoption round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    /// Running sandboxes containerd listed (adoptable or not).
    pub listed: usize,
    /// Sandbox ids adopted in this round.
    pub adopted: Vec<String>,
}

/// Lists containerd's running sandboxes and adopts those without a record.
pub async fn adopt_once<A: Attacher, P: Planner>(
    node: &Arc<Node<A, P>>,
    config: &ContainerdConfig,
) -> Result<Round, plexus_containerd::Error> {
    let arrived = Instant::now();
    let listing = plexus_containerd::list_sandboxes(&plexus_containerd::Config {
        socket: config.socket.clone(),
        namespace: config.namespace.clone(),
        timeout: LIST_TIMEOUT,
    })
    .await?;
    for skipped in &listing.skipped {
        tracing::debug!(sandbox = %skipped, "containerd sandbox not adoptable");
    }
    let listed = listing.sandboxes.len();
    let live = listing
        .sandboxes
        .into_iter()
        .filter_map(|sandbox| {
            crate::convert::containerd_sandbox(sandbox)
                .inspect_err(|err| tracing::warn!(error = %err, "containerd sandbox not adoptable"))
                .ok()
        })
        .collect();
    let adopted = entry::scope(Path::Sweep, node.adopt(live, arrived)).await;
    Ok(Round { listed, adopted })
}

/// Adopts from containerd now and then every `period` (`reconcile.interval`); with no
/// period, until one listing has worked. A failure is logged once as a warning naming what
/// to do, then at debug while it repeats.
pub fn adopt_every<A: Attacher, P: Planner>(
    node: &Arc<Node<A, P>>,
    config: ContainerdConfig,
    period: Option<Duration>,
) -> tokio::task::JoinHandle<()> {
    let node = Arc::clone(node);
    tokio::spawn(async move {
        let mut failures = crate::recurring::Recurring::default();
        loop {
            match adopt_once(&node, &config).await {
                Ok(round) => {
                    if failures.cleared() {
                        tracing::info!(socket = %config.socket.display(), "containerd answers again");
                    }
                    tracing::debug!(
                        listed = round.listed,
                        adopted = round.adopted.len(),
                        "adoption through containerd"
                    );
                    if period.is_none() {
                        return;
                    }
                }
                Err(err) => {
                    let text = err.to_string();
                    if failures.failed(&text) {
                        tracing::warn!(error = %text, "cannot list containerd's pods to adopt those started before plexusd; retrying");
                    } else {
                        tracing::debug!(error = %text, "containerd still not listable");
                    }
                }
            }
            tokio::time::sleep(period.unwrap_or(RETRY)).await;
        }
    })
}

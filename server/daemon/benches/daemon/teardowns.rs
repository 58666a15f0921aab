//! The daemon bench's runtime teardowns: what NRI StopPodSandbox and the shim's CNI DEL
//! cost in-process, and the other pods' leases of the crowded case.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use plexus_core::SandboxId;
use plexus_core::pod::PodIdentity;
use plexus_engine::{Engine, LinkDeletion, state};
use plexus_server::planner::Planner;

use crate::PODS;

/// [`PODS`] setups and runtime teardowns (the shim's CNI DEL: answered once the leases are
/// released, before the links are deleted; the reaper's work is waited for between pods,
/// outside the timing).
/// Returns the setup and teardown times and the fsyncs before the teardowns' answers.
pub(crate) async fn runtime_teardowns(
    engine: &Engine,
    planner: &impl Planner,
    identity: &PodIdentity,
    ann: &BTreeMap<String, String>,
    netns: &Path,
    prefix: &str,
) -> (Vec<Duration>, Vec<Duration>, u64) {
    let (mut up, mut down, mut fsyncs) = (Vec::new(), Vec::new(), 0);
    for i in 0..PODS {
        let id = SandboxId::new(format!("{prefix}-{i}")).unwrap();
        up.push(set_up(engine, planner, identity, ann, netns, &id).await);
        let t = Instant::now();
        let f = state::fsyncs();
        stop(engine, &id, LinkDeletion::AfterAnswer).await;
        down.push(t.elapsed());
        fsyncs += state::fsyncs() - f;
        engine.reaped().await;
    }
    (up, down, fsyncs)
}

/// [`PODS`] setups and NRI StopPodSandbox teardowns (`LinkDeletion::AfterMark`: answered
/// once the record is marked, the leases released after). Returns the answer times and the
/// times from the request until no lease of the pod is left (looked at without pause).
pub(crate) async fn nri_stops(
    engine: &Engine,
    planner: &impl Planner,
    identity: &PodIdentity,
    ann: &BTreeMap<String, String>,
    netns: &Path,
    dir: &Path,
) -> (Vec<Duration>, Vec<Duration>) {
    let leases = dir.join("leases");
    let (mut answered, mut released) = (Vec::new(), Vec::new());
    for i in 0..PODS {
        let id = SandboxId::new(format!("nri-{i}")).unwrap();
        set_up(engine, planner, identity, ann, netns, &id).await;
        let held = leases_of(&leases, id.as_str());
        assert_eq!(held, 2, "the pod's two leases");
        let t = Instant::now();
        stop(engine, &id, LinkDeletion::AfterMark).await;
        answered.push(t.elapsed());
        while leases_of(&leases, id.as_str()) > 0 {
            tokio::task::yield_now().await;
        }
        released.push(t.elapsed());
        engine.reaped().await;
    }
    (answered, released)
}

/// How many lease files under `root`'s lease directories name `id`.
fn leases_of(root: &Path, id: &str) -> usize {
    let dirs = std::fs::read_dir(root).unwrap().flatten().map(|e| e.path());
    dirs.filter(|d| d.join("lock").exists())
        .flat_map(|d| std::fs::read_dir(d).unwrap().flatten())
        .filter(|e| {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            text.lines().next() == Some(id)
        })
        .count()
}

/// Writes `count` leases of other pods into every lease directory under `root` (those
/// holding a `lock` file), at the top of each /24, away from where the bench allocates.
/// Returns their paths.
pub(crate) fn crowd_leases(root: &Path, count: usize) -> Vec<std::path::PathBuf> {
    let mut written = Vec::new();
    let dirs = std::fs::read_dir(root).unwrap().flatten().map(|e| e.path());
    for dir in dirs.filter(|d| d.join("lock").exists()) {
        let last = std::fs::read_to_string(dir.join("last_reserved_ip.0")).unwrap();
        let prefix = last.rsplit_once('.').unwrap().0;
        for k in 0..count {
            let lease = dir.join(format!("{prefix}.{}", 254 - k));
            std::fs::write(&lease, format!("other-pod-{k}\r\nnet1")).unwrap();
            written.push(lease);
        }
    }
    written
}

/// Sets `id` up with `ann`'s networks in `netns`; returns how long that took (planning
/// included). Its done write is made durable after, outside the time.
async fn set_up(
    engine: &Engine,
    planner: &impl Planner,
    identity: &PodIdentity,
    ann: &BTreeMap<String, String>,
    netns: &Path,
    id: &SandboxId,
) -> Duration {
    let spec = plexus_engine::SandboxSpec {
        sandbox_id: id.clone(),
        pod: identity.clone(),
        netns: netns.to_path_buf(),
    };
    let t = Instant::now();
    let plan = planner.plan(identity, ann).unwrap();
    engine.setup(spec, plan).await.unwrap();
    let took = t.elapsed();
    engine.flush_state();
    took
}

/// The runtime's teardown of `id`, under its lock as plexusd runs it.
async fn stop(engine: &Engine, id: &SandboxId, links: LinkDeletion) {
    let lock = engine.lock(id).await;
    engine.teardown_locked_as(&lock, links).await.unwrap();
}

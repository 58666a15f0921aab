//! A sandbox has one lock, the engine's, and plexusd waits for it before taking a
//! parallelism slot: with one slot, a teardown of pod A waiting while something else holds
//! A's lock in the engine (as the engine's own recovery or any engine-level caller does)
//! leaves the slot free, and a request for pod B runs at once. With a second, plexusd-only
//! lock in front of the slot, A's teardown took the slot and then waited inside it for the
//! engine's lock, and B waited behind it. Unprivileged: the real engine over a temporary
//! state directory, and teardowns of sandboxes without a netns to touch.

use std::sync::Arc;
use std::time::Duration;

use plexus_core::SandboxId;
use plexus_engine::{Engine, EngineConfig};
use plexus_server::engine::EngineAttacher;
use plexus_server::node::{Limits, Node};
use plexus_server::test_util::FakePlanner;

fn id(s: &str) -> SandboxId {
    SandboxId::new(s).unwrap()
}

#[tokio::test]
async fn a_teardown_waiting_for_its_sandbox_in_the_engine_holds_no_slot() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::new(dir.path().join("state"));
    cfg.cni_cache_dir = dir.path().join("cache");
    cfg.ipam_data_dir = dir.path().join("leases");
    let engine = Engine::open(cfg).unwrap();
    let node = Node::new(
        Arc::new(EngineAttacher::new(engine.clone())),
        Arc::new(FakePlanner),
        Limits {
            max_parallel: 1,
            max_queued: 8,
            setup_budget: None,
        },
    );
    let held = engine.lock(&id("pod-a")).await;
    let a_down = tokio::spawn({
        let node = Arc::clone(&node);
        async move {
            node.teardown_pod(id("pod-a"), None, plexus_engine::LinkDeletion::BeforeAnswer)
                .await
        }
    });
    let waiting = async {
        while engine.lock_users(&id("pod-a")) < 2 {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("pod-a's teardown waits for the engine's lock of pod-a");
    let b_down = node.teardown_pod(id("pod-b"), None, plexus_engine::LinkDeletion::BeforeAnswer);
    let b = tokio::time::timeout(Duration::from_secs(10), b_down)
        .await
        .expect("pod-b's request got the only slot while pod-a's teardown waited")
        .expect("teardown of an unknown sandbox");
    assert!(!b.known);
    assert!(!a_down.is_finished());
    drop(held);
    assert!(!a_down.await.unwrap().expect("pod-a torn down").known);
    assert_eq!(engine.locked(), 0);
}

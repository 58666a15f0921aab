//! A request waiting for a busy sandbox does not hold a parallelism slot: with two slots,
//! pod A's slow setup in one and a teardown of A waiting behind it, pod B still starts at
//! once in the other (the sandbox lock is taken before the slot). Virtual time (paused
//! tokio clock), ordering assertions only.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use plexus_core::SandboxId;
use plexus_core::pod::PodIdentity;
use plexus_server::model::SandboxSpec;
use plexus_server::node::{Limits, Node};
use plexus_server::test_util::{Call, FakeAttacher, FakePlanner};

fn spec(id: &str) -> SandboxSpec {
    SandboxSpec {
        sandbox_id: SandboxId::new(id).unwrap(),
        pod: PodIdentity::new("default", id, "uid"),
        netns: format!("/var/run/netns/{id}").into(),
    }
}

fn networks(list: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("k8s.v1.cni.cncf.io/networks".to_owned(), list.to_owned())])
}

/// Yields until `pred` holds for the fake's calls (virtual time does not move meanwhile
/// unless every task is idle, which is what a sleep in the fake is).
async fn until(attacher: &FakeAttacher, pred: impl Fn(&[Call]) -> bool) {
    while !pred(&attacher.calls()) {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_waiting_for_its_sandbox_holds_no_slot() {
    let attacher = Arc::new(FakeAttacher::new());
    // Each attachment takes 10 s: A (two networks) needs 20 s, B (one) 10 s.
    attacher.set_delay(Duration::from_secs(10));
    let node = Node::new(
        Arc::clone(&attacher),
        Arc::new(FakePlanner),
        Limits {
            max_parallel: 2,
            max_queued: 8,
            setup_budget: None,
        },
    );
    let n = Arc::clone(&node);
    let a = tokio::spawn(async move { n.setup_pod(spec("pod-a"), networks("x,y"), None).await });
    until(&attacher, |c| {
        c.iter()
            .any(|c| matches!(c, Call::Setup(id, _) if id == "pod-a"))
    })
    .await;
    let n = Arc::clone(&node);
    let a_down = tokio::spawn(async move {
        n.teardown_pod(
            SandboxId::new("pod-a").unwrap(),
            None,
            plexus_engine::LinkDeletion::BeforeAnswer,
        )
        .await
    });
    // The teardown waits for pod-a's lock (held by the setup).
    while attacher.lock_users("pod-a") < 2 {
        tokio::task::yield_now().await;
    }
    let b = node
        .setup_pod(spec("pod-b"), networks("x"), None)
        .await
        .expect("pod-b set up");
    assert_eq!(b.sandbox.attachments.len(), 1);
    assert!(
        !a.is_finished(),
        "pod-b waited for pod-a's setup: the teardown queued behind pod-a held the second slot"
    );
    a.await.unwrap().expect("pod-a set up");
    a_down.await.unwrap().expect("pod-a torn down");
    // The teardown ran after the setup it waited for.
    let calls = attacher.calls();
    let setup_a = calls
        .iter()
        .position(|c| matches!(c, Call::Setup(id, _) if id == "pod-a"))
        .unwrap();
    let down_a = calls
        .iter()
        .position(|c| matches!(c, Call::Teardown(id) if id == "pod-a"))
        .unwrap();
    assert!(setup_a < down_a, "{calls:?}");
}

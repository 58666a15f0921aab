//! Reconcile over the fake attacher: the runtime's live list is a snapshot, so a sandbox
//! whose setup is in flight or finished after the request arrived is kept (reported as
//! kept, not torn down), while an idle stale sandbox is torn down in the same pass.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plexus_core::pod::PodIdentity;
use plexus_server::attacher::Attacher;
use plexus_server::model::SandboxSpec;
use plexus_server::node::{Limits, Node};
use plexus_server::test_util::{Call, FakeAttacher, FakePlanner};

type TestNode = Arc<Node<FakeAttacher, FakePlanner>>;

const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";

fn spec(id: &str, netns: &Path) -> SandboxSpec {
    SandboxSpec {
        sandbox_id: plexus_core::SandboxId::new(id).unwrap(),
        pod: PodIdentity::new("iot", id, ""),
        netns: netns.to_path_buf(),
    }
}

fn networks(list: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(NETWORKS.to_owned(), list.to_owned())])
}

async fn wait_for_call(fake: &FakeAttacher, call: &Call) {
    let until = Instant::now() + Duration::from_secs(5);
    while !fake.calls().contains(call) {
        assert!(Instant::now() < until, "no {call:?} in {:?}", fake.calls());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setup_finishing_after_the_reconcile_arrived_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let netns = dir.path().join("ns");
    let fake = Arc::new(FakeAttacher::new());
    let node: TestNode = Node::new(Arc::clone(&fake), Arc::new(FakePlanner), Limits::default());
    node.setup_pod(spec("a-stale", &netns), networks("lan"), None)
        .await
        .unwrap();
    node.setup_pod(spec("b-new", &netns), networks("lan"), None)
        .await
        .unwrap();

    // b-new is set up again (a second network): it holds b-new's lock for 400 ms.
    fake.set_delay(Duration::from_millis(200));
    let again = {
        let node = Arc::clone(&node);
        let netns = netns.clone();
        tokio::spawn(async move {
            node.setup_pod(spec("b-new", &netns), networks("lan,wan"), None)
                .await
        })
    };
    let call = Call::Setup("b-new".into(), vec!["net1".into(), "net2".into()]);
    wait_for_call(&fake, &call).await;

    // The runtime's list, taken before b-new's setup finished, names neither sandbox.
    let outcome = node.reconcile(Vec::new(), None).await.unwrap();
    let set_up = again.await.unwrap().unwrap();
    assert_eq!(set_up.sandbox.attachments.len(), 2);

    assert_eq!(outcome.torn_down, ["a-stale"]);
    assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
    assert_eq!(outcome.kept.len(), 1, "{:?}", outcome.kept);
    assert!(outcome.kept[0].starts_with("b-new: "), "{:?}", outcome.kept);
    assert!(!fake.calls().contains(&Call::Teardown("b-new".into())));
    let b = fake
        .sandbox(&plexus_core::SandboxId::new("b-new").unwrap())
        .unwrap()
        .expect("b-new still recorded");
    assert_eq!(b.attachments.len(), 2);

    // Once idle, a later reconcile whose live list still omits it does tear it down.
    let outcome = node.reconcile(Vec::new(), None).await.unwrap();
    assert_eq!(outcome.torn_down, ["b-new"]);
    assert!(outcome.kept.is_empty(), "{:?}", outcome.kept);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_sandbox_is_kept_and_an_idle_stale_one_torn_down() {
    let dir = tempfile::tempdir().unwrap();
    let netns = dir.path().join("ns");
    let fake = Arc::new(FakeAttacher::new());
    let node: TestNode = Node::new(Arc::clone(&fake), Arc::new(FakePlanner), Limits::default());
    for id in ["live", "stale"] {
        node.setup_pod(spec(id, &netns), networks("lan"), None)
            .await
            .unwrap();
    }
    let outcome = node
        .reconcile(vec![plexus_core::SandboxId::new("live").unwrap()], None)
        .await
        .unwrap();
    assert_eq!(outcome.torn_down, ["stale"]);
    assert!(outcome.kept.is_empty() && outcome.failed.is_empty());
    assert!(
        fake.sandbox(&plexus_core::SandboxId::new("live").unwrap())
            .unwrap()
            .is_some()
    );
    assert!(
        fake.sandbox(&plexus_core::SandboxId::new("stale").unwrap())
            .unwrap()
            .is_none()
    );
}

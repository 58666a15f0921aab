//! Early setup (issue 14) at the node layer, with the fake attacher: it sets a pod up as
//! the hook would, and under the sandbox's lock does nothing for a sandbox that already has
//! a record (the hook came first) or was torn down (a pod that ended before the early setup
//! ran), so an old containerd event never sets a running or finished pod up again.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use plexus_core::pod::PodIdentity;
use plexus_engine::LinkDeletion;
use plexus_server::model::SandboxSpec;
use plexus_server::node::{Early, Limits, LivePod, Node};
use plexus_server::test_util::{Call, FakeAttacher, FakePlanner};

const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";

fn pod(id: &str) -> LivePod {
    LivePod {
        spec: SandboxSpec {
            sandbox_id: plexus_core::SandboxId::new(id).unwrap(),
            pod: PodIdentity::new("iot", id, "uid"),
            netns: PathBuf::from(format!("/var/run/netns/{id}")),
        },
        annotations: BTreeMap::from([(NETWORKS.to_owned(), "lan".to_owned())]),
    }
}

fn setups(fake: &FakeAttacher) -> usize {
    fake.calls()
        .iter()
        .filter(|c| matches!(c, Call::Setup(..)))
        .count()
}

#[tokio::test]
async fn an_early_setup_sets_up_once_and_never_after_the_hook_or_a_teardown() {
    let fake = Arc::new(FakeAttacher::new());
    let node = Node::new(Arc::clone(&fake), Arc::new(FakePlanner), Limits::default());

    // Early first: set up as the hook would.
    assert_eq!(node.setup_early(pod("a")).await.unwrap(), Early::SetUp);
    assert_eq!(setups(&fake), 1);
    // Another event for the same sandbox: it has a record, nothing is done.
    assert_eq!(node.setup_early(pod("a")).await.unwrap(), Early::Handled);
    assert_eq!(setups(&fake), 1);

    // The hook came first.
    let p = pod("b");
    node.setup_pod(p.spec.clone(), p.annotations.clone(), None)
        .await
        .unwrap();
    assert_eq!(setups(&fake), 2);
    assert_eq!(node.setup_early(pod("b")).await.unwrap(), Early::Handled);
    assert_eq!(setups(&fake), 2);

    // The pod ended before the early setup ran: torn down, never set up again.
    node.teardown_pod(p.spec.sandbox_id.clone(), None, LinkDeletion::AfterAnswer)
        .await
        .unwrap();
    assert_eq!(node.setup_early(pod("b")).await.unwrap(), Early::Handled);
    // Even one that plexus never knew: its teardown (a Stop for a pod never seen) counts.
    let c = pod("c");
    node.teardown_pod(c.spec.sandbox_id.clone(), None, LinkDeletion::AfterAnswer)
        .await
        .unwrap();
    assert_eq!(node.setup_early(c).await.unwrap(), Early::Handled);
    assert_eq!(setups(&fake), 2, "{:?}", fake.calls());
}

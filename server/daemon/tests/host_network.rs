//! A sandbox without a netns path (hostNetwork pod, or a runtime that did not send it) still
//! starts, but networks it asked for are not dropped silently: a Watch `ATTACH_FAILED`
//! event says they were ignored. Without a networks annotation nothing is said.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use plexus_core::pod::PodIdentity;
use plexus_server::model::{EventKind, SandboxSpec};
use plexus_server::node::{Limits, Node};
use plexus_server::test_util::{FakeAttacher, FakePlanner};

const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";

fn spec(id: &str) -> SandboxSpec {
    SandboxSpec {
        sandbox_id: plexus_core::SandboxId::new(id).unwrap(),
        pod: PodIdentity::new("iot", id, ""),
        netns: PathBuf::new(),
    }
}

#[tokio::test]
async fn a_host_network_pod_starts_and_its_ignored_networks_are_reported() {
    let fake = Arc::new(FakeAttacher::new());
    let node = Node::new(Arc::clone(&fake), Arc::new(FakePlanner), Limits::default());
    let mut events = node.subscribe();

    let ann = BTreeMap::from([(NETWORKS.to_owned(), "lan,other/wan".to_owned())]);
    let out = node.setup_pod(spec("host"), ann, None).await.unwrap();
    assert!(out.sandbox.attachments.is_empty());
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
    let event = events
        .try_recv()
        .expect("an event for the ignored networks");
    assert_eq!(event.kind, EventKind::AttachFailed);
    assert_eq!(event.sandbox_id, "host");
    assert_eq!(
        event.message,
        "host-network pod (no netns): networks iot/lan, other/wan ignored"
    );

    // An unresolvable annotation is reported too, and the pod still starts.
    let ann = BTreeMap::from([(NETWORKS.to_owned(), "missing-net".to_owned())]);
    node.setup_pod(spec("host2"), ann, None).await.unwrap();
    let event = events
        .try_recv()
        .expect("an event for the unresolvable networks");
    assert_eq!(event.kind, EventKind::AttachFailed);
    assert!(event.message.contains("missing-net"), "{}", event.message);

    // No networks asked for: nothing to say.
    node.setup_pod(spec("plain"), BTreeMap::new(), None)
        .await
        .unwrap();
    assert!(events.try_recv().is_err());
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
}

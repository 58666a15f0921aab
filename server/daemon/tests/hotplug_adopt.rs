//! Adoption of a live pod plexus never set up (NRI Synchronize → Reconcile `live_pods`):
//! its interfaces are recorded as they are (runtime-managed: nothing run, no event), later
//! annotation edits are acted on (an added network is hot-plugged with the next free name),
//! and an adopted interface the annotation drops is not removed but said so in a Warning.

mod hotplug_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hotplug_support::*;
use plexus_core::pod::PodIdentity;
use plexus_kube_fake::Resource;
use plexus_server::model::Selector;
use plexus_server::node::LivePod;
use serde_json::json;

fn drivers(s: &Setup) -> Vec<String> {
    let id = plexus_core::id::SandboxId::new("sb-web").unwrap();
    s.node
        .list(&Selector::Sandbox(id))
        .unwrap()
        .into_iter()
        .flat_map(|sb| sb.attachments)
        .map(|a| format!("{}@{}:{}:{}", a.network, a.interface, a.origin, a.driver))
        .collect()
}

#[tokio::test]
async fn an_adopted_pod_is_left_as_it_is_and_only_later_edits_act() {
    let s = setup().await;
    for n in ["a", "b"] {
        nad(&s, n);
    }
    s.cluster.nads.wait_synced().await;
    // A pod running before plexus: in the API with its annotation, never set up by plexus.
    let obj = s
        .fake
        .create(
            Resource::Pod,
            "default",
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web", "namespace": "default",
                             "annotations": {NETWORKS: "a"}},
                "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "pause"}]}
            }),
        )
        .unwrap();
    let pod = PodIdentity::new("default", "web", obj["metadata"]["uid"].as_str().unwrap());
    let live = LivePod {
        spec: spec(&pod),
        annotations: BTreeMap::from([(NETWORKS.to_string(), "a".to_string())]),
    };
    let mut events = s.node.subscribe();
    let adopted = s.node.adopt(vec![live.clone()], Instant::now()).await;
    assert_eq!(adopted, ["sb-web"]);
    let before = drivers(&s);
    assert_eq!(before.len(), 2, "{before:?}");
    assert_eq!(before[1], "default/a@net1:annotation:runtime");
    assert!(events.try_recv().is_err(), "adoption is not an attach");
    // Adopted once: a second Synchronize changes nothing.
    assert!(s.node.adopt(vec![live], Instant::now()).await.is_empty());

    annotate(&s, "web", "a,b");
    wait_record(&s, "web", |r| r.len() == 3).await;
    assert_eq!(drivers(&s)[2], "default/b@net2:annotation:native");

    // `a` dropped: net1 was there before plexus and stays; the pod is told.
    annotate(&s, "web", "b");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !warnings(&s, "web")
        .iter()
        .any(|w| w.contains("not removing net1") && w.contains("adopted"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no Warning about net1: {:?}",
            warnings(&s, "web")
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(record(&s, "web").len(), 3);
}

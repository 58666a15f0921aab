//! The metadata-only watch of this node's pods against the fake API server (standing in for
//! the real one).

use plexus_kube::PodWatch;
use plexus_kube_fake::Resource;
use serde_json::json;

use crate::support::{self, eventually};

#[tokio::test]
async fn only_this_node_s_pods_are_watched_metadata_only() {
    let fake = support::fake().await;
    let mine = fake
        .create(
            Resource::Pod,
            "default",
            support::pod(
                "default",
                "mine",
                "node-a",
                json!({"k8s.v1.cni.cncf.io/networks": "macvlan-conf"}),
            ),
        )
        .unwrap();
    fake.create(
        Resource::Pod,
        "default",
        support::pod("default", "theirs", "node-b", json!({})),
    )
    .unwrap();
    let pods = PodWatch::start(support::client(&fake).await, "node-a");
    pods.wait_synced().await;
    let got = pods.get("default", "mine").expect("my pod");
    assert_eq!(got.uid, mine["metadata"]["uid"].as_str().unwrap());
    assert_eq!(
        got.annotations["k8s.v1.cni.cncf.io/networks"],
        "macvlan-conf"
    );
    assert_eq!(pods.by_uid(&got.uid), Some(got.clone()));
    assert_eq!(pods.get("default", "theirs"), None);
    assert_eq!(pods.len(), 1);

    support::create_pod(&fake, "default", "later", "node-a");
    eventually("a new pod", || async {
        pods.get("default", "later").is_some()
    })
    .await;
    fake.delete(Resource::Pod, "default", "mine").unwrap();
    eventually("a deleted pod", || async {
        pods.get("default", "mine").is_none()
    })
    .await;

    let pod_requests: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/pods"))
        .collect();
    assert!(!pod_requests.is_empty());
    for r in &pod_requests {
        assert!(
            r.query.contains("fieldSelector=spec.nodeName%3Dnode-a"),
            "{r:?}"
        );
        assert!(
            r.accept
                .as_deref()
                .unwrap_or_default()
                .contains("as=PartialObjectMetadata"),
            "{r:?}"
        );
    }
    assert!(
        fake.requests().iter().all(|r| !r.path.contains("/pods/")),
        "never a GET of one pod"
    );
}

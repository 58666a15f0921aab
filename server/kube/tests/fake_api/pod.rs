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

#[tokio::test]
async fn changes_fire_on_a_networks_annotation_edit_not_on_a_status_write() {
    // One thread: the watch task writes the store and counts the change in one poll, so once
    // the store shows an edit, its change (if any) is counted too.
    let fake = support::fake().await;
    support::create_pod(&fake, "default", "web", "node-a");
    let pods = PodWatch::start(support::client(&fake).await, "node-a");
    pods.wait_synced().await;
    let changes = pods.changes();
    let before = *changes.borrow();
    assert!(before > 0, "the first list's completion is a change");
    let patch = |annotations: serde_json::Value| {
        fake.merge_patch(
            Resource::Pod,
            "default",
            "web",
            &json!({"metadata": {"annotations": annotations}}),
        )
        .unwrap();
    };
    let shows = |key: &'static str, value: &'static str| {
        let pods = pods.clone();
        move || {
            let pods = pods.clone();
            async move {
                pods.get("default", "web")
                    .is_some_and(|p| p.annotations.get(key).map(String::as_str) == Some(value))
            }
        }
    };
    // A network-status write (what plexusd itself does) and another annotation: no change.
    patch(json!({"k8s.v1.cni.cncf.io/network-status": "[]", "other": "x"}));
    eventually("the status write", shows("other", "x")).await;
    assert_eq!(*changes.borrow(), before);
    patch(json!({"k8s.v1.cni.cncf.io/networks": "a"}));
    eventually(
        "the networks edit",
        shows("k8s.v1.cni.cncf.io/networks", "a"),
    )
    .await;
    assert_eq!(*changes.borrow(), before + 1);
    patch(json!({"k8s.v1.cni.cncf.io/networks": null}));
    eventually("the networks removal", || async {
        pods.get("default", "web")
            .is_some_and(|p| !p.annotations.contains_key("k8s.v1.cni.cncf.io/networks"))
    })
    .await;
    assert_eq!(*changes.borrow(), before + 2);
}

#[tokio::test]
async fn the_networks_patch_carries_the_uid_and_a_recreated_pod_refuses_it() {
    let fake = support::fake().await;
    let uid = support::create_pod(&fake, "default", "web", "node-a");
    let client = support::client(&fake).await;
    let key = |uid: &str| plexus_kube::PodKey {
        namespace: "default".into(),
        name: "web".into(),
        uid: uid.into(),
    };
    plexus_kube::patch_networks(&client, &key(&uid), "a,b")
        .await
        .unwrap();
    let pod = fake.get(Resource::Pod, "default", "web").unwrap();
    assert_eq!(
        pod.pointer("/metadata/annotations/k8s.v1.cni.cncf.io~1networks"),
        Some(&json!("a,b"))
    );
    let err = plexus_kube::patch_networks(&client, &key("not-this-pod"), "c")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("422") && err.contains("recreated"), "{err}");
    let pod = fake.get(Resource::Pod, "default", "web").unwrap();
    assert_eq!(
        pod.pointer("/metadata/annotations/k8s.v1.cni.cncf.io~1networks"),
        Some(&json!("a,b"))
    );
    // The main resource is patched (not pods/status), once per call.
    assert_eq!(support::requests(&fake, "PATCH", "/pods/web").len(), 2);
}

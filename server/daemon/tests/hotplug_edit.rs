//! Attach and Detach through the pod's networks annotation (`plexusctl attach/detach --pod`
//! on a Kubernetes node) against plexus-kube-fake: plexusd patches the annotation, the
//! hot-plug controller does the work; isolation and bad requests are refused at once and the
//! annotation is left as it was; a direct attachment cannot be removed this way; without
//! Kubernetes mode the call is direct.

mod hotplug_support;

use std::sync::Arc;

use hotplug_support::*;
use plexus_kube_fake::Resource;
use plexus_server::model::Selector;
use plexus_server::node::{Edited, NetworksAnnotation};
use serde_json::json;

fn networks(s: &Setup) -> Option<String> {
    s.fake
        .get(Resource::Pod, "default", "web")?
        .pointer("/metadata/annotations/k8s.v1.cni.cncf.io~1networks")?
        .as_str()
        .map(str::to_owned)
}

fn web() -> Selector {
    Selector::Sandbox(plexus_core::id::SandboxId::new("sb-web").unwrap())
}

#[tokio::test]
async fn attach_and_detach_edit_the_annotation_and_the_controller_follows() {
    let s = setup_with(plexus_core::Config {
        namespace_isolation: true,
        global_namespaces: Vec::new(),
        ..plexus_core::Config::default()
    })
    .await;
    s.node
        .set_networks_annotation(Arc::clone(&s.cluster) as Arc<dyn NetworksAnnotation>);
    for n in ["a", "b", "x"] {
        nad(&s, n);
    }
    s.cluster.nads.wait_synced().await;
    let pod = running_pod(&s, "web", "a").await;
    wait_watched(&s, &pod).await;

    let edited = s
        .node
        .attach_via_annotation(web(), "b".into(), None)
        .await
        .unwrap();
    assert!(
        matches!(&edited, Edited::Annotation(v) if v == "a,b"),
        "{edited:?}"
    );
    assert_eq!(networks(&s).as_deref(), Some("a,b"));
    let got = wait_record(&s, "web", |r| r.len() == 3).await;
    assert_eq!(got[1..], ["default/a@net1", "default/b@net2"]);

    // Refused at once, annotation untouched: another namespace, a bad selection.
    for (selection, needle) in [
        ("other/y", "namespace isolation"),
        ("bad name!", "bad name"),
    ] {
        let err = s
            .node
            .attach_via_annotation(web(), selection.into(), None)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{selection}: {err}");
    }
    assert_eq!(networks(&s).as_deref(), Some("a,b"));

    // A direct attachment is not the annotation's to remove.
    s.node.attach(web(), "x".into(), None).await.unwrap();
    let err = s
        .node
        .detach_via_annotation(web(), "net3".parse().unwrap(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("--direct"), "{err}");

    let edited = s
        .node
        .detach_via_annotation(web(), "net1".parse().unwrap(), None)
        .await
        .unwrap();
    assert!(
        matches!(&edited, Edited::Annotation(v) if v == "b"),
        "{edited:?}"
    );
    let got = wait_record(&s, "web", |r| r.len() == 3).await;
    assert_eq!(got[1..], ["default/b@net2", "default/x@net3"]);
    wait_status(&s, "web", &["net2", "net3"]).await;
}

#[tokio::test]
async fn a_recreated_pod_is_not_edited() {
    let s = setup().await;
    s.node
        .set_networks_annotation(Arc::clone(&s.cluster) as Arc<dyn NetworksAnnotation>);
    nad(&s, "a");
    s.cluster.nads.wait_synced().await;
    running_pod(&s, "web", "").await;
    // The pod object is replaced by one of the same name (another uid); the record is the
    // old sandbox's.
    s.fake.delete(Resource::Pod, "default", "web").unwrap();
    let new = s
        .fake
        .create(
            Resource::Pod,
            "default",
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "pause"}]}
            }),
        )
        .unwrap();
    let new_uid = new["metadata"]["uid"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + WAIT;
    while s.cluster.pods.get("default", "web").map(|p| p.uid) != Some(new_uid.clone()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the watch never saw the new pod"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let err = s
        .node
        .attach_via_annotation(web(), "a".into(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("recreated"), "{err}");
    assert_eq!(networks(&s), None);
}

#[tokio::test]
async fn without_kubernetes_mode_the_call_is_direct() {
    let s = setup().await;
    nad(&s, "a");
    s.cluster.nads.wait_synced().await;
    running_pod(&s, "web", "").await;
    // No annotation source set on the node: the attach happens right away.
    let edited = s
        .node
        .attach_via_annotation(web(), "a".into(), None)
        .await
        .unwrap();
    let Edited::Direct(outcome) = edited else {
        panic!("{edited:?}");
    };
    assert_eq!(outcome.attachment.origin, "hotplug");
    assert_eq!(networks(&s).as_deref(), Some(""));
}

//! The hot-plug controller against plexus-kube-fake and the fake attacher: a running pod's
//! `k8s.v1.cni.cncf.io/networks` annotation is edited in the API and the pod's record and
//! network-status follow; an unnamed interface can be removed without renaming the others; a
//! NAD created after the annotation asked for it is attached then; a failing network is a
//! Warning event naming it and does not hold up the others; a pod without a record is left
//! alone.

mod hotplug_support;

use std::time::Duration;

use hotplug_support::*;
use plexus_kube_fake::{FakeApiServer, Resource};
use plexus_server::model::Selector;
use plexus_server::test_util::FakeAttacher;
use serde_json::json;

#[tokio::test]
async fn an_added_network_is_attached_and_a_removed_unnamed_one_detached_without_renames() {
    let s = setup().await;
    for n in ["a", "b", "c"] {
        nad(&s, n);
    }
    s.cluster.nads.wait_synced().await;
    running_pod(&s, "web", "a,b").await;
    let before = record(&s, "web");
    let eth0 = before[0].clone();
    assert!(eth0.ends_with("@eth0"), "{before:?}");
    assert_eq!(before[1..], ["default/a@net1", "default/b@net2"]);

    annotate(&s, "web", "a,b,c");
    let got = wait_record(&s, "web", |r| r.len() == 4).await;
    assert_eq!(
        got,
        [
            eth0.as_str(),
            "default/a@net1",
            "default/b@net2",
            "default/c@net3"
        ]
    );
    wait_status(&s, "web", &["net1", "net2", "net3"]).await;

    annotate(&s, "web", "a,c");
    let got = wait_record(&s, "web", |r| r.len() == 3).await;
    assert_eq!(got, [eth0.as_str(), "default/a@net1", "default/c@net3"]);
    wait_status(&s, "web", &["net1", "net3"]).await;

    // Emptied: every secondary goes, the primary stays.
    annotate(&s, "web", "");
    let got = wait_record(&s, "web", |r| r.len() == 1).await;
    assert_eq!(got, [eth0.as_str()]);
    wait_status(&s, "web", &[]).await;
}

#[tokio::test]
async fn a_nad_created_after_the_annotation_asked_for_it_is_attached_then() {
    let s = setup().await;
    nad(&s, "a");
    s.cluster.nads.wait_synced().await;
    running_pod(&s, "web", "a").await;
    annotate(&s, "web", "a,late");
    // Not there yet: the attach fails and is retried; the pod hears why.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !warnings(&s, "web")
        .iter()
        .any(|w| w.contains("default/late"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no warning naming default/late"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(record(&s, "web").len(), 2);
    nad(&s, "late");
    let got = wait_record(&s, "web", |r| r.len() == 3).await;
    assert_eq!(got[2], "default/late@net2");
    wait_status(&s, "web", &["net1", "net2"]).await;
}

#[tokio::test]
async fn a_failing_network_is_a_warning_naming_it_and_the_others_are_attached() {
    let s = setup().await;
    nad(&s, "a");
    nad(&s, "c");
    s.fake
        .create(
            Resource::NetworkAttachmentDefinition,
            "default",
            nad_with("broken", "{not json"),
        )
        .unwrap();
    s.cluster.nads.wait_synced().await;
    running_pod(&s, "web", "").await;
    annotate(&s, "web", "broken,a,c@data");
    let got = wait_record(&s, "web", |r| r.len() == 3).await;
    assert_eq!(got[1..], ["default/a@net1", "default/c@data"]);
    wait_status(&s, "web", &["net1", "data"]).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !warnings(&s, "web")
        .iter()
        .any(|w| w.contains("default/broken"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no warning naming default/broken: {:?}",
            warnings(&s, "web")
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_pod_without_a_record_is_left_alone() {
    let s = setup().await;
    nad(&s, "a");
    s.cluster.nads.wait_synced().await;
    s.fake
        .create(
            Resource::Pod,
            "default",
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "stranger", "namespace": "default",
                             "annotations": {NETWORKS: "a"}},
                "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "pause"}]}
            }),
        )
        .unwrap();
    // A pod with a record next to it is converged: once it is, the controller has passed
    // over the stranger too.
    running_pod(&s, "web", "").await;
    annotate(&s, "web", "a");
    wait_record(&s, "web", |r| r.len() == 2).await;
    let stranger = plexus_core::id::SandboxId::new("sb-stranger").unwrap();
    assert!(
        s.node
            .list(&Selector::Sandbox(stranger))
            .unwrap_or_default()
            .is_empty()
    );
    assert!(
        s.fake
            .get(Resource::Pod, "default", "stranger")
            .unwrap()
            .pointer(STATUS)
            .is_none()
    );
}

#[tokio::test]
async fn namespace_isolation_holds_for_the_annotation_and_for_a_direct_attach() {
    let s = setup_with(plexus_core::Config {
        namespace_isolation: true,
        global_namespaces: Vec::new(),
        ..plexus_core::Config::default()
    })
    .await;
    nad(&s, "a");
    s.fake
        .create(
            Resource::NetworkAttachmentDefinition,
            "other",
            json!({
                "apiVersion": "k8s.cni.cncf.io/v1",
                "kind": "NetworkAttachmentDefinition",
                "metadata": {"name": "x", "namespace": "other"},
                "spec": {"config": MACVLAN}
            }),
        )
        .unwrap();
    s.cluster.nads.wait_synced().await;
    running_pod(&s, "web", "").await;
    annotate(&s, "web", "other/x,a");
    let got = wait_record(&s, "web", |r| r.len() == 2).await;
    assert_eq!(got[1], "default/a@net1");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !warnings(&s, "web").iter().any(|w| w.contains("other/x")) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no warning naming other/x"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The node's Attach (what gRPC Attach calls) refuses it the same way.
    let id = plexus_core::id::SandboxId::new("sb-web").unwrap();
    let err = s
        .node
        .attach(Selector::Sandbox(id), "other/x".to_string(), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("other"), "{err}");
    assert_eq!(record(&s, "web").len(), 2);
}

#[tokio::test]
async fn a_change_made_while_plexusd_was_down_converges_after_the_restart() {
    let state = tempfile::tempdir().unwrap();
    let fake = FakeApiServer::start().await.unwrap();
    // The first plexusd sets the pod up and goes away without a controller having run.
    let s = start(
        fake,
        plexus_core::Config::default(),
        FakeAttacher::persistent(state.path().to_path_buf()),
        false,
    )
    .await;
    for n in ["a", "b"] {
        nad(&s, n);
    }
    s.cluster.nads.wait_synced().await;
    running_pod(&s, "web", "a,b").await;
    let fake = s.kill();
    fake.merge_patch(
        Resource::Pod,
        "default",
        "web",
        &json!({"metadata": {"annotations": {NETWORKS: "b"}}}),
    )
    .unwrap();
    let s = start(
        fake,
        plexus_core::Config::default(),
        FakeAttacher::persistent(state.path().to_path_buf()),
        true,
    )
    .await;
    let got = wait_record(&s, "web", |r| r.len() == 2).await;
    assert_eq!(got[1], "default/b@net2");
    wait_status(&s, "web", &["net2"]).await;
}

#[tokio::test]
async fn an_annotation_that_does_not_parse_detaches_nothing_and_says_why() {
    let s = setup().await;
    nad(&s, "a");
    s.cluster.nads.wait_synced().await;
    running_pod(&s, "web", "a").await;
    annotate(&s, "web", "[{\"name\":");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !warnings(&s, "web")
        .iter()
        .any(|w| w.contains("k8s.v1.cni.cncf.io/networks"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no warning about the annotation: {:?}",
            warnings(&s, "web")
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(record(&s, "web")[1..], ["default/a@net1"]);
}

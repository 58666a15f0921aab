//! Attachments made through the node API's Attach (`plexusctl attach --direct`) in Kubernetes
//! mode: recorded with origin `hotplug`, left alone by the hot-plug controller while the
//! annotation changes around them, and removed only by Detach; the controller's own
//! attachments are recorded with origin `annotation`.

mod hotplug_support;

use hotplug_support::*;
use plexus_server::model::Selector;

fn origins(s: &Setup) -> Vec<String> {
    let id = plexus_core::id::SandboxId::new("sb-web").unwrap();
    s.node
        .list(&Selector::Sandbox(id))
        .unwrap()
        .into_iter()
        .flat_map(|sb| sb.attachments)
        .skip(1)
        .map(|a| format!("{}@{}:{}", a.network, a.interface, a.origin))
        .collect()
}

#[tokio::test]
async fn a_direct_attachment_survives_annotation_edits_and_goes_with_detach() {
    let s = setup().await;
    for n in ["a", "b", "x"] {
        nad(&s, n);
    }
    s.cluster.nads.wait_synced().await;
    running_pod(&s, "web", "a").await;
    let id = plexus_core::id::SandboxId::new("sb-web").unwrap();
    s.node
        .attach(Selector::Sandbox(id.clone()), "x".into(), None)
        .await
        .unwrap();
    // Each edit is acted on by a pass over the pod, which sees the direct attachment too.
    annotate(&s, "web", "a,b");
    wait_record(&s, "web", |r| r.len() == 4).await;
    assert_eq!(
        origins(&s),
        [
            "default/a@net1:annotation",
            "default/x@net2:hotplug",
            "default/b@net3:annotation"
        ]
    );
    annotate(&s, "web", "");
    wait_record(&s, "web", |r| r.len() == 2).await;
    assert_eq!(origins(&s), ["default/x@net2:hotplug"]);
    s.node
        .detach(Selector::Sandbox(id), "net2".parse().unwrap(), None)
        .await
        .unwrap();
    assert!(origins(&s).is_empty());
}

//! The hot-plug controller is woken by changes, not only by its periodic pass: with a tick and
//! a backoff of an hour (so only the first pass is periodic), an annotation edit is acted on,
//! and a NAD created after the annotation asked for it is attached at once although its
//! failed attach is waiting out an hour of backoff.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use plexus_core::pod::PodIdentity;
use plexus_kube::KubeSettings;
use plexus_kube_fake::{FakeApiServer, Resource};
use plexus_server::hotplug_controller::{self, ControllerSettings};
use plexus_server::kubernetes::{Cluster, bridge};
use plexus_server::model::{SandboxSpec, Selector};
use plexus_server::node::{Limits, Node};
use plexus_server::resolver::Resolver;
use plexus_server::test_util::FakeAttacher;
use serde_json::json;

const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
const MACVLAN: &str = r#"{"cniVersion":"1.0.0","name":"m","type":"macvlan","master":"eth0","ipam":{"type":"static"}}"#;
const WAIT: Duration = Duration::from_secs(20);
const HOUR: Duration = Duration::from_secs(3600);

fn nad(fake: &FakeApiServer, name: &str) {
    fake.create(
        Resource::NetworkAttachmentDefinition,
        "default",
        json!({
            "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"config": MACVLAN}
        }),
    )
    .unwrap();
}

fn annotate(fake: &FakeApiServer, networks: &str) {
    fake.merge_patch(
        Resource::Pod,
        "default",
        "web",
        &json!({"metadata": {"annotations": {NETWORKS: networks}}}),
    )
    .unwrap();
}

async fn wait_until(what: &str, mut check: impl FnMut() -> Option<String>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let Some(seen) = check() else { return };
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}; last seen: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn annotation_edits_and_late_nads_wake_the_controller() {
    let fake = FakeApiServer::start().await.unwrap();
    let settings = KubeSettings {
        kubeconfig: Some(fake.kubeconfig_path()),
        namespaces: Vec::new(),
        node_name: "node-a".to_string(),
    };
    let client = plexus_kube::connect(&settings).await.expect("client");
    let cluster = Arc::new(Cluster::start(client, &settings));
    let node = Node::new(
        Arc::new(FakeAttacher::new()),
        Arc::new(Resolver::with_cluster(
            plexus_core::Config::default(),
            Arc::clone(&cluster),
        )),
        Limits {
            setup_budget: None,
            ..Limits::default()
        },
    );
    nad(&fake, "a");
    let obj = fake
        .create(
            Resource::Pod,
            "default",
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web", "namespace": "default", "annotations": {NETWORKS: ""}},
                "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "pause"}]}
            }),
        )
        .unwrap();
    cluster.nads.wait_synced().await;
    cluster.pods.wait_synced().await;
    let pod = PodIdentity::new("default", "web", obj["metadata"]["uid"].as_str().unwrap());
    let id = plexus_core::id::SandboxId::new("sb-web").unwrap();
    node.setup_pod(
        SandboxSpec {
            sandbox_id: id.clone(),
            pod,
            netns: "/run/netns/web".into(),
        },
        BTreeMap::new(),
        None,
    )
    .await
    .expect("setup");
    let _bridge = bridge(&node, Arc::clone(&cluster));
    let _controller = hotplug_controller::start(
        &node,
        Arc::clone(&cluster),
        ControllerSettings {
            tick: HOUR,
            min_backoff: HOUR,
            max_backoff: HOUR,
            op_timeout: Duration::from_secs(10),
        },
    );
    let record = || -> Vec<String> {
        node.list(&Selector::Sandbox(id.clone()))
            .unwrap()
            .into_iter()
            .flat_map(|sb| sb.attachments)
            .skip(1)
            .map(|a| format!("{}@{}", a.network, a.interface))
            .collect()
    };
    let warnings = || -> Vec<String> {
        fake.list(Resource::Event, Some("default"))
            .iter()
            .filter(|e| e["type"] == "Warning")
            .map(|e| e["note"].as_str().unwrap_or("").to_string())
            .collect()
    };

    annotate(&fake, "a");
    wait_until("the annotation edit was not acted on", || {
        let r = record();
        (r != ["default/a@net1"]).then(|| format!("{r:?}"))
    })
    .await;

    annotate(&fake, "a,late");
    wait_until("no warning naming default/late", || {
        let w = warnings();
        (!w.iter().any(|w| w.contains("default/late"))).then(|| format!("{w:?}"))
    })
    .await;
    // The retry of `late` now waits an hour; its NAD appearing makes it due.
    nad(&fake, "late");
    wait_until("the late NAD was not attached", || {
        let r = record();
        (r != ["default/a@net1", "default/late@net2"]).then(|| format!("{r:?}"))
    })
    .await;
}

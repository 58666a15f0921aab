//! Shared by the hot-plug controller's component tests: a "plexusd" (cluster, node over the
//! fake attacher, bridge, controller) over plexus-kube-fake, pods made as a kubelet and the
//! runtime would, and bounded waits on the record, network-status and Warning events.

#![allow(dead_code)] // each test binary uses its own subset

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
use serde_json::{Value, json};

pub const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
pub const STATUS: &str = "/metadata/annotations/k8s.v1.cni.cncf.io~1network-status";
pub const MACVLAN: &str = r#"{"cniVersion":"1.0.0","name":"macvlan-conf","type":"macvlan","master":"eth0","ipam":{"type":"static"}}"#;
pub const WAIT: Duration = Duration::from_secs(20);

pub type TestNode = Arc<Node<FakeAttacher, Resolver>>;

pub struct Setup {
    pub fake: FakeApiServer,
    pub cluster: Arc<Cluster>,
    pub node: TestNode,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Setup {
    /// Stops this "plexusd" (bridge, controller, node, cluster); the API server stays.
    pub fn kill(self) -> FakeApiServer {
        for t in &self.tasks {
            t.abort();
        }
        self.fake
    }
}

pub async fn setup() -> Setup {
    setup_with(plexus_core::Config::default()).await
}

pub async fn setup_with(config: plexus_core::Config) -> Setup {
    let fake = FakeApiServer::start().await.unwrap();
    start(fake, config, FakeAttacher::new(), true).await
}

/// A "plexusd" over `fake`, with or without the hot-plug controller.
pub async fn start(
    fake: FakeApiServer,
    config: plexus_core::Config,
    attacher: FakeAttacher,
    controller: bool,
) -> Setup {
    let settings = KubeSettings {
        kubeconfig: Some(fake.kubeconfig_path()),
        namespaces: Vec::new(),
        node_name: "node-a".to_string(),
    };
    let client = plexus_kube::connect(&settings).await.expect("client");
    let cluster = Arc::new(Cluster::start(client, &settings));
    let resolver = Resolver::with_cluster(config, Arc::clone(&cluster));
    let node = Node::new(
        Arc::new(attacher),
        Arc::new(resolver),
        Limits {
            setup_budget: None,
            ..Limits::default()
        },
    );
    let mut tasks = vec![bridge(&node, Arc::clone(&cluster))];
    if controller {
        tasks.push(hotplug_controller::start(
            &node,
            Arc::clone(&cluster),
            ControllerSettings {
                tick: Duration::from_millis(20),
                min_backoff: Duration::from_millis(40),
                max_backoff: Duration::from_millis(200),
                op_timeout: Duration::from_secs(10),
            },
        ));
    }
    Setup {
        fake,
        cluster,
        node,
        tasks,
    }
}

pub fn nad_with(name: &str, config: &str) -> Value {
    json!({
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"config": config}
    })
}

pub fn nad(s: &Setup, name: &str) {
    s.fake
        .create(
            Resource::NetworkAttachmentDefinition,
            "default",
            nad_with(name, MACVLAN),
        )
        .unwrap();
}

/// Creates the pod with its annotation in the API and sets it up as the runtime would.
pub async fn running_pod(s: &Setup, name: &str, networks: &str) -> PodIdentity {
    let obj = s
        .fake
        .create(
            Resource::Pod,
            "default",
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "default",
                             "annotations": {NETWORKS: networks}},
                "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "pause"}]}
            }),
        )
        .unwrap();
    let pod = PodIdentity::new("default", name, obj["metadata"]["uid"].as_str().unwrap());
    s.node
        .setup_pod(
            spec(&pod),
            BTreeMap::from([(NETWORKS.to_string(), networks.to_string())]),
            None,
        )
        .await
        .expect("setup");
    pod
}

/// Waits until this node's pod watch holds `pod` (by uid). Its first list can complete
/// before a pod created after the watch started arrives as an event.
pub async fn wait_watched(s: &Setup, pod: &PodIdentity) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while s.cluster.pods.by_uid(&pod.uid).is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pod watch never saw {pod}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

pub fn spec(pod: &PodIdentity) -> SandboxSpec {
    SandboxSpec {
        sandbox_id: plexus_core::id::SandboxId::new(format!("sb-{}", pod.name)).unwrap(),
        pod: pod.clone(),
        netns: format!("/run/netns/{}", pod.name).into(),
    }
}

pub fn annotate(s: &Setup, pod: &str, networks: &str) {
    s.fake
        .merge_patch(
            Resource::Pod,
            "default",
            pod,
            &json!({"metadata": {"annotations": {NETWORKS: networks}}}),
        )
        .unwrap();
}

/// `network@interface` of the record's attachments, in record order.
pub fn record(s: &Setup, pod: &str) -> Vec<String> {
    let id = plexus_core::id::SandboxId::new(format!("sb-{pod}")).unwrap();
    s.node
        .list(&Selector::Sandbox(id))
        .unwrap()
        .into_iter()
        .flat_map(|sb| sb.attachments)
        .map(|a| format!("{}@{}", a.network, a.interface))
        .collect()
}

/// Polls (bounded) until `check` holds for the record of `pod`.
pub async fn wait_record(s: &Setup, pod: &str, check: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = record(s, pod);
        if check(&got) {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "record of {pod}: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (bounded) until the pod's network-status lists exactly these interfaces (the fake
/// runtime's primary has no network name, so it is not listed, as with Multus).
pub async fn wait_status(s: &Setup, pod: &str, interfaces: &[&str]) {
    let want: Vec<String> = interfaces.iter().map(|i| i.to_string()).collect();
    let landed = s
        .fake
        .wait_for(Resource::Pod, "default", pod, WAIT, |o| {
            let Some(text) = o.and_then(|o| o.pointer(STATUS)).and_then(Value::as_str) else {
                return false;
            };
            let parsed: Vec<Value> = serde_json::from_str(text).unwrap_or_default();
            let got: Vec<String> = parsed
                .iter()
                .filter_map(|e| e["interface"].as_str().map(str::to_owned))
                .collect();
            got == want
        })
        .await;
    let now = s.fake.get(Resource::Pod, "default", pod);
    let shown = now.as_ref().and_then(|o| o.pointer(STATUS)).cloned();
    assert!(
        landed.is_some(),
        "network-status of {pod} never listed {want:?}: {shown:?}"
    );
}

pub fn warnings(s: &Setup, pod: &str) -> Vec<String> {
    s.fake
        .list(Resource::Event, Some("default"))
        .iter()
        .filter(|e| e["regarding"]["name"] == pod && e["type"] == "Warning")
        .map(|e| e["note"].as_str().unwrap_or("").to_string())
        .collect()
}

//! Kubernetes mode of the node service, with the fake attacher and plexus-kube-fake standing
//! in for the real API server (which cannot run where plexus is tested): NADs come from the
//! API, a NAD created a moment ago is fetched once, a missing one fails the pod naming it with
//! a `NoNetworkFound` event, an unsynced cache holds up only pods that need a NAD, and every
//! setup's network-status and `AddedInterface` events land on the pod object.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use plexus_core::pod::PodIdentity;
use plexus_kube::KubeSettings;
use plexus_kube_fake::{Failure, FailureKind, FakeApiServer, Resource};
use plexus_server::error::{Error, ResolveFailure};
use plexus_server::kubernetes::{Cluster, bridge};
use plexus_server::model::{SandboxSpec, Selector};
use plexus_server::node::{Limits, Node};
use plexus_server::resolver::Resolver;
use plexus_server::test_util::FakeAttacher;
use serde_json::{Value, json};

const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
const MACVLAN: &str = r#"{"cniVersion":"1.0.0","name":"macvlan-conf","type":"macvlan","master":"eth0","ipam":{"type":"static"}}"#;

type TestNode = Arc<Node<FakeAttacher, Resolver>>;

struct Setup {
    fake: FakeApiServer,
    cluster: Arc<Cluster>,
    node: TestNode,
    bridge: tokio::task::JoinHandle<()>,
}

impl Setup {
    /// Stops this "plexusd": its bridge, node and cluster (watches and queues) go away.
    fn kill(self) -> FakeApiServer {
        self.bridge.abort();
        self.fake
    }
}

async fn setup(fake: FakeApiServer) -> Setup {
    setup_with(fake, FakeAttacher::new()).await
}

async fn setup_with(fake: FakeApiServer, attacher: FakeAttacher) -> Setup {
    let settings = KubeSettings {
        kubeconfig: Some(fake.kubeconfig_path()),
        namespaces: Vec::new(),
        node_name: "node-a".to_string(),
    };
    let client = plexus_kube::connect(&settings).await.expect("client");
    let cluster = Arc::new(Cluster::start(client, &settings));
    let resolver = Resolver::with_cluster(plexus_core::Config::default(), Arc::clone(&cluster));
    let node = Node::new(
        Arc::new(attacher),
        Arc::new(resolver),
        Limits {
            setup_budget: None,
            ..Limits::default()
        },
    );
    let bridge = bridge(&node, Arc::clone(&cluster));
    Setup {
        fake,
        cluster,
        node,
        bridge,
    }
}

fn nad(name: &str) -> Value {
    json!({
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"config": MACVLAN}
    })
}

/// Creates the pod in the API and returns the identity the runtime would pass.
fn pod(fake: &FakeApiServer, name: &str) -> PodIdentity {
    let obj = fake
        .create(
            Resource::Pod,
            "default",
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "pause"}]}
            }),
        )
        .unwrap();
    PodIdentity::new("default", name, obj["metadata"]["uid"].as_str().unwrap())
}

fn spec(pod: &PodIdentity) -> SandboxSpec {
    SandboxSpec {
        sandbox_id: plexus_core::id::SandboxId::new(format!("sb-{}", pod.name)).unwrap(),
        pod: pod.clone(),
        netns: format!("/run/netns/{}", pod.name).into(),
    }
}

fn networks(value: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(NETWORKS.to_string(), value.to_string())])
}

fn notes(fake: &FakeApiServer, pod: &str) -> Vec<String> {
    fake.list(Resource::Event, Some("default"))
        .iter()
        .filter(|e| e["regarding"]["name"] == pod)
        .map(|e| {
            format!(
                "{} {}",
                e["reason"].as_str().unwrap(),
                e["note"].as_str().unwrap()
            )
        })
        .collect()
}

async fn wait_events(fake: &FakeApiServer, pod: &str, count: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = notes(fake, pod);
        if got.len() >= count {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "events of {pod}: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_pod_s_network_status_and_events_land_on_the_pod_object() {
    let fake = FakeApiServer::start().await.unwrap();
    fake.create(
        Resource::NetworkAttachmentDefinition,
        "default",
        nad("macvlan-conf"),
    )
    .unwrap();
    let s = setup(fake).await;
    s.cluster.nads.wait_synced().await;
    let pod = pod(&s.fake, "web");
    let outcome = s
        .node
        .setup_pod(spec(&pod), networks("macvlan-conf"), None)
        .await
        .unwrap();
    let want = outcome.network_status.clone();
    let landed = s
        .fake
        .wait_for(
            Resource::Pod,
            "default",
            "web",
            Duration::from_secs(20),
            |o| {
                o.and_then(|o| {
                    o.pointer("/metadata/annotations/k8s.v1.cni.cncf.io~1network-status")
                })
                .and_then(Value::as_str)
                    == Some(want.as_str())
            },
        )
        .await;
    assert!(landed.is_some(), "network-status {want} never landed");
    let mut events = wait_events(&s.fake, "web", 2).await;
    events.sort();
    assert_eq!(
        events,
        [
            "AddedInterface Add eth0 [192.0.2.10/24]",
            "AddedInterface Add net1 [192.0.2.11/24] from default/macvlan-conf",
        ]
    );
    // The setup path itself made no request: the NAD came from the watch.
    assert!(
        s.fake.requests().iter().all(|r| !r
            .path
            .ends_with("/network-attachment-definitions/macvlan-conf")),
        "a GET of the NAD"
    );
}

#[tokio::test]
async fn a_nad_created_a_moment_ago_is_fetched_once_and_a_missing_one_names_itself() {
    let s = setup(FakeApiServer::start().await.unwrap()).await;
    s.cluster.nads.wait_synced().await;
    // Created and immediately asked for: whether or not the watch delivered it, it resolves.
    s.fake
        .create(
            Resource::NetworkAttachmentDefinition,
            "default",
            nad("fresh"),
        )
        .unwrap();
    let web = pod(&s.fake, "web");
    s.node
        .setup_pod(spec(&web), networks("fresh"), None)
        .await
        .expect("a fresh NAD resolves");

    let lost = pod(&s.fake, "lost");
    let err = s
        .node
        .setup_pod(spec(&lost), networks("nowhere"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Resolve {
                kind: ResolveFailure::NotFound,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("(nowhere)"), "{err}");
    let gets = s
        .fake
        .requests()
        .into_iter()
        .filter(|r| {
            r.path
                .ends_with("/namespaces/default/network-attachment-definitions/nowhere")
        })
        .count();
    assert_eq!(gets, 1, "exactly one direct GET");
    let events = wait_events(&s.fake, "lost", 1).await;
    assert_eq!(
        events,
        [
            "NoNetworkFound cannot find a network-attachment-definition (nowhere) in namespace (default): network-attachment-definitions.k8s.cni.cncf.io \"nowhere\" not found"
        ]
    );
}

#[tokio::test]
async fn before_the_first_list_only_pods_that_need_a_nad_wait() {
    let fake = FakeApiServer::start().await.unwrap();
    fake.create(
        Resource::NetworkAttachmentDefinition,
        "default",
        nad("macvlan-conf"),
    )
    .unwrap();
    // The NAD list keeps failing.
    fake.inject_failure(Failure {
        path_contains: "/k8s.cni.cncf.io/v1/network-attachment-definitions".to_string(),
        method: Some("GET".to_string()),
        count: usize::MAX,
        kind: FailureKind::InternalError,
    });
    let s = setup(fake).await;
    assert!(!s.cluster.status().nads_synced);
    let plain = pod(&s.fake, "plain");
    s.node
        .setup_pod(spec(&plain), BTreeMap::new(), None)
        .await
        .expect("a pod without networks is not held up");
    // The direct GET answers for a NAD the unsynced cache cannot.
    let web = pod(&s.fake, "web");
    s.node
        .setup_pod(spec(&web), networks("macvlan-conf"), None)
        .await
        .expect("the GET found the NAD");
    // With the API server gone as well, the pod is refused as retryable, naming the wait.
    s.fake.stop().await;
    let late = PodIdentity::new("default", "late", "uid-late");
    let err = s
        .node
        .setup_pod(spec(&late), networks("other"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Resolve {
                kind: ResolveFailure::Unavailable,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(tonic::Status::from(err).code(), tonic::Code::Unavailable);
}

async fn wait_status(fake: &FakeApiServer, name: &str, want: &str) {
    let landed = fake
        .wait_for(
            Resource::Pod,
            "default",
            name,
            Duration::from_secs(30),
            |o| {
                o.and_then(|o| {
                    o.pointer("/metadata/annotations/k8s.v1.cni.cncf.io~1network-status")
                })
                .and_then(Value::as_str)
                    == Some(want)
            },
        )
        .await;
    assert!(
        landed.is_some(),
        "network-status {want} of {name} never landed"
    );
}

#[tokio::test]
async fn with_the_api_down_a_pod_with_cached_nads_starts_and_its_status_lands_later() {
    let fake = FakeApiServer::start().await.unwrap();
    fake.create(
        Resource::NetworkAttachmentDefinition,
        "default",
        nad("macvlan-conf"),
    )
    .unwrap();
    let s = setup(fake).await;
    s.cluster.nads.wait_synced().await;
    let web = pod(&s.fake, "web");
    s.fake.stop().await;
    let outcome = s
        .node
        .setup_pod(spec(&web), networks("macvlan-conf"), None)
        .await
        .expect("cached NADs need no API server");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while s.cluster.status().last_error.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failed attempt seen"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(s.cluster.status().publish_backlog, 1);
    s.fake.restart().await.unwrap();
    wait_status(&s.fake, "web", &outcome.network_status).await;
}

#[tokio::test]
async fn a_restart_during_an_outage_still_converges_from_the_records() {
    let fake = FakeApiServer::start().await.unwrap();
    fake.create(
        Resource::NetworkAttachmentDefinition,
        "default",
        nad("macvlan-conf"),
    )
    .unwrap();
    let records = tempfile::tempdir().unwrap();
    let first = setup_with(fake, FakeAttacher::persistent(records.path().to_path_buf())).await;
    first.cluster.nads.wait_synced().await;
    let web = pod(&first.fake, "web");
    first.fake.stop().await;
    let outcome = first
        .node
        .setup_pod(spec(&web), networks("macvlan-conf"), None)
        .await
        .unwrap();
    // plexusd dies with the patch still queued; the next one starts while the API is down.
    let fake = first.kill();
    let second = setup_with(fake, FakeAttacher::persistent(records.path().to_path_buf())).await;
    second.fake.restart().await.unwrap();
    wait_status(&second.fake, "web", &outcome.network_status).await;
}

fn status_patches(fake: &FakeApiServer, name: &str) -> usize {
    fake.requests()
        .iter()
        .filter(|r| {
            r.method == "PATCH"
                && r.path.ends_with(&format!("/pods/{name}/status"))
                && r.status == 200
        })
        .count()
}

/// Waits until the publisher is idle and `name` has had more than `after` status patches.
async fn wait_patched(s: &Setup, name: &str, after: usize) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let n = status_patches(&s.fake, name);
        if n > after && s.cluster.status().publish_backlog == 0 {
            return n;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new status patch of {name} after {after}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn hot_attach_and_detach_publish_the_status_again() {
    let fake = FakeApiServer::start().await.unwrap();
    for name in ["macvlan-conf", "second"] {
        fake.create(Resource::NetworkAttachmentDefinition, "default", nad(name))
            .unwrap();
    }
    let s = setup(fake).await;
    s.cluster.nads.wait_synced().await;
    let web = pod(&s.fake, "web");
    let sandbox = Selector::Sandbox(spec(&web).sandbox_id);
    s.node
        .setup_pod(spec(&web), networks("macvlan-conf"), None)
        .await
        .unwrap();
    let after_setup = wait_patched(&s, "web", 0).await;
    let attached = s
        .node
        .attach(sandbox.clone(), "second".to_string(), None)
        .await
        .unwrap();
    let after_attach = wait_patched(&s, "web", after_setup).await;
    wait_status(&s.fake, "web", &attached.network_status).await;
    let events = wait_events(&s.fake, "web", 3).await;
    assert!(
        events.iter().any(|e| e.ends_with("from default/second")),
        "{events:?}"
    );
    let detached = s
        .node
        .detach(
            sandbox,
            attached.attachment.interface.parse().unwrap(),
            None,
        )
        .await
        .unwrap();
    wait_patched(&s, "web", after_attach).await;
    wait_status(&s.fake, "web", &detached.network_status).await;
}

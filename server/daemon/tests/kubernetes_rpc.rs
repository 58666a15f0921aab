//! Kubernetes mode through the node API, with plexus-kube-fake standing in for the real API
//! server (which cannot run where plexus is tested): `GetStatus` reports the API connection,
//! the caches and the publish backlog, also during an outage; `Explain` with `from_cluster`
//! reads the pod and its NADs from the API; and writes queued during an outage go out as soon
//! as the API server answers again, however long the backoff had grown.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use plexus_client::v1;
use plexus_core::pod::PodIdentity;
use plexus_kube::{KubeSettings, RetryPolicy};
use plexus_kube_fake::{FakeApiServer, Resource};
use plexus_server::kubernetes::{Cluster, bridge};
use plexus_server::model::SandboxSpec;
use plexus_server::node::{Limits, Node};
use plexus_server::resolver::Resolver;
use plexus_server::server::{Access, Socket, serve_service};
use plexus_server::service::NodeService;
use plexus_server::test_util::FakeAttacher;
use serde_json::{Value, json};
use tokio::sync::oneshot;

const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
const MACVLAN: &str = r#"{"cniVersion":"1.0.0","name":"macvlan-conf","type":"macvlan","master":"eth0","ipam":{"type":"static"}}"#;
/// Longest any condition is waited for (reached only when a test fails).
const PATIENCE: Duration = Duration::from_secs(30);

type TestNode = Arc<Node<FakeAttacher, Resolver>>;

struct Daemon {
    fake: FakeApiServer,
    cluster: Arc<Cluster>,
    node: TestNode,
    client: v1::node_client::NodeClient<tonic::transport::Channel>,
    _bridge: tokio::task::JoinHandle<()>,
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

/// A plexusd in Kubernetes mode on a socket: the fake API, the cluster, the node, the
/// bridge writing status and events, and a client allowed by the peer-uid check.
async fn daemon(fake: FakeApiServer, policy: RetryPolicy, access: Access) -> Daemon {
    let settings = KubeSettings {
        kubeconfig: Some(fake.kubeconfig_path()),
        namespaces: Vec::new(),
        node_name: "node-a".to_string(),
    };
    let client = plexus_kube::connect(&settings).await.expect("client");
    let cluster = Arc::new(Cluster::start_with(client, &settings, policy));
    let resolver = Resolver::with_cluster(plexus_core::Config::default(), Arc::clone(&cluster));
    let node = Node::new(
        Arc::new(FakeAttacher::new()),
        Arc::new(resolver),
        Limits {
            setup_budget: None,
            ..Limits::default()
        },
    );
    let bridge = bridge(&node, Arc::clone(&cluster));
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("plexus.sock");
    let bound = Socket::bind(&socket).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let service = NodeService::with_cluster(Arc::clone(&node), Some(Arc::clone(&cluster)));
    tokio::spawn(serve_service(
        bound,
        service,
        access,
        Default::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let client = plexus_client::connect(&socket).await.unwrap();
    Daemon {
        fake,
        cluster,
        node,
        client,
        _bridge: bridge,
        _stop: stop,
        _dir: dir,
    }
}

fn me() -> Access {
    Access {
        allow_root: true,
        allowed_uids: vec![nix::unistd::getuid().as_raw()],
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

fn pod(fake: &FakeApiServer, name: &str, networks: Option<&str>) -> PodIdentity {
    let annotations = match networks {
        Some(n) => json!({ NETWORKS: n }),
        None => json!({}),
    };
    let obj = fake
        .create(
            Resource::Pod,
            "default",
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "default", "annotations": annotations},
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

async fn status(d: &mut Daemon) -> v1::KubernetesStatus {
    let answer = d
        .client
        .get_status(v1::GetStatusRequest {})
        .await
        .expect("GetStatus")
        .into_inner();
    assert_eq!(answer.mode, "kubernetes");
    assert_eq!(answer.node_name, "node-a");
    answer.kubernetes.expect("the Kubernetes part")
}

/// Polls `GetStatus` until `cond` holds.
async fn status_until(
    d: &mut Daemon,
    what: &str,
    cond: impl Fn(&v1::KubernetesStatus) -> bool,
) -> v1::KubernetesStatus {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let s = status(d).await;
        if cond(&s) {
            return s;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn status_shows_the_api_connection_the_caches_and_the_backlog() {
    let fake = FakeApiServer::start().await.unwrap();
    fake.create(
        Resource::NetworkAttachmentDefinition,
        "default",
        nad("macvlan-conf"),
    )
    .unwrap();
    let mut d = daemon(fake, RetryPolicy::default(), me()).await;
    let web = pod(&d.fake, "web", None);
    let s = status_until(&mut d, "synced", |s| {
        s.api_connected && s.nads_synced && s.pods_synced && s.pods == 1
    })
    .await;
    assert_eq!(s.nads, 1);
    assert_eq!((s.status_backlog, s.event_backlog), (0, 0));

    d.fake.stop().await;
    status_until(&mut d, "the outage seen", |s| {
        !s.api_connected && !s.last_error.is_empty()
    })
    .await;
    // A pod whose NADs are cached starts; its status and events wait for the API.
    d.node
        .setup_pod(spec(&web), networks("macvlan-conf"), None)
        .await
        .expect("cached NADs need no API server");
    let s = status_until(&mut d, "the backlog", |s| {
        s.status_backlog == 1 && s.event_backlog == 2
    })
    .await;
    assert!(!s.api_connected, "{s:?}");
    assert!(s.nads_synced, "the cache stays synced during an outage");

    d.fake.restart().await.unwrap();
    status_until(&mut d, "the backlog delivered", |s| {
        s.api_connected && s.status_backlog == 0 && s.event_backlog == 0 && s.delivered >= 3
    })
    .await;
}

#[tokio::test]
async fn status_is_under_the_peer_uid_check() {
    use tower::ServiceExt;
    let fake = FakeApiServer::start().await.unwrap();
    let d = daemon(fake, RetryPolicy::default(), me()).await;
    // The node service as `serve_service` mounts it, called by a uid that is not allowed
    // (the connection-level check would close such a caller before any RPC).
    let access = Access::root_and(vec![]);
    let service = v1::node_server::NodeServer::with_interceptor(
        NodeService::with_cluster(Arc::clone(&d.node), Some(Arc::clone(&d.cluster))),
        access.interceptor(),
    );
    let call = |uid: u32| {
        http::Request::builder()
            .method("POST")
            .uri("/plexus.v1.Node/GetStatus")
            .header("content-type", "application/grpc")
            .extension(plexus_server::listener::Peer::new(uid))
            .body(tonic::body::Body::empty())
            .unwrap()
    };
    let answer = service.oneshot(call(4242)).await.unwrap();
    let status = tonic::Status::from_header_map(answer.headers()).expect("a grpc status");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("4242"), "{status:?}");
}

async fn explain(d: &mut Daemon, namespace: &str, name: &str) -> Result<Value, tonic::Status> {
    let answer = d
        .client
        .explain(v1::ExplainRequest {
            pod: Some(v1::PodRef {
                namespace: namespace.into(),
                name: name.into(),
                uid: String::new(),
            }),
            from_cluster: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(!answer.text.is_empty());
    Ok(serde_json::from_str(&answer.json).expect("explain JSON"))
}

#[tokio::test]
async fn explain_reads_the_pod_and_its_nads_from_the_api() {
    let fake = FakeApiServer::start().await.unwrap();
    fake.create(
        Resource::NetworkAttachmentDefinition,
        "default",
        nad("macvlan-conf"),
    )
    .unwrap();
    let mut d = daemon(fake, RetryPolicy::default(), me()).await;
    d.cluster.nads.wait_synced().await;
    // `fresh` may not have reached the cache yet: the explain fetches it.
    d.fake
        .create(
            Resource::NetworkAttachmentDefinition,
            "default",
            nad("fresh"),
        )
        .unwrap();
    let web = pod(&d.fake, "web", Some("macvlan-conf,fresh@data"));
    let plan = explain(&mut d, "default", "web").await.unwrap();
    let text = plan.to_string();
    assert!(plan.get("error").is_none(), "{plan:#}");
    assert_eq!(plan["pod"]["uid"], web.uid.as_str(), "{plan:#}");
    for want in ["default/macvlan-conf", "default/fresh", "\"data\""] {
        assert!(text.contains(want), "{want} in {plan:#}");
    }

    // A pod naming a NAD that does not exist: the explanation carries the error.
    pod(&d.fake, "lost", Some("nowhere"));
    let plan = explain(&mut d, "default", "lost").await.unwrap();
    assert!(plan["error"].to_string().contains("nowhere"), "{plan:#}");
    // ... and a dry run reports nothing to the pod.
    assert!(
        d.fake
            .list(Resource::Event, Some("default"))
            .iter()
            .all(|e| e["regarding"]["name"] != "lost"),
        "explain recorded an event"
    );

    let err = explain(&mut d, "default", "ghost").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    assert!(err.message().contains("default/ghost"), "{}", err.message());

    let err = explain(&mut d, "Bad_NS", "web").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("DNS-1123 label"),
        "{}",
        err.message()
    );
    let err = explain(&mut d, "default", "web_1").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("DNS-1123 subdomain"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn explain_from_the_api_needs_kubernetes_mode() {
    let node = Node::new(
        Arc::new(FakeAttacher::new()),
        Arc::new(plexus_server::test_util::FakePlanner),
        Limits::default(),
    );
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("plexus.sock");
    let bound = Socket::bind(&socket).await.unwrap();
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve_service(
        bound,
        NodeService::new(node),
        me(),
        Default::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let mut client = plexus_client::connect(&socket).await.unwrap();
    let err = client
        .explain(v1::ExplainRequest {
            pod: Some(v1::PodRef {
                namespace: "default".into(),
                name: "web".into(),
                uid: String::new(),
            }),
            from_cluster: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        err.message().contains("nadSource.kubernetes"),
        "{}",
        err.message()
    );
    let status = client
        .get_status(v1::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.mode, "standalone");
    assert!(status.kubernetes.is_none());
}

#[tokio::test]
async fn writes_queued_in_an_outage_go_out_when_the_api_answers_again() {
    let fake = FakeApiServer::start().await.unwrap();
    fake.create(
        Resource::NetworkAttachmentDefinition,
        "default",
        nad("macvlan-conf"),
    )
    .unwrap();
    // A backoff far longer than the test's patience: only the wake-up on reconnection can
    // deliver in time.
    let hour = Duration::from_secs(3600);
    let policy = RetryPolicy {
        initial: hour,
        max: hour,
    };
    let mut d = daemon(fake, policy, me()).await;
    d.cluster.nads.wait_synced().await;
    let web = pod(&d.fake, "web", None);
    d.fake.stop().await;
    let outcome = d
        .node
        .setup_pod(spec(&web), networks("macvlan-conf"), None)
        .await
        .unwrap();
    // The first attempt failed: the queue now waits an hour.
    status_until(&mut d, "a failed delivery", |s| {
        s.status_backlog == 1 && !s.api_connected && !s.last_error.is_empty()
    })
    .await;
    d.fake.restart().await.unwrap();
    let want = outcome.network_status.clone();
    let landed = d
        .fake
        .wait_for(Resource::Pod, "default", "web", PATIENCE, |o| {
            o.and_then(|o| o.pointer("/metadata/annotations/k8s.v1.cni.cncf.io~1network-status"))
                .and_then(Value::as_str)
                == Some(want.as_str())
        })
        .await;
    assert!(landed.is_some(), "network-status {want} never landed");
    status_until(&mut d, "the events delivered", |s| s.event_backlog == 0).await;
}

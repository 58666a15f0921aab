//! Namespace isolation on the node API's Detach, with the real resolver (the example NAD
//! directory) and the persistent fake attacher: a pod whose `shared/storage-net` interface was
//! attached while isolation was off cannot have it detached through gRPC once isolation is on
//! (`PERMISSION_DENIED` naming the pod's namespace, the network's and the rule), while its own
//! namespace's and a global namespace's networks still can; the hot-plug controller's detach
//! (the annotation no longer asks for it) still removes it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use plexus_client::v1;
use plexus_core::nad::DirSource;
use plexus_server::model::Selector;
use plexus_server::node::{Limits, Node};
use plexus_server::resolver::Resolver;
use plexus_server::server::{Access, Socket, serve};
use plexus_server::test_util::FakeAttacher;
use tonic::Code;

type TestNode = Arc<Node<FakeAttacher, Resolver>>;

fn node(state: &Path, isolation: bool) -> TestNode {
    let networks = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples/networks.d");
    let config = plexus_core::Config {
        namespace_isolation: isolation,
        ..plexus_core::Config::default()
    };
    Node::new(
        Arc::new(FakeAttacher::persistent(state.to_path_buf())),
        Arc::new(Resolver::new(config, Arc::new(DirSource::new(networks)))),
        Limits {
            setup_budget: None,
            ..Limits::default()
        },
    )
}

struct Served {
    client: plexus_client::NodeClient<tonic::transport::Channel>,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<plexus_server::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn serve_node(node: TestNode) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("plexus.sock");
    let socket = Socket::bind(&path).await.unwrap();
    let uid = nix::unistd::geteuid().as_raw();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        socket,
        node,
        Access::root_and(vec![uid]),
        Default::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let client = plexus_client::connect(&path).await.unwrap();
    Served {
        client,
        stop,
        server,
        _dir: dir,
    }
}

impl Served {
    async fn stop(self) {
        drop(self.client);
        let _ = self.stop.send(());
        self.server.await.unwrap().unwrap();
    }
}

fn target() -> Option<v1::PodSelector> {
    Some(v1::PodSelector {
        sandbox_id: "sb-web".into(),
        pod: None,
    })
}

fn detach(interface: &str) -> v1::DetachRequest {
    v1::DetachRequest {
        target: target(),
        interface: interface.into(),
        via_annotation: false,
    }
}

#[tokio::test]
async fn detach_obeys_namespace_isolation_and_the_controller_may_still_drop_it() {
    let state = tempfile::tempdir().unwrap();
    // Isolation off: the pod in `apps` gets a network of `shared`, one of `default` (global)
    // and a hot-plugged one of `shared`.
    let mut s = serve_node(node(state.path(), false)).await;
    let setup = s
        .client
        .setup_pod(v1::SetupPodRequest {
            pod: Some(v1::PodRef {
                namespace: "apps".into(),
                name: "web".into(),
                uid: String::new(),
            }),
            sandbox_id: "sb-web".into(),
            netns_path: "/run/netns/web".into(),
            annotations: HashMap::from([(
                "k8s.v1.cni.cncf.io/networks".into(),
                "shared/storage-net,default/lab-bridge,shared/storage-net".into(),
            )]),
            labels: HashMap::new(),
            may_finish_later: false,
        })
        .await
        .unwrap()
        .into_inner();
    let ifaces: Vec<&str> = setup
        .attachments
        .iter()
        .map(|a| a.interface.as_str())
        .collect();
    assert_eq!(ifaces, ["eth0", "net1", "net2", "net3"]);
    s.stop().await;

    // Isolation on (global: default): the same record, a new plexusd.
    let n = node(state.path(), true);
    let mut s = serve_node(Arc::clone(&n)).await;
    let err = s.client.detach(detach("net1")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    for needed in [
        "net1",
        "namespace apps",
        "target namespace shared",
        "shared/storage-net",
        "global namespaces default",
        "namespace isolation",
    ] {
        assert!(
            err.message().contains(needed),
            "{needed:?} missing from: {}",
            err.message()
        );
    }
    // Attach is refused the same way.
    let err = s
        .client
        .attach(v1::AttachRequest {
            target: target(),
            selection: "shared/storage-net".into(),
            via_annotation: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    // A global namespace's network is detached. (The primary is refused by the engine, not
    // by policy: tests/hostile.rs `the_runtimes_primary_and_bad_interface_names_cannot_be_detached`.)
    s.client.detach(detach("net2")).await.unwrap();

    let id = plexus_core::id::SandboxId::new("sb-web").unwrap();
    let left = |n: &TestNode| -> Vec<String> {
        n.list(&Selector::Sandbox(id.clone()))
            .unwrap()
            .into_iter()
            .flat_map(|sb| sb.attachments)
            .map(|a| a.interface)
            .collect()
    };
    assert_eq!(left(&n), ["eth0", "net1", "net3"]);
    // The controller's detach (the annotation dropped it) is not an isolation question.
    n.detach_unwanted(Selector::Sandbox(id.clone()), "net3".parse().unwrap(), None)
        .await
        .unwrap();
    assert_eq!(left(&n), ["eth0", "net1"]);
    s.stop().await;
}

//! The node API with the real resolver (plexus-core over the example NAD directory) and the
//! fake attacher: the annotation path and hot-plug share validation and namespace isolation,
//! and resolution errors get the documented codes and name the network.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use plexus_client::v1;
use plexus_core::nad::DirSource;
use plexus_server::node::{Limits, Node};
use plexus_server::resolver::Resolver;
use plexus_server::server::{Access, Socket, serve};
use plexus_server::test_util::FakeAttacher;
use tonic::Code;

fn pod(namespace: &str, name: &str) -> Option<v1::PodRef> {
    Some(v1::PodRef {
        namespace: namespace.into(),
        name: name.into(),
        uid: String::new(),
    })
}

#[tokio::test]
async fn annotation_and_hotplug_paths_resolve_alike() {
    let networks = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples/networks.d");
    let config = plexus_core::Config {
        namespace_isolation: true,
        ..plexus_core::Config::default()
    };
    let resolver = Resolver::new(config, Arc::new(DirSource::new(networks)));
    let node = Node::new(
        Arc::new(FakeAttacher::new()),
        Arc::new(resolver),
        Limits {
            max_parallel: 2,
            max_queued: 2,
            setup_budget: None,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plexus.sock");
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
    let mut c = plexus_client::connect(&path).await.unwrap();

    let setup = |networks: &str| v1::SetupPodRequest {
        pod: pod("apps", "web"),
        sandbox_id: "sb-web".into(),
        netns_path: "/run/netns/web".into(),
        annotations: HashMap::from([("k8s.v1.cni.cncf.io/networks".into(), networks.into())]),
        labels: HashMap::new(),
        may_finish_later: false,
    };
    // Isolation on: `shared` is neither the pod's namespace nor global.
    let err = c.setup_pod(setup("shared/storage-net")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    assert!(err.message().contains("shared"), "{}", err.message());
    let err = c.setup_pod(setup("default/no-such-net")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{}", err.message());
    assert!(err.message().contains("no-such-net"), "{}", err.message());
    let err = c.setup_pod(setup("default/lab-bridge,")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());

    let ok = c
        .setup_pod(setup("default/lab-bridge"))
        .await
        .unwrap()
        .into_inner();
    let ifaces: Vec<&str> = ok
        .attachments
        .iter()
        .map(|a| a.interface.as_str())
        .collect();
    assert_eq!(ifaces, ["eth0", "net1"]);

    let target = Some(v1::PodSelector {
        sandbox_id: String::new(),
        pod: pod("apps", "web"),
    });
    let err = c
        .attach(v1::AttachRequest {
            target: target.clone(),
            selection: "shared/storage-net".into(),
            via_annotation: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    let hot = c
        .attach(v1::AttachRequest {
            target: target.clone(),
            selection: r#"{"name": "tuned-bridge", "namespace": "default"}"#.into(),
            via_annotation: false,
        })
        .await
        .unwrap()
        .into_inner()
        .attachment
        .unwrap();
    assert_eq!(hot.network, "default/tuned-bridge");
    assert_eq!(hot.interface, "net2");
    assert_eq!(hot.origin, "hotplug");
    let err = c
        .attach(v1::AttachRequest {
            target,
            selection: "default/lab-bridge@net2".into(),
            via_annotation: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());

    let explained = c
        .explain(v1::ExplainRequest {
            pod_manifest: "kind: Pod\nmetadata: {name: web, namespace: apps, annotations: {k8s.v1.cni.cncf.io/networks: default/lab-bridge}}".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let json: serde_json::Value = serde_json::from_str(&explained.json).unwrap();
    assert_eq!(json["apiVersion"], "plexus.io/explain/v1");
    assert_eq!(json["attachments"][1]["network"], "default/lab-bridge");

    drop(c);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

//! Device-plugin networks in Kubernetes mode: plexusd reads the device ids the kubelet
//! allocated to a pod from the kubelet's pod-resources API (`v1.PodResourcesLister`) and
//! resolution writes them into the configs of the networks whose NAD names the resource
//! (F22/F24). The kubelet's side is played here by a small tonic server implementing the
//! same proto on a unix socket in a temp dir; the API server's by plexus-kube-fake.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plexus_core::pod::PodIdentity;
use plexus_kube::KubeSettings;
use plexus_kube_fake::{FakeApiServer, Resource};
use plexus_proto::podresources as wire;
use plexus_proto::podresources::pod_resources_lister_server::{
    PodResourcesLister, PodResourcesListerServer,
};
use plexus_server::error::{Error, ResolveFailure};
use plexus_server::kubernetes::Cluster;
use plexus_server::planner::Planner;
use plexus_server::pod_resources::{CONFIG_KEY, PodResources, PodResourcesError};
use plexus_server::resolver::Resolver;
use serde_json::{Value, json};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

const SRIOV: &str =
    r#"{"cniVersion":"1.0.0","name":"sriov-net","type":"sriov","ipam":{"type":"static"}}"#;
const RESOURCE: &str = "intel.com/sriov_netdevice";

/// The kubelet's side of the pod-resources API: one pod with two VFs of one resource, in
/// two containers. `with_get: false` answers `Get` as a kubelet without it does.
struct Kubelet {
    with_get: bool,
    calls: Arc<Mutex<Vec<&'static str>>>,
}

fn pod_resources(namespace: &str, name: &str) -> wire::PodResources {
    let vf = |id: &str| wire::ContainerDevices {
        resource_name: RESOURCE.into(),
        device_ids: vec![id.into()],
    };
    wire::PodResources {
        name: name.into(),
        namespace: namespace.into(),
        containers: vec![
            wire::ContainerResources {
                name: "app".into(),
                devices: vec![vf("0000:03:00.2")],
            },
            wire::ContainerResources {
                name: "sidecar".into(),
                devices: vec![vf("0000:03:00.1")],
            },
        ],
    }
}

#[tonic::async_trait]
impl PodResourcesLister for Kubelet {
    async fn list(
        &self,
        _: Request<wire::ListPodResourcesRequest>,
    ) -> Result<Response<wire::ListPodResourcesResponse>, Status> {
        self.calls.lock().unwrap().push("List");
        Ok(Response::new(wire::ListPodResourcesResponse {
            pod_resources: vec![
                pod_resources("other", "web"),
                pod_resources("default", "web"),
            ],
        }))
    }

    async fn get(
        &self,
        request: Request<wire::GetPodResourcesRequest>,
    ) -> Result<Response<wire::GetPodResourcesResponse>, Status> {
        self.calls.lock().unwrap().push("Get");
        if !self.with_get {
            return Err(Status::unimplemented("unknown method Get"));
        }
        let req = request.into_inner();
        if req.pod_name != "web" {
            return Err(Status::not_found(format!(
                "pod {} in namespace {} not found",
                req.pod_name, req.pod_namespace
            )));
        }
        Ok(Response::new(wire::GetPodResourcesResponse {
            pod_resources: Some(pod_resources(&req.pod_namespace, &req.pod_name)),
        }))
    }
}

/// Serves the kubelet's side on a socket in `dir`; the server ends with the test's runtime.
fn kubelet(dir: &std::path::Path, with_get: bool) -> (PodResources, Arc<Mutex<Vec<&'static str>>>) {
    let socket = dir.join("kubelet.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let service = PodResourcesListerServer::new(Kubelet {
        with_get,
        calls: Arc::clone(&calls),
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(UnixListenerStream::new(listener)),
    );
    (PodResources::new(socket, Duration::from_secs(5)), calls)
}

fn vfs() -> BTreeMap<String, Vec<String>> {
    BTreeMap::from([(
        RESOURCE.to_string(),
        vec!["0000:03:00.1".to_string(), "0000:03:00.2".to_string()],
    )])
}

#[tokio::test]
async fn get_returns_the_pod_s_devices_by_resource() {
    let dir = tempfile::tempdir().unwrap();
    let (client, calls) = kubelet(dir.path(), true);
    assert_eq!(client.allocation("default", "web").await.unwrap(), vfs());
    assert_eq!(*calls.lock().unwrap(), ["Get"]);
    let err = client.allocation("default", "ghost").await.unwrap_err();
    assert!(
        matches!(err, PodResourcesError::Call { method: "Get", .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_kubelet_without_get_is_read_with_list() {
    let dir = tempfile::tempdir().unwrap();
    let (client, calls) = kubelet(dir.path(), false);
    assert_eq!(client.allocation("default", "web").await.unwrap(), vfs());
    assert!(
        client
            .allocation("default", "absent")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(*calls.lock().unwrap(), ["Get", "List", "Get", "List"]);
}

#[tokio::test]
async fn a_missing_socket_names_the_socket_and_the_config_key() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("pod-resources/kubelet.sock");
    let client = PodResources::new(&socket, Duration::from_secs(5));
    let err = client.allocation("default", "web").await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PodResourcesError::Connect { .. }), "{text}");
    assert!(text.contains(&socket.display().to_string()), "{text}");
    assert!(text.contains(CONFIG_KEY), "{text}");
    // A file that is not a listening socket: the connect fails, naming it too.
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    std::fs::write(&socket, b"").unwrap();
    let err = client
        .allocation("default", "web")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&socket.display().to_string()) && err.contains(CONFIG_KEY),
        "{err}"
    );
}

fn sriov_nad() -> Value {
    json!({
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {
            "name": "sriov-net", "namespace": "default",
            "annotations": {"k8s.v1.cni.cncf.io/resourceName": RESOURCE}
        },
        "spec": {"config": SRIOV}
    })
}

async fn cluster(fake: &FakeApiServer) -> Cluster {
    let settings = KubeSettings {
        kubeconfig: Some(fake.kubeconfig_path()),
        namespaces: Vec::new(),
        node_name: "node-a".to_string(),
    };
    let client = plexus_kube::connect(&settings).await.expect("client");
    Cluster::start(client, &settings)
}

fn networks(value: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("k8s.v1.cni.cncf.io/networks".to_string(), value.to_string())])
}

#[tokio::test]
async fn resolution_writes_the_allocated_vfs_into_the_sriov_configs() {
    let fake = FakeApiServer::start().await.unwrap();
    fake.create(
        Resource::NetworkAttachmentDefinition,
        "default",
        sriov_nad(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (kubelet, _) = kubelet(dir.path(), true);
    let cluster = Arc::new(cluster(&fake).await.with_pod_resources(kubelet));
    cluster.nads.wait_synced().await;
    let resolver = Resolver::with_cluster(plexus_core::Config::default(), Arc::clone(&cluster));
    let pod = PodIdentity::new("default", "web", "uid-web");
    let plan = resolver
        .plan_fetching(&pod, &networks("sriov-net,sriov-net"))
        .await
        .unwrap();
    let ids: Vec<(String, Option<String>)> = plan
        .attachments
        .iter()
        .filter(|a| !a.primary)
        .map(|a| {
            let config: Value = serde_json::from_slice(&a.config.bytes).unwrap();
            (
                config["deviceID"].as_str().unwrap_or_default().to_string(),
                a.runtime_config.device_id.clone(),
            )
        })
        .collect();
    assert_eq!(
        ids,
        [
            ("0000:03:00.1".to_string(), Some("0000:03:00.1".to_string())),
            ("0000:03:00.2".to_string(), Some("0000:03:00.2".to_string())),
        ],
        "each attachment takes the next id, in sorted order (F22/F24)"
    );
}

#[tokio::test]
async fn a_device_network_without_the_kubelet_socket_is_refused_as_retryable() {
    let fake = FakeApiServer::start().await.unwrap();
    fake.create(
        Resource::NetworkAttachmentDefinition,
        "default",
        sriov_nad(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kubelet.sock");
    let cluster = Arc::new(
        cluster(&fake)
            .await
            .with_pod_resources(PodResources::new(&socket, Duration::from_secs(5))),
    );
    cluster.nads.wait_synced().await;
    let resolver = Resolver::with_cluster(plexus_core::Config::default(), Arc::clone(&cluster));
    let pod = PodIdentity::new("default", "web", "uid-web");
    // A pod without device networks never asks the kubelet.
    resolver
        .plan_fetching(&pod, &BTreeMap::new())
        .await
        .unwrap();
    let err = resolver
        .plan_fetching(&pod, &networks("sriov-net"))
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
    let text = err.to_string();
    assert!(text.contains(&socket.display().to_string()), "{text}");
    assert!(text.contains(CONFIG_KEY), "{text}");
}

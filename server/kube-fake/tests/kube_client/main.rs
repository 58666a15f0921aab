//! The real kube-rs client (TLS, bearer auth, kubeconfig loading, list/watch, the runtime
//! watcher) against the fake API server. The fake stands in for a real API server because
//! none can run on the machines where plexus is tested; these tests check that it answers as
//! the API's documented conventions say, through the client plexus uses.

mod auth;
mod list_watch;
mod rbac;
mod runtime;
mod write;

use std::path::Path;
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use plexus_kube_fake::{FakeApiServer, Resource};
use serde_json::{Value, json};

/// Upper bound for waiting on an event that should come promptly.
pub const WAIT: Duration = Duration::from_secs(20);

/// A kube client from a kubeconfig file.
pub async fn client_from(path: &Path) -> Client {
    let kc = Kubeconfig::read_from(path).expect("read kubeconfig");
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config from kubeconfig");
    Client::try_from(cfg).expect("client")
}

/// A started fake and a client for it (inline token).
pub async fn setup() -> (FakeApiServer, Client) {
    let server = FakeApiServer::start().await.expect("start fake API server");
    let client = client_from(&server.kubeconfig_path()).await;
    (server, client)
}

/// A NAD object.
pub fn nad(name: &str) -> Value {
    json!({
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": { "name": name },
        "spec": { "config": format!(r#"{{"cniVersion":"1.0.0","name":"{name}","type":"bridge"}}"#) }
    })
}

/// A pod object scheduled on `node`.
pub fn pod(name: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "annotations": { "k8s.v1.cni.cncf.io/networks": "net1" } },
        "spec": { "nodeName": node, "containers": [{ "name": "c", "image": "busybox" }] }
    })
}

/// Creates a pod through the handle.
pub fn add_pod(server: &FakeApiServer, ns: &str, name: &str, node: &str) -> Value {
    server
        .create(Resource::Pod, ns, pod(name, node))
        .expect("create pod")
}

/// The Status of an API error.
pub fn api_status(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API Status error, got {other:?}"),
    }
}

/// The NAD API (all namespaces or one), as a dynamic object.
pub fn nad_api(client: kube::Client, ns: Option<&str>) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "network-attachment-definitions");
    match ns {
        Some(ns) => Api::namespaced_with(client, ns, &ar),
        None => Api::all_with(client, &ar),
    }
}

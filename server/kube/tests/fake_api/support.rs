//! Shared helpers: a fake API server, a client from its kubeconfig, objects, and waiting on a
//! condition (polled, bounded; never a fixed sleep as synchronisation).

use std::future::Future;
use std::time::Duration;

use plexus_kube::{KubeSettings, RetryPolicy};
use plexus_kube_fake::{FakeApiServer, RequestRecord, Resource};
use serde_json::{Value, json};

/// Longest any condition is waited for.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A short backoff so retries happen within the test.
pub const FAST: RetryPolicy = RetryPolicy {
    initial: Duration::from_millis(20),
    max: Duration::from_millis(200),
};

pub async fn fake() -> FakeApiServer {
    FakeApiServer::start()
        .await
        .expect("fake API server starts")
}

/// The real client of a kubeconfig (inline token).
pub async fn client(fake: &FakeApiServer) -> kube::Client {
    settings_client(fake.kubeconfig_path()).await
}

pub async fn settings_client(kubeconfig: std::path::PathBuf) -> kube::Client {
    let settings = KubeSettings {
        kubeconfig: Some(kubeconfig),
        namespaces: Vec::new(),
        node_name: "node-a".to_string(),
    };
    plexus_kube::connect(&settings).await.expect("client")
}

pub fn nad(namespace: &str, name: &str, config: &str) -> Value {
    json!({
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"config": config}
    })
}

pub fn pod(namespace: &str, name: &str, node: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "pause"}]}
    })
}

/// Creates a pod and returns its uid.
pub fn create_pod(fake: &FakeApiServer, namespace: &str, name: &str, node: &str) -> String {
    let obj = fake
        .create(
            Resource::Pod,
            namespace,
            pod(namespace, name, node, json!({})),
        )
        .expect("pod created");
    obj["metadata"]["uid"].as_str().expect("uid").to_string()
}

/// Waits until `cond` holds; panics naming `what` after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The requests logged with `method` whose path ends with `suffix`.
pub fn requests(fake: &FakeApiServer, method: &str, suffix: &str) -> Vec<RequestRecord> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method == method && r.path.ends_with(suffix))
        .collect()
}

/// The pod's network-status annotation.
pub fn network_status(fake: &FakeApiServer, namespace: &str, name: &str) -> Option<String> {
    fake.get(Resource::Pod, namespace, name)?
        .pointer("/metadata/annotations/k8s.v1.cni.cncf.io~1network-status")?
        .as_str()
        .map(str::to_string)
}

/// Waits until the pod's network-status is `want`.
pub async fn wait_status(fake: &FakeApiServer, namespace: &str, name: &str, want: &str) {
    let got = fake
        .wait_for(Resource::Pod, namespace, name, PATIENCE, |obj| {
            obj.and_then(|o| o.pointer("/metadata/annotations/k8s.v1.cni.cncf.io~1network-status"))
                .and_then(Value::as_str)
                == Some(want)
        })
        .await;
    assert!(
        got.is_some(),
        "network-status of {namespace}/{name} never became {want}"
    );
}

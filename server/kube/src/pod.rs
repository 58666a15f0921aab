//! The pods of this node, metadata only: a kube-rs watcher of
//! `PartialObjectMeta<Pod>` with `fieldSelector=spec.nodeName=<node>` feeding a reflector
//! store. Callers that were not handed a pod's annotations (and the hot-plug controller) read
//! them here, by `namespace/name` or by uid. This module never GETs a pod: the setup path must
//! not wait on the API server, so a pod the watch has not delivered yet is simply unknown.
//! [`PodWatch::changes`] wakes the hot-plug controller when a pod's
//! `k8s.v1.cni.cncf.io/networks` annotation changes (not on every status write).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};

use crate::error::Error;
use crate::nad::lock;
use crate::task::Tasks;

/// A pod as this node's watch knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodMeta {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
}

/// The metadata of the pods scheduled to this node. Cheap to clone; the watch stops when
/// the last clone is dropped.
#[derive(Clone)]
pub struct PodWatch {
    store: Store<PartialObjectMeta<Pod>>,
    shared: Arc<Shared>,
    _tasks: Arc<Tasks>,
}

struct Shared {
    node: String,
    synced: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// Bumped when a pod's networks annotation changes, and when a (re)list completes.
    changes: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for PodWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodWatch")
            .field("node", &self.shared.node)
            .field("synced", &self.synced())
            .field("pods", &self.store.len())
            .finish_non_exhaustive()
    }
}

impl PodWatch {
    /// Starts watching the pods whose `spec.nodeName` is `node`. Must be called inside a
    /// tokio runtime.
    pub fn start(client: kube::Client, node: &str) -> Self {
        let writer = reflector::store::Writer::<PartialObjectMeta<Pod>>::default();
        let store = writer.as_reader();
        let shared = Arc::new(Shared {
            node: node.to_string(),
            synced: AtomicBool::new(false),
            last_error: Mutex::new(None),
            changes: tokio::sync::watch::channel(0).0,
        });
        let mut tasks = Tasks::default();
        tasks.spawn(run(client, Arc::clone(&shared), writer));
        PodWatch {
            store,
            shared,
            _tasks: Arc::new(tasks),
        }
    }

    /// The node whose pods are watched.
    pub fn node(&self) -> &str {
        &self.shared.node
    }

    /// True once the first list has completed.
    pub fn synced(&self) -> bool {
        self.shared.synced.load(Ordering::Acquire)
    }

    /// Waits until [`PodWatch::synced`].
    pub async fn wait_synced(&self) {
        let _ = self.store.wait_until_ready().await;
    }

    /// Pods known.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// True when no pod is known.
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    /// The last list/watch failure, if the watch has not recovered since.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.shared.last_error).clone()
    }

    /// A receiver marked changed whenever a pod of this node gets a different
    /// `k8s.v1.cni.cncf.io/networks` annotation (added, edited or removed) and whenever a
    /// (re)list completes. Status writes and other metadata edits do not wake it.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    /// The pod `namespace/name`, if this node's watch holds it.
    pub fn get(&self, namespace: &str, name: &str) -> Option<PodMeta> {
        let key = ObjectRef::<PartialObjectMeta<Pod>>::new(name).within(namespace);
        self.store.get(&key).map(|p| meta(&p))
    }

    /// The pod with this uid, if this node's watch holds it.
    pub fn by_uid(&self, uid: &str) -> Option<PodMeta> {
        self.store
            .find(|p| p.metadata.uid.as_deref() == Some(uid))
            .map(|p| meta(&p))
    }
}

/// One GET of the pod `namespace/name`, metadata only (`GET /api/v1/namespaces/{ns}/pods/{name}`
/// as `PartialObjectMetadata`), for `plexusctl explain --pod`: never on the setup path.
/// `Ok(None)` when the API server says the pod does not exist; a 403 names the missing
/// `get` on `pods`.
pub async fn read_pod(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    timeout: std::time::Duration,
) -> crate::Result<Option<PodMeta>> {
    let operation = format!("GET pod {namespace}/{name}");
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let answer = tokio::time::timeout(timeout, api.get_metadata_opt(name))
        .await
        .map_err(|_| Error::Timeout {
            operation: operation.clone(),
            timeout,
        })?
        .map_err(|e| Error::from_kube(e, operation, "get", "pods", Some(namespace)))?;
    Ok(answer.as_ref().map(meta))
}

fn meta(p: &PartialObjectMeta<Pod>) -> PodMeta {
    PodMeta {
        namespace: p.metadata.namespace.clone().unwrap_or_default(),
        name: p.metadata.name.clone().unwrap_or_default(),
        uid: p.metadata.uid.clone().unwrap_or_default(),
        annotations: p
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
    }
}

async fn run(
    client: kube::Client,
    shared: Arc<Shared>,
    writer: reflector::store::Writer<PartialObjectMeta<Pod>>,
) {
    // `Api<PartialObjectMeta<_>>` lists and watches with the metadata-only content type.
    let api: Api<PartialObjectMeta<Pod>> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", shared.node));
    let stream = reflector::reflector(
        writer,
        watcher(api, config)
            .default_backoff()
            .modify(|pod: &mut PartialObjectMeta<Pod>| {
                // Only annotations and identity are read; drop the rest of the metadata.
                pod.metadata.managed_fields = None;
                pod.metadata.labels = None;
                pod.metadata.owner_references = None;
            }),
    );
    futures::pin_mut!(stream);
    // The networks annotation of each pod as last seen, to tell its edits from other writes.
    let mut networks: HashMap<(String, String), Option<String>> = HashMap::new();
    let bump = || shared.changes.send_modify(|n| *n = n.wrapping_add(1));
    while let Some(item) = stream.next().await {
        match item {
            Ok(watcher::Event::InitDone) => {
                if !shared.synced.swap(true, Ordering::AcqRel) {
                    tracing::info!(node = %shared.node, "pods of this node synced");
                }
                lock(&shared.last_error).take();
                bump();
            }
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                let (key, value) = networks_of(&pod);
                let changed = networks.get(&key) != Some(&value);
                networks.insert(key, value);
                if changed && shared.synced.load(Ordering::Acquire) {
                    bump();
                }
            }
            Ok(watcher::Event::Delete(pod)) => {
                networks.remove(&networks_of(&pod).0);
            }
            Ok(watcher::Event::Init) => networks.clear(),
            Err(err) => {
                let message = pod_watch_error(&err).to_string();
                tracing::warn!(error = %message, "watching the pods of this node");
                *lock(&shared.last_error) = Some(message);
            }
        }
    }
}

fn networks_of(pod: &PartialObjectMeta<Pod>) -> ((String, String), Option<String>) {
    let m = &pod.metadata;
    let key = (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    );
    let value = m
        .annotations
        .as_ref()
        .and_then(|a| a.get(plexus_core::annotation::NETWORKS))
        .cloned();
    (key, value)
}

fn pod_watch_error(err: &watcher::Error) -> Error {
    match err {
        watcher::Error::InitialListFailed(kube::Error::Api(s)) if s.code == 403 => {
            Error::Forbidden {
                verb: "list",
                resource: "pods",
                scope: " cluster-wide (fieldSelector spec.nodeName)".to_string(),
                message: s.message.clone(),
            }
        }
        watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s))
            if s.code == 403 =>
        {
            Error::Forbidden {
                verb: "watch",
                resource: "pods",
                scope: " cluster-wide (fieldSelector spec.nodeName)".to_string(),
                message: s.message.clone(),
            }
        }
        other => Error::Transport {
            operation: "watch pods of this node".to_string(),
            cause: other.to_string(),
        },
    }
}

/// Longest a networks-annotation patch may take.
const PATCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Sets the pod's `k8s.v1.cni.cncf.io/networks` annotation (`plexusctl attach/detach --pod`
/// on a Kubernetes node): one merge patch of the pod carrying its uid, so a pod recreated
/// under the same name is refused (422) instead of edited. Needs `patch` on `pods`.
pub async fn patch_networks(
    client: &kube::Client,
    pod: &crate::PodKey,
    value: &str,
) -> crate::Result<()> {
    let operation = format!("patching the networks annotation of pod {pod}");
    let params = kube::api::PatchParams {
        field_manager: Some(crate::status::FIELD_MANAGER.to_string()),
        ..kube::api::PatchParams::default()
    };
    let body = serde_json::json!({
        "metadata": {
            "uid": pod.uid,
            "annotations": { plexus_core::annotation::NETWORKS: value },
        }
    });
    let request = kube::core::Request::new(format!("/api/v1/namespaces/{}/pods", pod.namespace))
        .patch(&pod.name, &params, &kube::api::Patch::Merge(body))
        .map_err(|e| Error::Transport {
            operation: operation.clone(),
            cause: e.to_string(),
        })?;
    let answer = tokio::time::timeout(PATCH_TIMEOUT, crate::request::send(client, request))
        .await
        .map_err(|_| Error::Timeout {
            operation: operation.clone(),
            timeout: PATCH_TIMEOUT,
        })?
        .map_err(|cause| Error::Transport {
            operation: operation.clone(),
            cause,
        })?;
    match answer.code {
        200..=299 => Ok(()),
        403 => Err(Error::Forbidden {
            verb: "patch",
            resource: "pods",
            scope: crate::error::scope(Some(&pod.namespace)),
            message: answer.message,
        }),
        422 => Err(Error::Api {
            operation: format!("{operation} (uid {}; was the pod recreated?)", pod.uid),
            code: 422,
            message: answer.message,
        }),
        code => Err(Error::Api {
            operation,
            code,
            message: answer.message,
        }),
    }
}

//! Kubernetes mode (`nadSource.kubernetes`): wires plexus-kube into the node service. It
//! owns the [`Cluster`] (NAD cache, this node's pod watch, network-status publisher, event
//! recorder), the resolution loop that fetches a NAD the cache does not hold yet, and the
//! bridge that turns the node's attachment events into network-status patches and pod events.
//! Nothing here is on the pod-setup path except [`Cluster::resolve`], whose one GET runs under
//! the setup's own deadline; every write to the API goes through plexus-kube's queues.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use plexus_core::nad::NadSource;
use plexus_core::pod::PodIdentity;
use plexus_kube::{KubeSettings, NadCache, PodKey, PodWatch, Publisher, Recorder, event};
use tokio::sync::broadcast::error::RecvError;

use crate::attacher::Attacher;
use crate::error::{Error, Result};
use crate::model::{Event, EventKind, SandboxView, Selector};
use crate::node::Node;
use crate::planner::Planner;

/// Most NADs one resolution fetches directly (a pod names a handful of networks).
const MAX_FETCHES: usize = 16;
/// Longest the direct GETs of one resolution may take together (the NRI path answers within
/// 1.5 s); past it the pod is refused as retryable.
const FETCH_BUDGET: std::time::Duration = std::time::Duration::from_secs(1);

/// The API-server side of a plexusd in Kubernetes mode.
pub struct Cluster {
    /// NADs, watched.
    pub nads: NadCache,
    /// This node's pods, metadata only.
    pub pods: PodWatch,
    /// network-status writer.
    pub publisher: Publisher,
    /// Pod events.
    pub recorder: Recorder,
    /// For the networks-annotation patches of `plexusctl attach/detach --pod`.
    client: plexus_kube::Client,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("nads", &self.nads)
            .field("pods", &self.pods)
            .finish_non_exhaustive()
    }
}

/// What `plexusctl status` shows of the API side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    /// The NAD cache completed its first list.
    pub nads_synced: bool,
    /// NADs cached.
    pub nads: usize,
    /// The pod watch completed its first list.
    pub pods_synced: bool,
    /// Pods whose network-status is not written yet.
    pub publish_backlog: usize,
    /// The last API failure seen by a watch or a writer.
    pub last_error: Option<String>,
}

impl Cluster {
    /// Connects (kubeconfig or in-cluster service account) and starts the watches and queues.
    /// Nothing waits for the API server: until the NAD list syncs, pods needing a NAD are
    /// refused as retryable.
    pub async fn connect(
        kubeconfig: Option<PathBuf>,
        namespaces: Vec<String>,
    ) -> Result<Arc<Self>> {
        let kube = |e: plexus_kube::Error| Error::Kubernetes {
            message: e.to_string(),
        };
        let settings = KubeSettings::new(kubeconfig, namespaces).map_err(kube)?;
        let client = plexus_kube::connect(&settings).await.map_err(kube)?;
        tracing::info!(node = %settings.node_name, namespaces = ?settings.namespaces,
            "Kubernetes mode: watching network-attachment-definitions and this node's pods");
        Ok(Arc::new(Self::start(client, &settings)))
    }

    /// Starts everything on an existing client.
    pub fn start(client: plexus_kube::Client, settings: &KubeSettings) -> Self {
        Cluster {
            nads: NadCache::start(client.clone(), &settings.namespaces),
            pods: PodWatch::start(client.clone(), &settings.node_name),
            publisher: Publisher::start(client.clone()),
            recorder: Recorder::start(client.clone(), &settings.node_name),
            client,
        }
    }

    /// The API side's state.
    pub fn status(&self) -> ClusterStatus {
        let stats = self.publisher.stats();
        ClusterStatus {
            nads_synced: self.nads.synced(),
            nads: self.nads.len(),
            pods_synced: self.pods.synced(),
            publish_backlog: stats.backlog,
            last_error: self
                .nads
                .last_error()
                .or_else(|| self.pods.last_error())
                .or(stats.last_error),
        }
    }

    /// Runs `attempt` against the NAD cache; when it fails for a NAD the cache does not hold
    /// (or cannot answer for yet), fetches that NAD once and tries again. A NAD still missing
    /// then is reported to the pod (`NoNetworkFound`); an API server that does not answer
    /// makes the error retryable.
    pub async fn resolve<T>(
        &self,
        pod: &PodIdentity,
        mut attempt: impl FnMut(&dyn NadSource) -> plexus_core::Result<T>,
    ) -> plexus_core::Result<T> {
        let mut fetched: Vec<(String, String)> = Vec::new();
        let started = tokio::time::Instant::now();
        loop {
            let err = match attempt(&self.nads) {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let Some((namespace, name)) = plexus_kube::missing_nad(&err) else {
                return Err(err);
            };
            if fetched
                .iter()
                .any(|k| *k == (namespace.clone(), name.clone()))
                || fetched.len() >= MAX_FETCHES
            {
                self.report_not_found(pod, &err);
                return Err(err);
            }
            if started.elapsed() >= FETCH_BUDGET {
                return Err(plexus_core::Error::NadStoreNotReady {
                    reason: format!(
                        "not in the cache, and the direct GETs of this pod's NADs took longer than {FETCH_BUDGET:?}; the pod is retried"
                    ),
                    namespace,
                    name,
                });
            }
            if let Err(cause) = self.nads.fetch(&namespace, &name).await {
                return Err(plexus_core::Error::NadStoreNotReady {
                    reason: format!(
                        "not in the cache and the direct GET failed ({cause}); the pod is retried"
                    ),
                    namespace,
                    name,
                });
            }
            fetched.push((namespace, name));
        }
    }

    fn report_not_found(&self, pod: &PodIdentity, err: &plexus_core::Error) {
        let plexus_core::Error::NetworkNotFound {
            namespace, name, ..
        } = err
        else {
            return;
        };
        if let Some(key) = self.pod_key(pod) {
            let cause =
                format!("network-attachment-definitions.k8s.cni.cncf.io \"{name}\" not found");
            self.recorder
                .record(&key, &event::no_network_found(namespace, name, &cause));
        }
    }

    /// The pod's API identity: its uid from the runtime, else from this node's pod watch.
    pub fn pod_key(&self, pod: &PodIdentity) -> Option<PodKey> {
        let uid = if pod.uid.is_empty() {
            self.pods.get(&pod.namespace, &pod.name)?.uid
        } else {
            pod.uid.clone()
        };
        Some(PodKey {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            uid,
        })
    }

    /// Queues the network-status of a recorded sandbox.
    fn publish_status<A: Attacher, P: Planner>(&self, node: &Node<A, P>, sandbox: &SandboxView) {
        let Some(key) = self.pod_key(&sandbox.pod) else {
            tracing::warn!(pod = %sandbox.pod, "network-status not published: the pod's uid is unknown (not passed by the runtime, not in this node's pod watch)");
            return;
        };
        let status = match node.network_status(sandbox) {
            Ok(s) if s.is_empty() => return,
            Ok(s) => s,
            Err(err) => {
                tracing::warn!(pod = %sandbox.pod, error = %err, "rendering network-status");
                return;
            }
        };
        if let Err(err) = self.publisher.publish(key, &status) {
            tracing::warn!(error = %err, "network-status not queued");
        }
    }

    /// Queues the status of every recorded sandbox (start-up re-drive, and after the event
    /// stream lagged).
    pub fn publish_all<A: Attacher, P: Planner>(&self, node: &Node<A, P>) {
        match node.list(&Selector::All) {
            Ok(sandboxes) => {
                for sandbox in &sandboxes {
                    self.publish_status(node, sandbox);
                }
            }
            Err(err) => tracing::warn!(error = %err, "listing sandboxes to publish network-status"),
        }
    }

    /// The pod event for a node event, if any.
    fn record(&self, ev: &Event) {
        let report = match (ev.kind, ev.attachment.as_ref()) {
            (EventKind::Attached, Some(a)) => {
                event::added_interface(&a.interface, &a.ips, &a.network)
            }
            (EventKind::AttachFailed, a) => event::attach_failed(
                a.map_or("", |a| a.network.as_str()),
                a.map_or("", |a| a.interface.as_str()),
                &ev.message,
            ),
            _ => return,
        };
        if let Some(key) = self.pod_key(&ev.pod) {
            self.recorder.record(&key, &report);
        }
    }
}

impl crate::node::NetworksAnnotation for Cluster {
    fn current(&self, pod: &PodIdentity) -> Option<(String, String)> {
        let meta = self.pods.get(&pod.namespace, &pod.name)?;
        if !pod.uid.is_empty() && !meta.uid.is_empty() && pod.uid != meta.uid {
            return None; // a newer pod of the same name
        }
        let value = meta
            .annotations
            .get(plexus_core::annotation::NETWORKS)
            .cloned()
            .unwrap_or_default();
        Some((meta.uid, value))
    }

    fn write<'a>(
        &'a self,
        pod: &'a PodIdentity,
        uid: &'a str,
        value: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let key = PodKey {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                uid: uid.to_string(),
            };
            plexus_kube::patch_networks(&self.client, &key, value)
                .await
                .map_err(|e| Error::Kubernetes {
                    message: e.to_string(),
                })
        })
    }
}

/// Follows the node's attachment events until the node is gone: pod events for each, and the
/// network-status of every sandbox they touched (a burst is drained first, so a setup of N
/// interfaces renders its status once). Starts with a re-drive of every recorded sandbox.
pub fn bridge<A: Attacher, P: Planner>(
    node: &Arc<Node<A, P>>,
    cluster: Arc<Cluster>,
) -> tokio::task::JoinHandle<()> {
    let mut events = node.subscribe();
    let node = Arc::downgrade(node);
    tokio::spawn(async move {
        if let Some(node) = node.upgrade() {
            cluster.publish_all(&node);
        }
        loop {
            let first = events.recv().await;
            let Some(node) = node.upgrade() else { return };
            let mut touched = BTreeSet::new();
            let mut next = Some(first);
            while let Some(received) = next.take() {
                match received {
                    Ok(ev) => {
                        cluster.record(&ev);
                        if matches!(ev.kind, EventKind::Attached | EventKind::Detached) {
                            touched.insert(ev.sandbox_id);
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(
                            missed,
                            "attachment events lagged; re-publishing every network-status"
                        );
                        cluster.publish_all(&node);
                    }
                    Err(RecvError::Closed) => return,
                }
                next = match events.try_recv() {
                    Ok(ev) => Some(Ok(ev)),
                    Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => {
                        Some(Err(RecvError::Lagged(n)))
                    }
                    Err(_) => None,
                };
            }
            for id in touched {
                // Events carry ids the node already validated; anything else names no record.
                let Ok(id) = plexus_core::id::SandboxId::new(id) else {
                    continue;
                };
                match node.list(&Selector::Sandbox(id)) {
                    Ok(found) => {
                        for sandbox in &found {
                            cluster.publish_status(&node, sandbox);
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "reading a sandbox to publish network-status")
                    }
                }
            }
        }
    })
}

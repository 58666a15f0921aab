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
use plexus_kube::{
    ApiHealth, KubeSettings, NadCache, PodKey, PodMeta, PodWatch, Publisher, Recorder, RetryPolicy,
    event,
};
use tokio::sync::broadcast::error::RecvError;

use crate::attacher::Attacher;
use crate::error::{ApiFailure, Error, Result};
use crate::model::{Event, EventKind, SandboxView, Selector};
use crate::node::Node;
use crate::planner::Planner;

/// Most NADs one resolution fetches directly (a pod names a handful of networks).
const MAX_FETCHES: usize = 16;
/// Longest the direct GETs of one resolution may take together (the NRI path answers within
/// 1.5 s); past it the pod is refused as retryable.
const FETCH_BUDGET: std::time::Duration = std::time::Duration::from_secs(1);

/// Longest `plexusctl explain --pod` waits for the pod's GET.
const READ_POD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

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
    /// Whether the API server answers (every request of `client` reports here).
    pub health: ApiHealth,
    /// The client every part above uses (for the occasional direct read, and the
    /// networks-annotation patches of `plexusctl attach/detach --pod`).
    client: plexus_kube::Client,
    node_name: String,
    /// The kubelet's pod-resources API, for device-plugin networks (`None`: not asked).
    pod_resources: Option<crate::pod_resources::PodResources>,
    /// Wakes the writers' queues when the API server answers again after a failure.
    wake: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.node_name)
            .field("nads", &self.nads)
            .field("pods", &self.pods)
            .field("publisher", &self.publisher)
            .field("recorder", &self.recorder)
            .finish_non_exhaustive()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.wake.abort();
    }
}

/// What `plexusctl status` shows of the API side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    /// This node's name.
    pub node_name: String,
    /// The last request to the API server got an answer.
    pub api_connected: bool,
    /// The NAD cache completed its first list.
    pub nads_synced: bool,
    /// NADs cached.
    pub nads: usize,
    /// The pod watch completed its first list.
    pub pods_synced: bool,
    /// Pods of this node known to the watch.
    pub pods: usize,
    /// Pods whose network-status is not written yet.
    pub publish_backlog: usize,
    /// Pod events not written yet.
    pub event_backlog: usize,
    /// How long the oldest waiting patch or event has waited.
    pub oldest_pending: Option<std::time::Duration>,
    /// Patches and events delivered since start.
    pub delivered: u64,
    /// Patches and events given up on since start.
    pub dropped: u64,
    /// The last API failure seen by a watch, a writer or any request.
    pub last_error: Option<String>,
}

impl Cluster {
    /// Connects (kubeconfig or in-cluster service account) and starts the watches and queues.
    /// Nothing waits for the API server: until the NAD list syncs, pods needing a NAD are
    /// refused as retryable.
    pub async fn connect(
        kubeconfig: Option<PathBuf>,
        namespaces: Vec<String>,
        pod_resources_socket: PathBuf,
    ) -> Result<Arc<Self>> {
        let kube = |e: plexus_kube::Error| Error::Kubernetes {
            message: e.to_string(),
        };
        let settings = KubeSettings::new(kubeconfig, namespaces).map_err(kube)?;
        let client = plexus_kube::connect(&settings).await.map_err(kube)?;
        tracing::info!(node = %settings.node_name, namespaces = ?settings.namespaces,
            "Kubernetes mode: watching network-attachment-definitions and this node's pods");
        let pod_resources = crate::pod_resources::PodResources::new(
            pod_resources_socket,
            crate::pod_resources::DEFAULT_TIMEOUT,
        );
        Ok(Arc::new(
            Self::start(client, &settings).with_pod_resources(pod_resources),
        ))
    }

    /// Starts everything on an existing client.
    pub fn start(client: plexus_kube::Client, settings: &KubeSettings) -> Self {
        Self::start_with(client, settings, RetryPolicy::default())
    }

    /// [`Cluster::start`] with the writers' backoff policy. Whatever the backoff reached
    /// during an outage, queued writes go out as soon as the API server answers again.
    pub fn start_with(
        client: plexus_kube::Client,
        settings: &KubeSettings,
        policy: RetryPolicy,
    ) -> Self {
        let (client, health) = plexus_kube::track(client);
        let publisher = Publisher::start_with(
            client.clone(),
            plexus_kube::status::DEFAULT_CAPACITY,
            policy,
        );
        let recorder = Recorder::start_with(
            client.clone(),
            &settings.node_name,
            plexus_kube::event::DEFAULT_CAPACITY,
            policy,
        );
        let wake = tokio::spawn(wake_on_reconnect(
            health.reconnected(),
            publisher.clone(),
            recorder.clone(),
        ));
        Cluster {
            nads: NadCache::start(client.clone(), &settings.namespaces),
            pods: PodWatch::start(client.clone(), &settings.node_name),
            publisher,
            recorder,
            health,
            client,
            node_name: settings.node_name.clone(),
            pod_resources: None,
            wake,
        }
    }

    /// Reads device-plugin allocations (SR-IOV) from the kubelet's pod-resources API.
    pub fn with_pod_resources(mut self, client: crate::pod_resources::PodResources) -> Self {
        self.pod_resources = Some(client);
        self
    }

    /// The kubelet's pod-resources API, when configured.
    pub fn pod_resources(&self) -> Option<&crate::pod_resources::PodResources> {
        self.pod_resources.as_ref()
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// The API side's state.
    pub fn status(&self) -> ClusterStatus {
        let status = self.publisher.stats();
        let events = self.recorder.stats();
        let health = self.health.snapshot();
        ClusterStatus {
            node_name: self.node_name.clone(),
            api_connected: health.connected,
            nads_synced: self.nads.synced(),
            nads: self.nads.len(),
            pods_synced: self.pods.synced(),
            pods: self.pods.len(),
            publish_backlog: status.backlog,
            event_backlog: events.backlog,
            oldest_pending: status.oldest_pending.max(events.oldest_pending),
            delivered: status.delivered + events.delivered,
            dropped: status.dropped + events.dropped,
            last_error: self
                .nads
                .last_error()
                .or_else(|| self.pods.last_error())
                .or(status.last_error)
                .or(events.last_error)
                .or(health.last_error),
        }
    }

    /// Reads the pod `namespace/name` from the API server (one GET, metadata only) for
    /// `explain --pod`; a pod that does not exist is [`ApiFailure::NotFound`] naming it.
    pub async fn read_pod(&self, namespace: &str, name: &str) -> Result<PodMeta> {
        match plexus_kube::read_pod(&self.client, namespace, name, READ_POD_TIMEOUT).await {
            Ok(Some(pod)) => Ok(pod),
            Ok(None) => Err(Error::ApiRead {
                kind: ApiFailure::NotFound,
                message: format!("pod {namespace}/{name} not found in the API server"),
            }),
            Err(err) => {
                let kind = match &err {
                    plexus_kube::Error::Forbidden { .. } => ApiFailure::Forbidden,
                    plexus_kube::Error::Transport { .. } | plexus_kube::Error::Timeout { .. } => {
                        ApiFailure::Unavailable
                    }
                    _ => ApiFailure::Other,
                };
                Err(Error::ApiRead {
                    kind,
                    message: err.to_string(),
                })
            }
        }
    }

    /// Fetches the NADs `attempt` finds missing from the cache (one GET each), without
    /// reporting anything to the pod: what a dry run (`explain --pod`) needs before it
    /// resolves against the cache.
    pub async fn prefetch<T>(
        &self,
        pod: &PodIdentity,
        attempt: impl FnMut(&dyn NadSource) -> plexus_core::Result<T>,
    ) {
        let _ = self.resolve_inner(pod, attempt, false).await;
    }

    /// Runs `attempt` against the NAD cache; when it fails for a NAD the cache does not hold
    /// (or cannot answer for yet), fetches that NAD once and tries again. A NAD still missing
    /// then is reported to the pod (`NoNetworkFound`); an API server that does not answer
    /// makes the error retryable.
    pub async fn resolve<T>(
        &self,
        pod: &PodIdentity,
        attempt: impl FnMut(&dyn NadSource) -> plexus_core::Result<T>,
    ) -> plexus_core::Result<T> {
        self.resolve_inner(pod, attempt, true).await
    }

    async fn resolve_inner<T>(
        &self,
        pod: &PodIdentity,
        mut attempt: impl FnMut(&dyn NadSource) -> plexus_core::Result<T>,
        report: bool,
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
                if report {
                    self.report_not_found(pod, &err);
                }
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

/// Lifts the writers' backoff each time the API server answers again after failing.
async fn wake_on_reconnect(
    mut reconnected: tokio::sync::watch::Receiver<u64>,
    publisher: Publisher,
    recorder: Recorder,
) {
    while reconnected.changed().await.is_ok() {
        publisher.resume();
        recorder.resume();
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

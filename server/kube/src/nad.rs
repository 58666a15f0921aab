//! NADs from the API server: a reflector (kube-rs `watcher` + `reflector::Store`) over
//! `network-attachment-definitions.k8s.cni.cncf.io/v1`, cluster-wide or one per listed
//! namespace, behind plexus-core's [`NadSource`].
//!
//! [`NadSource::get`] is synchronous and called on the pod-setup path, so it only reads the
//! cache: never a request. Until the first list of a scope has completed it answers with the
//! retryable [`plexus_core::Error::NadStoreNotReady`] — only for pods that look a NAD up;
//! pods needing none never reach the store. The one direct GET for a NAD missing from the
//! cache (created a moment ago) is the async [`NadCache::fetch`]: the daemon's resolver calls
//! it for the name an error reports ([`missing_nad`]) and resolves again; the answer (found or
//! absent) is kept in a small overlay that the watch's next event for that key, the next
//! relist or a short lifetime clears. This keeps the sync trait free of blocking bridges and
//! lets the request run under the caller's deadline. Converting the object to a
//! [`plexus_core::nad::Nad`] is pure (`to_nad`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use plexus_core::nad::{Nad, NadSource};

use crate::error::{Error, Result};
use crate::task::Tasks;

#[cfg(test)]
mod tests;

/// API group of NetworkAttachmentDefinitions.
pub const GROUP: &str = "k8s.cni.cncf.io";
/// API version served.
pub const VERSION: &str = "v1";
/// Kind.
pub const KIND: &str = "NetworkAttachmentDefinition";
/// Resource (plural) name.
pub const PLURAL: &str = "network-attachment-definitions";
/// The resource as RBAC names it.
pub const RBAC_RESOURCE: &str = "network-attachment-definitions.k8s.cni.cncf.io";

/// How long a direct GET's answer stands in for the watch.
const FETCHED_TTL: Duration = Duration::from_secs(30);
/// Default limit of the direct GET (the pod-setup path has a 1.5 s budget).
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(1);

/// The NAD resource for kube-rs's dynamic API.
pub fn api_resource() -> ApiResource {
    ApiResource {
        group: GROUP.to_string(),
        version: VERSION.to_string(),
        api_version: format!("{GROUP}/{VERSION}"),
        kind: KIND.to_string(),
        plural: PLURAL.to_string(),
    }
}

/// The NADs of the cluster (or of the listed namespaces), kept current by watches. Cheap to
/// clone; the watches stop when the last clone is dropped.
#[derive(Clone)]
pub struct NadCache {
    shared: Arc<Shared>,
    _tasks: Arc<Tasks>,
}

impl std::fmt::Debug for NadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NadCache")
            .field("synced", &self.synced())
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

struct Shared {
    client: kube::Client,
    resource: ApiResource,
    /// Empty when watching all namespaces (then `scopes` has one entry with `None`).
    namespaces: Vec<String>,
    scopes: Vec<Scope>,
    fetched: Mutex<HashMap<(String, String), Fetched>>,
    fetch_timeout: Duration,
    last_error: Mutex<Option<String>>,
    /// Bumped when a NAD is created, changed or deleted, and when a (re)list completes.
    changes: tokio::sync::watch::Sender<u64>,
}

struct Scope {
    namespace: Option<String>,
    store: Store<DynamicObject>,
    synced: AtomicBool,
}

/// A direct GET's answer: the NAD, or `None` when the API said it does not exist.
struct Fetched {
    nad: Option<Nad>,
    at: Instant,
}

impl NadCache {
    /// Starts the watches: one cluster-wide when `namespaces` is empty, else one per
    /// namespace. Must be called inside a tokio runtime.
    pub fn start(client: kube::Client, namespaces: &[String]) -> Self {
        Self::start_with(client, namespaces, DEFAULT_FETCH_TIMEOUT)
    }

    /// [`NadCache::start`] with a limit for the direct GET.
    pub fn start_with(
        client: kube::Client,
        namespaces: &[String],
        fetch_timeout: Duration,
    ) -> Self {
        let resource = api_resource();
        let mut writers = Vec::new();
        let mut scopes = Vec::new();
        let targets: Vec<Option<String>> = if namespaces.is_empty() {
            vec![None]
        } else {
            namespaces.iter().cloned().map(Some).collect()
        };
        for namespace in targets {
            let writer = reflector::store::Writer::new(resource.clone());
            scopes.push(Scope {
                namespace: namespace.clone(),
                store: writer.as_reader(),
                synced: AtomicBool::new(false),
            });
            writers.push(writer);
        }
        let shared = Arc::new(Shared {
            client,
            resource,
            namespaces: namespaces.to_vec(),
            scopes,
            fetched: Mutex::new(HashMap::new()),
            fetch_timeout,
            last_error: Mutex::new(None),
            changes: tokio::sync::watch::channel(0).0,
        });
        let mut tasks = Tasks::default();
        for (index, writer) in writers.into_iter().enumerate() {
            tasks.spawn(run_scope(Arc::clone(&shared), index, writer));
        }
        NadCache {
            shared,
            _tasks: Arc::new(tasks),
        }
    }

    /// True once every watched scope has completed its first list.
    pub fn synced(&self) -> bool {
        self.shared
            .scopes
            .iter()
            .all(|s| s.synced.load(Ordering::Acquire))
    }

    /// A receiver marked changed whenever a watched NAD is created, changed or deleted and
    /// whenever a (re)list completes: a network that was missing may resolve now.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    /// Waits until [`NadCache::synced`].
    pub async fn wait_synced(&self) {
        for scope in &self.shared.scopes {
            // The writer lives as long as the task; an aborted task never makes it ready.
            let _ = scope.store.wait_until_ready().await;
        }
    }

    /// NADs held in the cache.
    pub fn len(&self) -> usize {
        self.shared.scopes.iter().map(|s| s.store.len()).sum()
    }

    /// True when the cache holds no NAD.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The last list/watch failure, if the watch has not recovered since.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.shared.last_error).clone()
    }

    /// The one direct GET for a NAD the cache does not hold (yet). Its answer, found or not,
    /// is what [`NadSource::get`] returns for that name until the watch catches up. A NAD in
    /// a namespace that is not watched is not fetched (`Ok(None)`).
    pub async fn fetch(&self, namespace: &str, name: &str) -> Result<Option<Nad>> {
        if !self.shared.watches(namespace) {
            return Ok(None);
        }
        let operation = format!("GET network-attachment-definition {namespace}/{name}");
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.shared.client.clone(), namespace, &self.shared.resource);
        let answer = tokio::time::timeout(self.shared.fetch_timeout, api.get_opt(name))
            .await
            .map_err(|_| Error::Timeout {
                operation: operation.clone(),
                timeout: self.shared.fetch_timeout,
            })?
            .map_err(|e| Error::from_kube(e, operation, "get", RBAC_RESOURCE, Some(namespace)))?;
        let nad = match answer {
            Some(obj) => Some(to_nad(&obj).map_err(|reason| Error::Api {
                operation: format!("GET network-attachment-definition {namespace}/{name}"),
                code: 200,
                message: reason,
            })?),
            None => None,
        };
        lock(&self.shared.fetched).insert(
            (namespace.to_string(), name.to_string()),
            Fetched {
                nad: nad.clone(),
                at: Instant::now(),
            },
        );
        Ok(nad)
    }
}

impl Shared {
    fn watches(&self, namespace: &str) -> bool {
        self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace)
    }

    fn scope(&self, namespace: &str) -> Option<&Scope> {
        self.scopes
            .iter()
            .find(|s| s.namespace.as_deref().is_none_or(|n| n == namespace))
    }

    fn bump(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Forgets the direct-GET answer for `key`: the store now knows better.
    fn forget(&self, obj: &DynamicObject) {
        if let (Some(ns), Some(name)) = (&obj.metadata.namespace, &obj.metadata.name) {
            lock(&self.fetched).remove(&(ns.clone(), name.clone()));
        }
    }
}

impl NadSource for NadCache {
    fn get(&self, namespace: &str, name: &str) -> plexus_core::Result<Option<Nad>> {
        let shared = &self.shared;
        let Some(scope) = shared.scope(namespace) else {
            return Err(plexus_core::Error::NadStore {
                reason: format!(
                    "namespace {namespace} is not watched for network-attachment-definitions (nadSource.kubernetes.namespaces: {}); add it there or reference a NAD in a watched namespace",
                    shared.namespaces.join(", ")
                ),
            });
        };
        let key = ObjectRef::new_with(name, shared.resource.clone()).within(namespace);
        if let Some(obj) = scope.store.get(&key) {
            return to_nad(&obj).map(Some).map_err(|reason| {
                plexus_core::Error::InvalidNetworkConfig {
                    network: format!("{namespace}/{name}"),
                    reason,
                }
            });
        }
        {
            let mut fetched = lock(&shared.fetched);
            let k = (namespace.to_string(), name.to_string());
            match fetched.get(&k) {
                Some(f) if f.at.elapsed() < FETCHED_TTL => return Ok(f.nad.clone()),
                Some(_) => {
                    fetched.remove(&k);
                }
                None => {}
            }
        }
        if !scope.synced.load(Ordering::Acquire) {
            return Err(plexus_core::Error::NadStoreNotReady {
                namespace: namespace.to_string(),
                name: name.to_string(),
                reason: format!(
                    "waiting for the first list of network-attachment-definitions{} from the API server; the pod is retried",
                    crate::error::scope(scope.namespace.as_deref())
                ),
            });
        }
        Ok(None)
    }
}

/// The NAD a resolution error says is missing or not yet known — what
/// [`NadCache::fetch`] should look up before resolving again.
pub fn missing_nad(err: &plexus_core::Error) -> Option<(String, String)> {
    use plexus_core::Error as E;
    match err {
        E::NetworkNotFound {
            namespace, name, ..
        }
        | E::NadStoreNotReady {
            namespace, name, ..
        } => Some((namespace.clone(), name.clone())),
        E::ConfiguredNetworkNotFound {
            namespace, value, ..
        } => Some((namespace.clone(), value.clone())),
        _ => None,
    }
}

/// A NAD object reduced to what resolution reads. `spec.config` must be a string when
/// present (the CRD's schema); without it the NAD is spec-less (F20).
pub fn to_nad(obj: &DynamicObject) -> std::result::Result<Nad, String> {
    let config = match obj.data.get("spec").and_then(|s| s.get("config")) {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(format!(
                "spec.config is a JSON {}; accepted: a string holding the CNI config",
                json_type(other)
            ));
        }
    };
    Ok(Nad {
        namespace: obj.metadata.namespace.clone().unwrap_or_default(),
        name: obj.metadata.name.clone().unwrap_or_default(),
        annotations: obj
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        config,
    })
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// Runs one scope's watch until the cache is dropped: feeds the store, marks it synced,
/// clears direct-GET answers the watch supersedes and reports failures.
async fn run_scope(
    shared: Arc<Shared>,
    index: usize,
    writer: reflector::store::Writer<DynamicObject>,
) {
    let scope = &shared.scopes[index];
    let api: Api<DynamicObject> = match &scope.namespace {
        Some(ns) => Api::namespaced_with(shared.client.clone(), ns, &shared.resource),
        None => Api::all_with(shared.client.clone(), &shared.resource),
    };
    // managedFields can outweigh the NAD itself; the cache keeps what resolution reads.
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(|obj: &mut DynamicObject| obj.metadata.managed_fields = None),
    );
    futures::pin_mut!(stream);
    while let Some(item) = stream.next().await {
        match item {
            Ok(watcher::Event::Apply(obj) | watcher::Event::Delete(obj)) => {
                shared.forget(&obj);
                shared.bump();
            }
            Ok(watcher::Event::InitDone) => {
                lock(&shared.fetched).clear();
                shared.bump();
                if !scope.synced.swap(true, Ordering::AcqRel) {
                    tracing::info!(scope = %crate::error::scope(scope.namespace.as_deref()),
                        nads = scope.store.len(), "network-attachment-definitions synced");
                }
                lock(&shared.last_error).take();
            }
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
            Err(err) => {
                let message = watch_error(&err, scope.namespace.as_deref()).to_string();
                tracing::warn!(error = %message, "watching network-attachment-definitions");
                *lock(&shared.last_error) = Some(message);
            }
        }
    }
}

/// A watcher failure as this crate's error (a 403 names the verb, a 404 the missing CRD).
pub(crate) fn watch_error(err: &watcher::Error, namespace: Option<&str>) -> Error {
    let (verb, source) = match err {
        watcher::Error::InitialListFailed(e) => ("list", e),
        watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) => ("watch", e),
        watcher::Error::WatchError(status) => {
            return Error::Api {
                operation: format!(
                    "watch network-attachment-definitions{}",
                    crate::error::scope(namespace)
                ),
                code: status.code,
                message: status.message.clone(),
            };
        }
        other => {
            return Error::Transport {
                operation: format!(
                    "watch network-attachment-definitions{}",
                    crate::error::scope(namespace)
                ),
                cause: other.to_string(),
            };
        }
    };
    match source {
        kube::Error::Api(status) if status.code == 404 && verb == "list" => Error::Api {
            operation: format!(
                "list network-attachment-definitions{}",
                crate::error::scope(namespace)
            ),
            code: 404,
            message: format!(
                "{} (is the NetworkAttachmentDefinition CRD installed? deploy/crd)",
                status.message
            ),
        },
        _ => Error::from_kube(
            clone_kube_error(source),
            format!(
                "{verb} network-attachment-definitions{}",
                crate::error::scope(namespace)
            ),
            verb,
            RBAC_RESOURCE,
            namespace,
        ),
    }
}

/// kube::Error is not Clone; keep what classification needs.
fn clone_kube_error(err: &kube::Error) -> kube::Error {
    match err {
        kube::Error::Api(status) => kube::Error::Api(status.clone()),
        other => kube::Error::Service(other.to_string().into()),
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

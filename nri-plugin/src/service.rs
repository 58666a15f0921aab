//! The NRI Plugin ttrpc service (`nri.pkg.api.v1alpha1.Plugin`) for one runtime
//! session: Configure, Synchronize (split-aware), StateChange, CreateContainer, the direct
//! pod methods of NRI >= 0.12 and Shutdown. Decodes the wire messages and hands pods to the
//! [`Forwarder`]; every other method is UNIMPLEMENTED, as the runtime expects.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plexus_proto::nri::{
    ConfigureRequest, ConfigureResponse, CreateContainerRequest, CreateContainerResponse, Empty,
    Event, PodSandbox, RemovePodSandboxRequest, RunPodSandboxRequest, StateChangeEvent,
    StopPodSandboxRequest, SynchronizeRequest, SynchronizeResponse,
};
use prost::Message;

use crate::config::effective_deadline;
use crate::event::Forwarder;
use crate::ttrpc::server::{Call, Service};
use crate::ttrpc::{Status, code};

/// Service name of the plugin side (conn 1).
pub const PLUGIN_SERVICE: &str = "nri.pkg.api.v1alpha1.Plugin";
/// Service name of the runtime side (conn 2).
pub const RUNTIME_SERVICE: &str = "nri.pkg.api.v1alpha1.Runtime";
/// Subscribed events: RUN | STOP_POD_SANDBOX | CREATE_CONTAINER (bit `1 << (event - 1)`).
/// Not RemovePodSandbox: containerd sends it after a Stop plexus has handled, and each NRI
/// call costs the pod's removal about half a millisecond even when answered at once. A Stop
/// whose teardown failed, or one plexus-nri missed, is finished by plexusd's sweep once the
/// pod's netns is gone (`reconcile.interval`), and a removed sandbox by the next Reconcile.
/// CreateContainer holds back the containers of a pod whose setup is still finishing
/// ([`crate::pending`]); any other passes at once, without a call to plexusd.
pub const EVENT_MASK: i32 = 0x3 | 0x8;

/// The Plugin service of one session. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PluginService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    forwarder: Arc<Forwarder>,
    deadline: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// `request_timeout` from Configure (NRI >= 0.7).
    request_timeout: Option<Duration>,
    /// Pods of a split Synchronize collected so far.
    sync_pods: Vec<PodSandbox>,
}

impl PluginService {
    /// A fresh session state over the shared `forwarder`; `deadline` bounds pod events.
    pub fn new(forwarder: Arc<Forwarder>, deadline: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                forwarder,
                deadline,
                state: Mutex::default(),
            }),
        }
    }
}

impl Service for PluginService {
    fn name(&self) -> &str {
        PLUGIN_SERVICE
    }

    fn call(&self, call: Call) -> impl Future<Output = Result<Vec<u8>, Status>> + Send + 'static {
        let inner = self.inner.clone();
        async move {
            let Call {
                method,
                payload,
                timeout,
            } = call;
            match method.as_str() {
                "Configure" => inner.configure(decode(&payload)?),
                "Synchronize" => inner.synchronize(decode(&payload)?).await,
                "StateChange" => {
                    let event: StateChangeEvent = decode(&payload)?;
                    match Event::try_from(event.event) {
                        Ok(Event::RunPodSandbox) => inner.run(event.pod, timeout).await,
                        Ok(Event::StopPodSandbox) => {
                            inner.teardown(event.pod, "stop", timeout).await
                        }
                        Ok(Event::RemovePodSandbox) => {
                            inner.teardown(event.pod, "remove", timeout).await
                        }
                        _ => {
                            tracing::debug!(event = event.event, "ignoring unsubscribed event");
                            Ok(Empty {}.encode_to_vec())
                        }
                    }
                }
                "RunPodSandbox" => {
                    let req: RunPodSandboxRequest = decode(&payload)?;
                    inner.run(req.pod, timeout).await
                }
                "CreateContainer" => {
                    let req: CreateContainerRequest = decode(&payload)?;
                    inner.create_container(req, timeout).await
                }
                "StopPodSandbox" => {
                    let req: StopPodSandboxRequest = decode(&payload)?;
                    inner.teardown(req.pod, "stop", timeout).await
                }
                "RemovePodSandbox" => {
                    let req: RemovePodSandboxRequest = decode(&payload)?;
                    inner.teardown(req.pod, "remove", timeout).await
                }
                "Shutdown" => {
                    tracing::info!("runtime asked the plugin to shut down");
                    Ok(Empty {}.encode_to_vec())
                }
                other => Err(Status::unknown_method(other)),
            }
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // State holds plain values; a panicked holder cannot leave it half-updated.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn configure(&self, req: ConfigureRequest) -> Result<Vec<u8>, Status> {
        let request_timeout = u64::try_from(req.request_timeout)
            .ok()
            .filter(|&ms| ms > 0)
            .map(Duration::from_millis);
        self.lock().request_timeout = request_timeout;
        tracing::info!(runtime = %req.runtime_name, version = %req.runtime_version,
            ?request_timeout, events = EVENT_MASK, "configured by the runtime");
        Ok(ConfigureResponse { events: EVENT_MASK }.encode_to_vec())
    }

    async fn synchronize(&self, req: SynchronizeRequest) -> Result<Vec<u8>, Status> {
        let live = {
            let mut state = self.lock();
            state.sync_pods.extend(req.pods);
            if req.more {
                return Ok(SynchronizeResponse {
                    update: Vec::new(),
                    more: true,
                }
                .encode_to_vec());
            }
            std::mem::take(&mut state.sync_pods)
        };
        tracing::info!(
            pods = live.len(),
            "synchronized; reconciling in the background"
        );
        // Queue on the gate before replying, so the requests of events after this
        // Synchronize follow the Reconcile's request; the Reconcile runs after the reply
        // and holds later events back only while its request is being sent.
        let ticket = self.forwarder.queue_reconcile().await;
        let forwarder = self.forwarder.clone();
        tokio::spawn(async move { forwarder.reconcile(live, ticket).await });
        Ok(SynchronizeResponse::default().encode_to_vec())
    }

    fn deadline(&self, call_timeout: Option<Duration>) -> Duration {
        let request_timeout = self.lock().request_timeout;
        effective_deadline(self.deadline, request_timeout, call_timeout)
    }

    /// A Run without a pod cannot be set up, so it fails rather than passing unnoticed.
    async fn run(
        &self,
        pod: Option<PodSandbox>,
        call_timeout: Option<Duration>,
    ) -> Result<Vec<u8>, Status> {
        let Some(pod) = pod else {
            tracing::warn!("RunPodSandbox event without a pod; failing it");
            return Err(Status::new(
                code::INVALID_ARGUMENT,
                "RunPodSandbox event carries no pod",
            ));
        };
        let deadline = self.deadline(call_timeout);
        self.forwarder.run_pod_sandbox(pod, deadline).await?;
        Ok(Empty {}.encode_to_vec())
    }

    /// A container is created once its pod's networks are up (plexus never adjusts a
    /// container). Its sandbox is the pod's id, or else the container's `pod_sandbox_id`.
    async fn create_container(
        &self,
        req: CreateContainerRequest,
        call_timeout: Option<Duration>,
    ) -> Result<Vec<u8>, Status> {
        let sandbox = match (&req.pod, &req.container) {
            (Some(pod), _) if !pod.id.is_empty() => pod.id.as_str(),
            (_, Some(container)) => container.pod_sandbox_id.as_str(),
            _ => "",
        };
        let deadline = self.deadline(call_timeout);
        self.forwarder.create_container(sandbox, deadline).await?;
        Ok(CreateContainerResponse {}.encode_to_vec())
    }

    /// A Stop/Remove without a pod has nothing to tear down: answered OK and logged.
    async fn teardown(
        &self,
        pod: Option<PodSandbox>,
        event: &'static str,
        call_timeout: Option<Duration>,
    ) -> Result<Vec<u8>, Status> {
        let Some(pod) = pod else {
            tracing::warn!(
                event,
                "pod sandbox event without a pod; nothing to tear down"
            );
            return Ok(Empty {}.encode_to_vec());
        };
        let deadline = self.deadline(call_timeout);
        self.forwarder
            .teardown_pod_sandbox(pod, event, deadline)
            .await;
        Ok(Empty {}.encode_to_vec())
    }
}

fn decode<M: Message + Default>(payload: &[u8]) -> Result<M, Status> {
    M::decode(payload).map_err(|err| {
        Status::new(
            code::INVALID_ARGUMENT,
            format!("decode {}: {err}", std::any::type_name::<M>()),
        )
    })
}

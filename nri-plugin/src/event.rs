//! Pod events → node API calls. RunPodSandbox becomes `SetupPod` under a deadline and
//! its failure becomes an error status that fails the pod. A setup plexusd lets go on
//! after its answer ([`crate::pending`]) holds the pod's containers back: CreateContainer
//! of such a pod becomes `SetupPod` again, and its failure fails only that container
//! creation (the kubelet retries it); every other CreateContainer passes at once, without
//! a call to plexusd. StopPodSandbox (and a
//! RemovePodSandbox, should a runtime send one unsubscribed) becomes `TeardownPod` and
//! never fails; Synchronize becomes an asynchronous `Reconcile`.
//!
//! Ordering: the plugin only guarantees that a Reconcile's request reaches plexusd
//! before the requests of events that arrive after its Synchronize; plexusd itself
//! spares sandboxes whose setup is in flight or started after the Reconcile arrived. A
//! Reconcile holds the write side of a gate that every pod event takes for reading, and
//! each side holds it only while its request is being sent: until the call is answered
//! or [`SEND_HOLD`] has passed, whichever comes first. The call then goes on in the
//! background, so a Reconcile tearing down stale sandboxes for many seconds does not
//! hold back later pod starts, and a slow event in flight does not hold back a
//! Reconcile. tokio's `RwLock` is fair (a FIFO queue), and Synchronize takes its place
//! in that queue before replying without waiting for it, so Synchronize stays fast.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use plexus_proto::nri::PodSandbox;
use plexus_proto::v1::node_client::NodeClient;
use tokio::sync::{OwnedRwLockWriteGuard, RwLock};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tracing::Instrument as _;
use tracing::Span;

use crate::convert;
use crate::pending::{AtOnce, Pending};
use crate::trace::{TRACEPARENT_KEY, event_span, traceparent_for};
use crate::ttrpc::{Status, code};

/// How long a call keeps the ordering gate after it started: long enough for its
/// request to reach plexusd over the local socket, short enough not to delay pod starts.
pub const SEND_HOLD: Duration = Duration::from_millis(100);

type Acquire = Pin<Box<dyn Future<Output = OwnedRwLockWriteGuard<()>> + Send>>;

/// A Reconcile's place in the gate's queue: exclusive access to plexusd, either held
/// already or queued ahead of every later event.
pub struct ReconcileTicket(Ticket);

enum Ticket {
    Held(OwnedRwLockWriteGuard<()>),
    Queued(Acquire),
}

impl std::fmt::Debug for ReconcileTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.0 {
            Ticket::Held(_) => "held",
            Ticket::Queued(_) => "queued",
        };
        f.debug_tuple("ReconcileTicket").field(&state).finish()
    }
}

/// Forwards pod events to plexusd. Shared by every runtime session.
#[derive(Debug)]
pub struct Forwarder {
    client: NodeClient<Channel>,
    plexusd_socket: PathBuf,
    gate: Arc<RwLock<()>>,
    background_timeout: Duration,
    pending: Pending,
    at_once: AtOnce,
}

/// The runtime's call a `SetupPod` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asker {
    /// RunPodSandbox: a setup still going on when the answer is due is answered OK and
    /// its pod's containers are held back.
    Run,
    /// CreateContainer of a pod whose setup went on after its RunPodSandbox: created only
    /// once a setup has ended well.
    Create,
}

impl Asker {
    fn name(self) -> &'static str {
        match self {
            Asker::Run => "RunPodSandbox",
            Asker::Create => "CreateContainer",
        }
    }

    /// What follows a failure, and what to change when it keeps happening.
    fn out_of_time(self) -> &'static str {
        match self {
            Asker::Run => OUT_OF_TIME,
            Asker::Create => HELD_BACK,
        }
    }
}

impl Forwarder {
    /// A forwarder over `channel`; `plexusd_socket` only names the peer in messages.
    pub fn new(channel: Channel, plexusd_socket: PathBuf, background_timeout: Duration) -> Self {
        Self {
            client: NodeClient::new(channel),
            plexusd_socket,
            gate: Arc::new(RwLock::new(())),
            background_timeout,
            pending: Pending::default(),
            at_once: AtOnce::default(),
        }
    }

    /// RunPodSandbox: `SetupPod` within `deadline`, which plexusd may answer while the
    /// setup goes on (the pod is then remembered in [`crate::pending`]). An error status
    /// names the pod and carries plexusd's message (which names the network and the cause).
    pub async fn run_pod_sandbox(&self, pod: PodSandbox, deadline: Duration) -> Result<(), Status> {
        if convert::needs_nothing(&pod) {
            tracing::debug!(pod = %convert::pod_label(&pod), sandbox = %pod.id,
                "host-network pod without network annotations: nothing to do");
            return Ok(());
        }
        self.setup(pod, deadline, Asker::Run).await
    }

    /// CreateContainer of a container in sandbox `sandbox_id`: passes at once unless the
    /// pod's setup went on after its RunPodSandbox; then `SetupPod` for the pod as that
    /// RunPodSandbox carried it, within `deadline` (plexusd waits for the setup and answers
    /// from its record, or sets the pod up again if it failed), and the container is
    /// created only once the networks are up.
    pub async fn create_container(
        &self,
        sandbox_id: &str,
        deadline: Duration,
    ) -> Result<(), Status> {
        match self.pending.get(sandbox_id) {
            Some(pod) => self.setup(pod, deadline, Asker::Create).await,
            None => Ok(()),
        }
    }

    async fn setup(&self, pod: PodSandbox, deadline: Duration, asker: Asker) -> Result<(), Status> {
        let label = convert::pod_label(&pod);
        let span = event_span(asker.name(), &pod.namespace, &pod.name, &pod.uid, &pod.id);
        let traceparent = traceparent_for(&span);
        async {
            let started = Instant::now();
            let call = async {
                let gate = self.gate.read().await;
                let mut setup = convert::setup_request(&pod);
                // Also at CreateContainer: a setup that failed after its answer is made
                // again with a setup's full bound, not cut at this call's deadline.
                setup.may_finish_later = true;
                let mut request = tonic::Request::new(setup);
                // plexusd gets 90% of what is left of the deadline, so it can undo and
                // explain in time; the local timer below is only the backstop.
                let left = deadline.saturating_sub(started.elapsed());
                request.set_timeout(left.mul_f64(0.9));
                insert_traceparent(&mut request, &traceparent);
                let mut client = self.client.clone();
                hold_while_sending(gate, client.setup_pod(request)).await
            };
            match tokio::time::timeout(deadline, call).await {
                Ok(Ok(response)) if response.get_ref().finishing => {
                    tracing::info!(
                        elapsed_ms = elapsed_ms(started),
                        "pod networks still being set up; its containers wait for them"
                    );
                    match asker {
                        Asker::Run => {
                            self.pending.insert(&pod.id, pod.clone());
                            Ok(())
                        }
                        Asker::Create => {
                            let status = Status::new(
                                code::UNAVAILABLE,
                                format!(
                                    "plexus: the networks of pod {label} are still being set \
                                     up; {HELD_BACK}"
                                ),
                            );
                            plexus_telemetry::record_error(&Span::current(), &status.message);
                            Err(status)
                        }
                    }
                }
                Ok(Ok(response)) => {
                    self.pending.remove(&pod.id);
                    match response.get_ref().stop_at_once {
                        true => self.at_once.insert(&pod.id, ()),
                        false => drop(self.at_once.remove(&pod.id)),
                    }
                    let attachments = response.get_ref().attachments.len();
                    tracing::info!(
                        attachments,
                        elapsed_ms = elapsed_ms(started),
                        "pod networks set up"
                    );
                    Ok(())
                }
                Ok(Err(status)) => {
                    let status = self.setup_failed(&label, deadline, &status, asker);
                    plexus_telemetry::record_error(&Span::current(), &status.message);
                    tracing::warn!(elapsed_ms = elapsed_ms(started), "pod network setup failed");
                    Err(status)
                }
                Err(_) => {
                    let status = Status::new(
                        code::DEADLINE_EXCEEDED,
                        format!(
                            "plexus: network setup for pod {label} did not finish within {} \
                             (plexusd at {}); {}",
                            shown(deadline),
                            self.plexusd_socket.display(),
                            asker.out_of_time()
                        ),
                    );
                    plexus_telemetry::record_error(&Span::current(), &status.message);
                    tracing::warn!("pod network setup timed out");
                    Err(status)
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Stop/RemovePodSandbox: `TeardownPod`, answered within `deadline`. Always
    /// succeeds towards the runtime (failing would not help: containerd only logs it).
    /// A teardown slower than `deadline` keeps running in the background (bounded by
    /// the background timeout) instead of being cut half-way; errors are logged and the
    /// sandbox is left to plexusd's sweep (its netns is gone once containerd has stopped
    /// it) or the next Reconcile. A pod whose setup plexusd answered with `stop_at_once`
    /// is answered without waiting at all: plexusd holds its netns until the teardown, and
    /// releases everything it made there through it. Only StopPodSandbox is subscribed
    /// ([`crate::service::EVENT_MASK`]); a Remove is handled the same way should a runtime
    /// send one.
    pub async fn teardown_pod_sandbox(
        &self,
        pod: PodSandbox,
        event: &'static str,
        deadline: Duration,
    ) {
        self.pending.remove(&pod.id);
        let at_once = self.at_once.remove(&pod.id).is_some();
        let span = event_span(event, &pod.namespace, &pod.name, &pod.uid, &pod.id);
        let traceparent = traceparent_for(&span);
        let mut request = tonic::Request::new(convert::teardown_request(&pod));
        request.set_timeout(self.background_timeout);
        insert_traceparent(&mut request, &traceparent);
        let (gate, mut client) = (self.gate.clone(), self.client.clone());
        let limit = self.background_timeout;
        let plexusd = self.plexusd_socket.clone();
        let task = tokio::spawn(
            async move {
                let started = Instant::now();
                let call = async {
                    let gate = gate.read_owned().await;
                    hold_while_sending(gate, client.teardown_pod(request)).await
                };
                match tokio::time::timeout(limit, call).await {
                    Ok(Ok(response)) => {
                        let r = response.get_ref();
                        tracing::info!(
                            known = r.known,
                            removed = r.removed.len(),
                            elapsed_ms = elapsed_ms(started),
                            runtime_answered_at_once = at_once,
                            "pod networks torn down"
                        );
                    }
                    Ok(Err(status)) => tracing::warn!(code = ?status.code(),
                        error = %status.message(), plexusd = %plexusd.display(),
                        "pod teardown failed; left to plexusd's sweep"),
                    Err(_) => {
                        tracing::warn!(?limit, "pod teardown timed out; left to plexusd's sweep")
                    }
                }
            }
            .instrument(span.clone()),
        );
        if at_once {
            // plexusd said so at setup: it holds the pod's netns until this teardown.
            return;
        }
        if tokio::time::timeout(deadline, task).await.is_err() {
            let _enter = span.enter();
            tracing::warn!(
                ?deadline,
                "pod teardown still running; answering the runtime now"
            );
        }
    }

    /// Queues a Reconcile on the gate without waiting: one poll of the write
    /// acquisition either takes the lock or enqueues it ahead of every later event.
    pub async fn queue_reconcile(&self) -> ReconcileTicket {
        let mut acquire: Acquire = Box::pin(self.gate.clone().write_owned());
        let first = std::future::poll_fn(|cx| Poll::Ready(acquire.as_mut().poll(cx))).await;
        ReconcileTicket(match first {
            Poll::Ready(guard) => Ticket::Held(guard),
            Poll::Pending => Ticket::Queued(acquire),
        })
    }

    /// `Reconcile` with the live pods (their ids, and what a SetupPod carries for those with a
    /// netns, so plexusd can adopt pods it never saw), once `ticket`'s turn has come; holds the
    /// gate until plexusd answered or [`SEND_HOLD`] passed, then waits for the answer
    /// (bounded by the background timeout) without it and logs the result.
    pub async fn reconcile(&self, live: Vec<PodSandbox>, ticket: ReconcileTicket) {
        let guard = match ticket.0 {
            Ticket::Held(guard) => guard,
            Ticket::Queued(acquire) => acquire.await,
        };
        let span = tracing::info_span!(
            "reconcile",
            otel.name = "nri Synchronize",
            live = live.len(),
            trace_id = tracing::field::Empty
        );
        let traceparent = traceparent_for(&span);
        async {
            let mut request = tonic::Request::new(convert::reconcile_request(&live));
            request.set_timeout(self.background_timeout);
            insert_traceparent(&mut request, &traceparent);
            let mut client = self.client.clone();
            let call = tokio::time::timeout(self.background_timeout, client.reconcile(request));
            match hold_while_sending(guard, call).await {
                Ok(Ok(response)) => {
                    let r = response.get_ref();
                    tracing::info!(torn_down = ?r.torn_down, failed = ?r.failed, "reconciled");
                }
                Ok(Err(status)) => tracing::warn!(code = ?status.code(),
                    error = %status.message(), plexusd = %self.plexusd_socket.display(),
                    "reconcile failed"),
                Err(_) => tracing::warn!(timeout = ?self.background_timeout, "reconcile timed out"),
            }
        }
        .instrument(span)
        .await;
    }

    fn setup_failed(
        &self,
        label: &str,
        deadline: Duration,
        status: &tonic::Status,
        asker: Asker,
    ) -> Status {
        // DEADLINE_EXCEEDED from plexusd, or CANCELLED "Timeout expired" from tonic's
        // enforcement of the grpc-timeout header on either side.
        if matches!(
            status.code(),
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
        ) {
            return Status::new(
                code::DEADLINE_EXCEEDED,
                format!(
                    "plexus: network setup for pod {label} did not finish within {}: {}; {}",
                    shown(deadline),
                    status.message(),
                    asker.out_of_time()
                ),
            );
        }
        // tonic reports a failed dial (no socket, refused) as UNAVAILABLE; plexusd
        // itself never answers UNAVAILABLE (see node.proto).
        if status.code() == tonic::Code::Unavailable {
            return Status::new(
                code::UNAVAILABLE,
                format!(
                    "plexus: network setup for pod {label} failed: plexusd is not reachable at {}: {}",
                    self.plexusd_socket.display(),
                    status.message()
                ),
            );
        }
        Status::new(
            status.code() as i32,
            format!(
                "plexus: network setup for pod {label} failed: {}",
                status.message()
            ),
        )
    }
}

/// Drives `call` while holding `gate` until the call finished or [`SEND_HOLD`] passed,
/// then releases the gate and drives the call to its end.
async fn hold_while_sending<F: Future>(gate: impl Sized, call: F) -> F::Output {
    let mut call = std::pin::pin!(call);
    let early = tokio::time::timeout(SEND_HOLD, call.as_mut()).await;
    drop(gate);
    match early {
        Ok(output) => output,
        Err(_) => call.await,
    }
}

fn insert_traceparent<T>(request: &mut tonic::Request<T>, traceparent: &str) {
    // The W3C format is plain ASCII, so this never fails.
    if let Ok(value) = MetadataValue::try_from(traceparent) {
        request.metadata_mut().insert(TRACEPARENT_KEY, value);
    }
}

/// The end of every "did not finish" answer: what happens next, and what to change when it
/// keeps happening (docs/config.md, "When the kernel keeps the rtnl lock for seconds").
const OUT_OF_TIME: &str = "the pod is failed so the kubelet retries; if this recurs when many \
    pods start at once, raise containerd's plugin_request_timeout and plexusd's \
    nri.deadlineBudget with it (75 %)";

/// The end of a CreateContainer's "did not finish": the container waits for its networks.
const HELD_BACK: &str = "the container is not created until the pod's networks are up (the \
    kubelet retries it); plexusd's log says how the setup is going";

/// A deadline as configured, to the millisecond (`1500ms`, not the `1.499971142s` left of
/// the runtime's timeout when the call arrived).
fn shown(deadline: Duration) -> String {
    let ms = (deadline.as_secs_f64() * 1e3).round() as u64;
    plexus_core::duration::render(Duration::from_millis(ms))
}

/// Milliseconds since `started`, to 0.01 ms (what the benchmark reads from the log).
fn elapsed_ms(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1e5).round() / 100.0
}

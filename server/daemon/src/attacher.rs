//! The seam between the node service and whatever makes attachments real.
//!
//! The service never touches netlink, namespaces, plugins or the state directory itself: it
//! calls an [`Attacher`]. Production uses the adapter over `plexus_engine::Engine`
//! (`engine.rs`); tests use the recording fake in [`crate::test_util`].
//!
//! A sandbox has one lock, the engine's ([`plexus_engine::lock`]): the service takes it with
//! [`Attacher::lock`] before anything else (before its parallelism slot), and every mutating
//! call names its sandbox by that lock, so none can run without it.

use std::future::Future;

use plexus_core::id::SandboxId;
use plexus_core::plan::{Plan, PlannedAttachment};
use plexus_engine::SandboxLock;

use crate::error::Result;
use crate::model::{AttachmentView, RecoveryOutcome, SandboxSpec, SandboxView, TeardownOutcome};

/// Makes, records and removes attachments.
///
/// Every mutating call takes an optional deadline. When it passes, the implementation undoes
/// what it did for this call and returns [`crate::Error::DeadlineExceeded`] saying what was
/// undone; it never leaves a half-made attachment behind.
pub trait Attacher: Send + Sync + 'static {
    /// Finishes or undoes work interrupted by a crash; called once before serving.
    fn recover(&self) -> impl Future<Output = Result<RecoveryOutcome>> + Send;

    /// Waits for `sandbox_id`'s lock and takes it (bound the wait with a timeout around
    /// this future).
    fn lock(&self, sandbox_id: &SandboxId) -> impl Future<Output = SandboxLock> + Send;

    /// Executes a pod's plan in its netns and records it, unless the sandbox is already
    /// set up exactly as planned (the attacher decides; see [`SetupDone::reused`]). `lock`
    /// is `spec`'s sandbox's.
    fn setup(
        &self,
        lock: &SandboxLock,
        spec: SandboxSpec,
        plan: Plan,
        deadline: Option<plexus_core::deadline::Deadline>,
    ) -> impl Future<Output = Result<SetupDone>> + Send;

    /// Tears down everything recorded for a sandbox (unknown: `known == false`, not an error).
    fn teardown(
        &self,
        lock: &SandboxLock,
        links: plexus_engine::LinkDeletion,
        deadline: Option<plexus_core::deadline::Deadline>,
    ) -> impl Future<Output = Result<TeardownOutcome>> + Send;

    /// Hot-plugs one attachment into a recorded sandbox.
    fn attach(
        &self,
        lock: &SandboxLock,
        attachment: PlannedAttachment,
        deadline: Option<plexus_core::deadline::Deadline>,
    ) -> impl Future<Output = Result<AttachmentView>> + Send;

    /// Hot-unplugs one interface from a recorded sandbox.
    fn detach(
        &self,
        lock: &SandboxLock,
        interface: plexus_core::InterfaceName,
        deadline: Option<plexus_core::deadline::Deadline>,
    ) -> impl Future<Output = Result<AttachmentView>> + Send;

    /// Every recorded sandbox.
    fn sandboxes(&self) -> Result<Vec<SandboxView>>;

    /// One recorded sandbox.
    fn sandbox(&self, sandbox_id: &SandboxId) -> Result<Option<SandboxView>>;

    /// Whether the runtime's stop of this sandbox may be answered before its teardown
    /// (`SetupPodResponse.stop_at_once`). False unless the attacher can promise it.
    fn stop_at_once(&self, _sandbox_id: &SandboxId) -> bool {
        false
    }
}

/// What [`Attacher::setup`] did.
#[derive(Debug, Clone)]
pub struct SetupDone {
    /// The sandbox as recorded.
    pub sandbox: SandboxView,
    /// True when it was already set up exactly as planned and nothing was done (a retried
    /// setup); false when the plan was executed now.
    pub reused: bool,
}

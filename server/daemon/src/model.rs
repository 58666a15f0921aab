//! What the node service knows about sandboxes and their attachments, in domain terms.
//!
//! These are the views the [`crate::attacher::Attacher`] returns and the service converts
//! to wire types in `convert.rs`. They carry no protobuf types and no engine internals.

use std::path::PathBuf;
use std::time::SystemTime;

use plexus_core::cni::Result as CniResult;
use plexus_core::id::SandboxId;
use plexus_core::pod::PodIdentity;
use serde::{Deserialize, Serialize};

/// What the runtime tells us about a sandbox when asking for its networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSpec {
    /// Runtime sandbox id (`CNI_CONTAINERID`), validated at the edge.
    pub sandbox_id: SandboxId,
    /// The pod the sandbox belongs to.
    pub pod: PodIdentity,
    /// Path of the pod's network namespace.
    pub netns: PathBuf,
}

/// A recorded sandbox with its attachments, in execution order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxView {
    /// Runtime sandbox id.
    pub sandbox_id: SandboxId,
    /// The pod.
    pub pod: PodIdentity,
    /// Network namespace path as recorded.
    pub netns: String,
    /// Attachments in execution order.
    pub attachments: Vec<AttachmentView>,
}

/// Lifecycle state of one attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttachmentState {
    /// Intent recorded, not confirmed.
    Pending,
    /// Confirmed in the pod.
    Attached,
    /// Being torn down.
    Detaching,
}

impl AttachmentState {
    /// The name used in the node API.
    pub fn as_str(self) -> &'static str {
        match self {
            AttachmentState::Pending => "pending",
            AttachmentState::Attached => "attached",
            AttachmentState::Detaching => "detaching",
        }
    }
}

/// One attachment of a sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttachmentView {
    /// `namespace/name` for NAD-backed networks, else the CNI config name.
    pub network: String,
    /// Interface name inside the pod.
    pub interface: String,
    /// Addresses with prefix length.
    pub ips: Vec<String>,
    /// Hardware address (empty when unknown).
    pub mac: String,
    /// `native` or `exec`.
    pub driver: String,
    /// Plugin type(s), comma separated.
    pub plugin: String,
    /// Why the pod has it (`cluster`, `default`, `annotation`, `hotplug`, ...).
    pub origin: String,
    /// Lifecycle state.
    pub state: AttachmentState,
    /// MTU when known.
    pub mtu: Option<u32>,
    /// Gateways of the attachment's addresses.
    pub gateways: Vec<String>,
    /// True for the cluster network (eth0).
    pub primary: bool,
    /// Expiry of the native DHCP lease (seconds since the Unix epoch), when there is one.
    pub lease_expires: Option<u64>,
    /// The canonical CNI result, when one was recorded (network-status is rendered from it).
    pub result: Option<CniResult>,
}

/// Outcome of tearing down one sandbox.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TeardownOutcome {
    /// False when nothing was recorded for the sandbox.
    pub known: bool,
    /// The pod the sandbox belonged to, when known.
    pub pod: Option<PodIdentity>,
    /// What was removed, in teardown order.
    pub removed: Vec<AttachmentView>,
}

/// What start-up recovery did with interrupted work.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecoveryOutcome {
    /// Sandboxes whose interrupted steps were completed or undone.
    pub repaired: Vec<String>,
    /// Sandboxes that could not be repaired (`"<id>: <cause>"`).
    pub failed: Vec<String>,
}

/// Kind of an attachment event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// An attachment was made.
    Attached,
    /// An attachment was removed.
    Detached,
    /// Making an attachment failed.
    AttachFailed,
    /// Removing an attachment failed.
    DetachFailed,
}

/// One attachment event, as published on the Watch stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// Sandbox of the attachment.
    pub sandbox_id: String,
    /// Pod of the attachment.
    pub pod: PodIdentity,
    /// The attachment (for failures: what was requested, as far as known).
    pub attachment: Option<AttachmentView>,
    /// Human-readable detail (the error for failures).
    pub message: String,
    /// When it happened.
    pub at: SystemTime,
}

/// Which sandboxes a request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Everything.
    All,
    /// One sandbox.
    Sandbox(SandboxId),
    /// A pod by namespace/name, or by uid when only the uid is given.
    Pod(PodIdentity),
}

impl Selector {
    /// True when the sandbox matches.
    pub fn matches(&self, sandbox_id: &str, pod: &PodIdentity) -> bool {
        match self {
            Selector::All => true,
            Selector::Sandbox(id) => id.as_str() == sandbox_id,
            Selector::Pod(p) if !p.name.is_empty() => {
                p.namespace == pod.namespace
                    && p.name == pod.name
                    && (p.uid.is_empty() || p.uid == pod.uid)
            }
            Selector::Pod(p) => !p.uid.is_empty() && p.uid == pod.uid,
        }
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selector::All => f.write_str("every sandbox"),
            Selector::Sandbox(id) => write!(f, "sandbox {id}"),
            Selector::Pod(p) if !p.name.is_empty() => write!(f, "pod {p}"),
            Selector::Pod(p) => write!(f, "pod uid {}", p.uid),
        }
    }
}

//! The exec path as the engine sees it: run a planned attachment's CNI config through the
//! plugin binaries (ADD / DEL). The real implementation is the `delegate` module; the
//! trait keeps orchestration testable with a recording fake.

use std::path::Path;

use futures::future::BoxFuture;
use plexus_core::cni;
use plexus_core::plan::PlannedAttachment;
use plexus_core::pod::PodIdentity;

/// An error from the exec path, kept as the delegate reported it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// One delegate invocation.
#[derive(Debug, Clone, Copy)]
pub struct ExecRequest<'a> {
    /// Sandbox id (`CNI_CONTAINERID`).
    pub sandbox_id: &'a plexus_core::SandboxId,
    /// The pod (`K8S_POD_*` CNI args).
    pub pod: &'a PodIdentity,
    /// The pod netns (`CNI_NETNS`); `None` on DEL when it is gone.
    pub netns: Option<&'a Path>,
    /// The attachment: config bytes, interface, runtime config, CNI args.
    pub attachment: &'a PlannedAttachment,
    /// The ADD result, for DEL's `prevResult` when the libcni cache is missing.
    pub prev_result: Option<&'a cni::Result>,
}

/// Runs CNI plugin binaries.
pub trait Exec: Send + Sync + std::fmt::Debug + 'static {
    /// CNI ADD (the whole chain for a conflist); returns the final result.
    fn add<'a>(&'a self, req: ExecRequest<'a>) -> BoxFuture<'a, Result<cni::Result, BoxError>>;
    /// CNI DEL (reverse chain); succeeds when things are already gone.
    fn del<'a>(&'a self, req: ExecRequest<'a>) -> BoxFuture<'a, Result<(), BoxError>>;
}

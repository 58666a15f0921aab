//! The seam between the node service and network resolution.
//!
//! Resolution is pure (plexus-core): pod identity + annotations + NADs + config in, a plan out.
//! The service reaches it through [`Planner`] so it can be tested with a scripted fake; the
//! production implementation (`resolver.rs`) calls `plexus_core` directly.

use std::collections::BTreeMap;

use plexus_core::plan::{Plan, PlannedAttachment};
use plexus_core::pod::PodIdentity;

use crate::error::Result;
use crate::model::SandboxView;

/// A dry-run resolution rendered for tooling and for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// Stable JSON (`docs/explain.md`), also for failures.
    pub json: String,
    /// The same for humans.
    pub text: String,
    /// False when resolution failed (the JSON then carries the error).
    pub ok: bool,
}

/// Decides what a pod gets.
pub trait Planner: Send + Sync + 'static {
    /// The full plan for a pod from its annotations.
    fn plan(&self, pod: &PodIdentity, annotations: &BTreeMap<String, String>) -> Result<Plan>;

    /// The plan of a pod whose cluster network plexus executes itself (CNI shim path) as
    /// interface `ifname`: the configured cluster network, else `wrapped` (the runtime's
    /// primary config embedded in the generated conflist).
    fn plan_cni(
        &self,
        pod: &PodIdentity,
        annotations: &BTreeMap<String, String>,
        ifname: &plexus_core::InterfaceName,
        wrapped: Option<&serde_json::Value>,
    ) -> Result<Plan> {
        let _ = (ifname, wrapped);
        self.plan(pod, annotations)
    }

    /// [`Planner::plan`] for a pod being set up, allowed to wait for the NAD store: a store
    /// backed by the API server fetches a NAD it does not hold yet (one GET) and resolves
    /// again. The default is `plan`.
    fn plan_fetching(
        &self,
        pod: &PodIdentity,
        annotations: &BTreeMap<String, String>,
    ) -> impl std::future::Future<Output = Result<Plan>> + Send {
        async move { self.plan(pod, annotations) }
    }

    /// One hot-plugged attachment, given the interfaces the pod already has. Same validation
    /// and namespace isolation as the annotation path.
    fn plan_one(
        &self,
        pod: &PodIdentity,
        selection: &str,
        present: &[String],
    ) -> Result<PlannedAttachment>;

    /// Namespace isolation for an attachment the pod already has: may a pod in `pod`'s
    /// namespace use `network` (`namespace/name`)? The node API's Detach asks it, so Attach
    /// and Detach obey the same rule as the annotation. The default allows everything.
    fn check_isolation(&self, pod: &PodIdentity, network: &str) -> Result<()> {
        let _ = (pod, network);
        Ok(())
    }

    /// The plan (or the error) rendered for `explain`.
    fn explain(&self, pod: &PodIdentity, annotations: &BTreeMap<String, String>) -> Explanation;

    /// [`Planner::explain`] allowed to wait for the NAD store: a store backed by the API
    /// server first fetches the NADs it does not hold yet (one GET each, nothing reported to
    /// the pod). The default is `explain`.
    fn explain_fetching(
        &self,
        pod: &PodIdentity,
        annotations: &BTreeMap<String, String>,
    ) -> impl std::future::Future<Output = Explanation> + Send {
        async move { self.explain(pod, annotations) }
    }

    /// The `k8s.v1.cni.cncf.io/network-status` value for a sandbox, in Multus's shape.
    fn network_status(&self, sandbox: &SandboxView) -> Result<String>;
}

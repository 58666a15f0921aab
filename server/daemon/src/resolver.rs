//! The production [`Planner`]: plexus-core's resolution over the configured NAD source, its
//! explain rendering and its network-status rendering. Pure calls, no I/O beyond the NAD
//! directory source re-reading changed files — except in Kubernetes mode, where
//! [`Planner::plan_fetching`] may make the one direct GET of a NAD the cache does not hold
//! (see `kubernetes.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use plexus_core::nad::NadSource;
use plexus_core::plan::{Plan, PlannedAttachment};
use plexus_core::pod::PodIdentity;
use plexus_core::status;

use crate::error::{Error, ResolveFailure, Result};
use crate::model::SandboxView;
use crate::planner::{Explanation, Planner};

/// Resolution with plexus-core.
#[derive(Clone)]
pub struct Resolver {
    config: plexus_core::Config,
    nads: Arc<dyn NadSource>,
    /// Kubernetes mode: the API-backed NAD cache, fetched from when a NAD is missing.
    cluster: Option<Arc<crate::kubernetes::Cluster>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// Resolves with `config` against `nads`.
    pub fn new(config: plexus_core::Config, nads: Arc<dyn NadSource>) -> Self {
        Self {
            config,
            nads,
            cluster: None,
        }
    }

    /// Resolves against the API server's NADs (Kubernetes mode).
    pub fn with_cluster(
        config: plexus_core::Config,
        cluster: Arc<crate::kubernetes::Cluster>,
    ) -> Self {
        Self {
            config,
            nads: Arc::new(cluster.nads.clone()),
            cluster: Some(cluster),
        }
    }
}

/// Classifies a resolution error by its type.
pub fn resolve_error(pod: &PodIdentity, err: plexus_core::Error) -> Error {
    use plexus_core::Error as E;
    let kind = match &err {
        E::NetworkNotFound { .. } | E::ConfiguredNetworkNotFound { .. } => ResolveFailure::NotFound,
        E::NamespaceIsolation { .. } => ResolveFailure::Forbidden,
        E::InvalidPodManifest { .. } => ResolveFailure::Invalid,
        e if e.is_retryable() => ResolveFailure::Unavailable,
        e if e.is_user_input() => ResolveFailure::Invalid,
        _ => ResolveFailure::Internal,
    };
    Error::Resolve {
        pod: pod.to_string(),
        kind,
        message: err.to_string(),
    }
}

impl Planner for Resolver {
    fn plan(&self, pod: &PodIdentity, annotations: &BTreeMap<String, String>) -> Result<Plan> {
        plexus_core::resolve(pod, annotations, &self.config, self.nads.as_ref())
            .map_err(|e| resolve_error(pod, e))
    }

    fn plan_cni(
        &self,
        pod: &PodIdentity,
        annotations: &BTreeMap<String, String>,
        ifname: &plexus_core::InterfaceName,
        wrapped: Option<&serde_json::Value>,
    ) -> Result<Plan> {
        let config = crate::cni::resolver_config(&self.config, ifname, wrapped);
        plexus_core::resolve(pod, annotations, &config, self.nads.as_ref())
            .map_err(|e| resolve_error(pod, e))
    }

    async fn plan_fetching(
        &self,
        pod: &PodIdentity,
        annotations: &BTreeMap<String, String>,
    ) -> Result<Plan> {
        match &self.cluster {
            None => self.plan(pod, annotations),
            Some(cluster) => {
                let mut plan = cluster
                    .resolve(pod, |nads| {
                        plexus_core::resolve(pod, annotations, &self.config, nads)
                    })
                    .await
                    .map_err(|e| resolve_error(pod, e))?;
                if let Some(kubelet) = cluster.pod_resources() {
                    kubelet.assign(pod, &mut plan).await.map_err(|e| match e {
                        crate::pod_resources::AssignError::Inject(e) => resolve_error(pod, e),
                        // The kubelet may come back: NRI fails the sandbox, kubelet retries.
                        crate::pod_resources::AssignError::Read(e) => Error::Resolve {
                            pod: pod.to_string(),
                            kind: ResolveFailure::Unavailable,
                            message: format!("device-plugin ids for its networks: {e}"),
                        },
                    })?;
                }
                Ok(plan)
            }
        }
    }

    fn plan_one(
        &self,
        pod: &PodIdentity,
        selection: &str,
        present: &[String],
    ) -> Result<PlannedAttachment> {
        plexus_core::resolve_one(pod, selection, present, &self.config, self.nads.as_ref())
            .map_err(|e| resolve_error(pod, e))
    }

    fn check_isolation(&self, pod: &PodIdentity, network: &str) -> Result<()> {
        let Some((namespace, _)) = network.split_once('/') else {
            return Ok(());
        };
        if self.config.may_reference(&pod.namespace, namespace) {
            return Ok(());
        }
        let err = plexus_core::Error::NamespaceIsolation {
            pod_namespace: pod.namespace.clone(),
            target_namespace: namespace.to_string(),
            network: network.to_string(),
            allowed: if self.config.global_namespaces.is_empty() {
                "no global namespaces".to_string()
            } else {
                format!(
                    "global namespaces {}",
                    self.config.global_namespaces.join(",")
                )
            },
        };
        Err(resolve_error(pod, err))
    }

    fn explain(&self, pod: &PodIdentity, annotations: &BTreeMap<String, String>) -> Explanation {
        let outcome = plexus_core::resolve(pod, annotations, &self.config, self.nads.as_ref());
        let rendered = plexus_core::explain(pod, &outcome);
        Explanation {
            json: rendered.json,
            text: rendered.text,
            ok: outcome.is_ok(),
        }
    }

    async fn explain_fetching(
        &self,
        pod: &PodIdentity,
        annotations: &BTreeMap<String, String>,
    ) -> Explanation {
        if let Some(cluster) = &self.cluster {
            cluster
                .prefetch(pod, |nads| {
                    plexus_core::resolve(pod, annotations, &self.config, nads)
                })
                .await;
        }
        self.explain(pod, annotations)
    }

    fn network_status(&self, sandbox: &SandboxView) -> Result<String> {
        let inputs: Vec<status::Attachment<'_>> = sandbox
            .attachments
            .iter()
            // A runtime-made primary whose network has no name (no clusterNetwork and
            // nothing in the runtime's result cache) is left out: Multus never writes a
            // nameless entry.
            .filter(|a| !a.network.is_empty())
            .filter_map(|a| {
                Some(status::Attachment {
                    network: &a.network,
                    primary: a.primary,
                    result: a.result.as_ref()?,
                    device_info: None,
                })
            })
            .collect();
        Ok(status::render(&status::build(&inputs)))
    }
}

/// Reads a pod manifest for `explain`: identity and annotations.
pub fn pod_from_manifest(text: &str) -> Result<(PodIdentity, BTreeMap<String, String>)> {
    plexus_core::pod_from_manifest(text).map_err(|e| Error::InvalidRequest {
        message: e.to_string(),
    })
}

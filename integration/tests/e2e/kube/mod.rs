//! Kubernetes mode end to end: plexusd reads its NADs from a fake API server
//! (`plexus-kube-fake`, HTTPS + bearer token + kubeconfig) and publishes network-status and
//! pod events there, with pods started through CRI on the private containerd.
//!
//! plexusd runs in containerd's test network namespace, so the fake must listen there too:
//! it runs on its own tokio runtime whose threads entered that namespace ([`Api`]). As a
//! kubelet would, each test creates the pod object (namespace, name, this node) before the
//! sandbox, and the sandbox carries the object's uid.

mod adopt;
mod api;
mod hotplug;
mod outage;
mod status;

pub use api::{Api, NODE};

use std::time::Duration;

use plexus_integration::containerd::{self, Containerd};
use plexus_integration::plexus::{self, Kubernetes};
use plexus_integration::{Env, Error, Pod, PodSpec};

/// Longest wait for a write that goes through the publisher's retry queue after an outage
/// (the queue wakes when the API server answers again; its backoff is capped at 30 s).
pub const AFTER_OUTAGE: Duration = Duration::from_secs(40);
/// Longest wait for a write while the API server is up.
pub const PROMPT: Duration = Duration::from_secs(10);

/// containerd + plexus in Kubernetes mode + the fake API server holding the standard NADs.
/// Dropped in field order: pods removed and plexus stopped while the API still serves.
pub struct KubeEnv {
    /// containerd and plexus.
    pub env: Env,
    /// The API server plexusd talks to.
    pub api: Api,
}

impl KubeEnv {
    /// Starts containerd, the fake API in its namespace with the standard NADs, then plexus.
    pub async fn start() -> Self {
        let containerd = Containerd::start(containerd::Options::default())
            .await
            .unwrap();
        let api = Api::start_in(containerd.host_netns().path());
        Self::start_plexus(containerd, api, plexus::Options::default()).await
    }

    /// Starts plexus in Kubernetes mode (with `opts`) on a running containerd and its fake
    /// API, which gets the standard NADs first.
    pub async fn start_plexus(containerd: Containerd, api: Api, opts: plexus::Options) -> Self {
        let opts = plexus::Options {
            kubernetes: Some(Kubernetes {
                kubeconfig: api.kubeconfig_path(),
                node_name: NODE.into(),
            }),
            ..opts
        };
        let env = Env::start_on(containerd, opts, |nads| {
            for nad in nads {
                api.create_nad(nad).map_err(|e| Error::Unexpected {
                    what: "creating a NAD on the fake API server",
                    detail: e.to_string(),
                })?;
            }
            Ok(())
        })
        .await
        .unwrap();
        Self { env, api }
    }

    /// Creates the pod object, then the sandbox through CRI.
    pub async fn run_pod(&self, spec: &PodSpec) -> plexus_integration::Result<(Pod, PodSpec)> {
        let spec = self.api.create_pod(spec);
        let pod = self.env.containerd.run_pod(&spec).await?;
        Ok((pod, spec))
    }
}

//! The kubelet's pod-resources API (`v1.PodResourcesLister` on a unix socket, by default
//! `/var/lib/kubelet/pod-resources/kubelet.sock`; config `nadSource.kubernetes.podResourcesSocket`):
//! which device ids the device plugins (SR-IOV and others) allocated to a pod, per resource
//! name. Resolution hands them to the attachments whose NAD names the resource
//! (`k8s.v1.cni.cncf.io/resourceName`, F22/F24; [`plexus_core::assign_devices`]).
//!
//! `Get` asks for one pod; a kubelet without it (older than the `KubeletPodResourcesGet`
//! gate, or with it off) answers `Unimplemented` or an error naming the disabled method, and
//! then `List` is read and filtered. Each lookup opens its own connection (the socket is
//! local and lookups happen only for pods with device-plugin networks) and is bounded by a
//! timeout; answers are bounded in size.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use plexus_proto::podresources as wire;
use tonic::transport::{Channel, Endpoint, Uri};

/// Where the kubelet serves the API.
pub const DEFAULT_SOCKET: &str = "/var/lib/kubelet/pod-resources/kubelet.sock";
/// The config key naming the socket.
pub const CONFIG_KEY: &str = "nadSource.kubernetes.podResourcesSocket";
/// Longest a lookup may take (the setup path's budget is 1.5 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest answer read (a `List` of a busy node is a few hundred KiB).
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Why the allocation could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PodResourcesError {
    /// The socket does not exist or does not answer.
    #[error(
        "cannot reach the kubelet pod-resources API at {}: {cause}; is the kubelet's pod-resources directory mounted into plexusd (set {CONFIG_KEY} when it is elsewhere)?",
        socket.display()
    )]
    Connect {
        /// The socket.
        socket: PathBuf,
        /// Why.
        cause: String,
    },
    /// The kubelet answered with an error.
    #[error("the kubelet pod-resources API at {} ({CONFIG_KEY}) answered {method}: {status}", socket.display())]
    Call {
        /// The socket.
        socket: PathBuf,
        /// `Get` or `List`.
        method: &'static str,
        /// The gRPC status (code and message).
        status: String,
    },
    /// No answer in time.
    #[error("the kubelet pod-resources API at {} ({CONFIG_KEY}) did not answer within {timeout:?}", socket.display())]
    Timeout {
        /// The socket.
        socket: PathBuf,
        /// The limit.
        timeout: Duration,
    },
}

/// Why devices could not be assigned.
#[derive(Debug, thiserror::Error)]
pub enum AssignError {
    /// The allocation could not be read.
    #[error(transparent)]
    Read(#[from] PodResourcesError),
    /// A device id could not be written into a network's config.
    #[error(transparent)]
    Inject(#[from] plexus_core::Error),
}

/// A client of the kubelet's pod-resources API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodResources {
    socket: PathBuf,
    timeout: Duration,
}

/// Device ids by resource name (`intel.com/sriov_netdevice` → `["0000:03:00.2", …]`).
pub type Allocation = BTreeMap<String, Vec<String>>;

impl PodResources {
    /// A client of the API on `socket`.
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> Self {
        Self {
            socket: socket.into(),
            timeout,
        }
    }

    /// The socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Hands the pod's allocated devices to the plan's attachments whose NAD names a
    /// resource (F22/F24). Asks the kubelet only when the plan has such an attachment.
    pub async fn assign(
        &self,
        pod: &plexus_core::pod::PodIdentity,
        plan: &mut plexus_core::plan::Plan,
    ) -> Result<Vec<plexus_core::DeviceAssignment>, AssignError> {
        let wants = plan
            .attachments
            .iter()
            .any(|a| a.resource_name.is_some() && !a.runtime_managed);
        if !wants {
            return Ok(Vec::new());
        }
        let allocated = self.allocation(&pod.namespace, &pod.name).await?;
        let assigned = plexus_core::assign_devices(plan, &allocated)?;
        tracing::debug!(pod = %pod, ?assigned, "device-plugin ids assigned");
        Ok(assigned)
    }

    /// The device ids allocated to the pod `namespace/name`, by resource name, over all its
    /// containers. A pod the kubelet does not know has none.
    pub async fn allocation(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Allocation, PodResourcesError> {
        tokio::time::timeout(self.timeout, self.lookup(namespace, name))
            .await
            .map_err(|_| PodResourcesError::Timeout {
                socket: self.socket.clone(),
                timeout: self.timeout,
            })?
    }

    async fn lookup(&self, namespace: &str, name: &str) -> Result<Allocation, PodResourcesError> {
        let channel = self.connect().await?;
        let mut client = wire::pod_resources_lister_client::PodResourcesListerClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE);
        let got = client
            .get(wire::GetPodResourcesRequest {
                pod_name: name.to_owned(),
                pod_namespace: namespace.to_owned(),
            })
            .await;
        let status = match got {
            Ok(answer) => {
                return Ok(answer
                    .into_inner()
                    .pod_resources
                    .map(|p| allocation_of(&p))
                    .unwrap_or_default());
            }
            Err(status) => status,
        };
        if !get_unavailable(&status) {
            return Err(self.call_error("Get", &status));
        }
        tracing::debug!(error = %status.message(), "pod-resources Get unavailable; reading List");
        let list = client
            .list(wire::ListPodResourcesRequest {})
            .await
            .map_err(|s| self.call_error("List", &s))?
            .into_inner();
        Ok(list
            .pod_resources
            .iter()
            .filter(|p| p.namespace == namespace && p.name == name)
            .map(allocation_of)
            .next()
            .unwrap_or_default())
    }

    fn call_error(&self, method: &'static str, status: &tonic::Status) -> PodResourcesError {
        PodResourcesError::Call {
            socket: self.socket.clone(),
            method,
            status: format!("{:?}: {}", status.code(), status.message()),
        }
    }

    async fn connect(&self) -> Result<Channel, PodResourcesError> {
        let socket = self.socket.clone();
        let connect_error = |cause: String| PodResourcesError::Connect {
            socket: self.socket.clone(),
            cause,
        };
        if !self.socket.exists() {
            return Err(connect_error("the socket does not exist".to_owned()));
        }
        // The URI is a placeholder: the connector dials the socket.
        Endpoint::from_static("http://kubelet.pod-resources")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let socket = socket.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(socket).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            }))
            .await
            .map_err(|e| connect_error(transport_cause(&e)))
    }
}

/// The transport error with its causes (tonic's own message is only "transport error").
fn transport_cause(err: &tonic::transport::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A kubelet without `Get`: the method is unknown (`Unimplemented`) or switched off by its
/// feature gate (the kubelet's message says the method is disabled).
fn get_unavailable(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unimplemented
        || (status.code() == tonic::Code::Unknown && status.message().contains("disabled"))
}

/// The device ids of every container of a pod, by resource name, sorted and deduplicated.
fn allocation_of(pod: &wire::PodResources) -> Allocation {
    let mut out: Allocation = BTreeMap::new();
    for device in pod.containers.iter().flat_map(|c| &c.devices) {
        out.entry(device.resource_name.clone())
            .or_default()
            .extend(device.device_ids.iter().cloned());
    }
    for ids in out.values_mut() {
        ids.sort();
        ids.dedup();
    }
    out.retain(|_, ids| !ids.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allocation_merges_containers_by_resource() {
        let devices = |r: &str, ids: &[&str]| wire::ContainerDevices {
            resource_name: r.into(),
            device_ids: ids.iter().map(|s| s.to_string()).collect(),
        };
        let pod = wire::PodResources {
            name: "p".into(),
            namespace: "n".into(),
            containers: vec![
                wire::ContainerResources {
                    name: "a".into(),
                    devices: vec![devices("intel.com/vf", &["0000:03:00.2"])],
                },
                wire::ContainerResources {
                    name: "b".into(),
                    devices: vec![
                        devices("intel.com/vf", &["0000:03:00.1"]),
                        devices("nvidia.com/gpu", &[]),
                    ],
                },
            ],
        };
        assert_eq!(
            allocation_of(&pod),
            BTreeMap::from([(
                "intel.com/vf".to_string(),
                vec!["0000:03:00.1".to_string(), "0000:03:00.2".to_string()]
            )])
        );
    }
}

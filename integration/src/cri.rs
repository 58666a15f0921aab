//! A minimal CRI `runtime.v1` client over containerd's unix socket: the pod sandbox and
//! container lifecycle, `ExecSync` and runtime status, nothing else. The generated messages live in [`api`];
//! [`Client`] wraps the calls the tests use and turns statuses into [`Error::Cri`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::{Error, Result};

/// Generated CRI messages and the RuntimeService client (subset, see `proto/cri.proto`).
#[allow(missing_docs, clippy::all, missing_debug_implementations)]
pub mod api {
    tonic::include_proto!("runtime.v1");
}

use api::runtime_service_client::RuntimeServiceClient;

/// A connected CRI RuntimeService client.
#[derive(Debug, Clone)]
pub struct Client {
    inner: RuntimeServiceClient<Channel>,
}

impl Client {
    /// Connects to the CRI socket (containerd's grpc address).
    pub async fn connect(socket: &Path) -> Result<Self> {
        let path: PathBuf = socket.to_owned();
        // The URI is required by the API but unused: the connector dials the socket.
        let channel = Endpoint::from_static("http://[::]:50051")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            }))
            .await
            .map_err(|source| Error::Connect {
                socket: socket.to_owned(),
                source,
            })?;
        Ok(Self {
            inner: RuntimeServiceClient::new(channel),
        })
    }

    /// `Version`: the runtime's name and version.
    pub async fn version(&self) -> Result<api::VersionResponse> {
        let req = api::VersionRequest {
            version: "v1".into(),
        };
        let resp = self.inner.clone().version(req).await;
        Ok(resp.map_err(Error::cri("Version"))?.into_inner())
    }

    /// `Status`: the runtime conditions as `type -> (status, message)`.
    pub async fn conditions(&self) -> Result<HashMap<String, (bool, String)>> {
        let resp = self
            .inner
            .clone()
            .status(api::StatusRequest { verbose: false })
            .await
            .map_err(Error::cri("Status"))?
            .into_inner();
        Ok(resp
            .status
            .map(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .map(|c| (c.r#type, (c.status, c.message)))
            .collect())
    }

    /// The CNI config CRI has loaded (`Status` verbose, `info["cniconfig"]`).
    pub async fn cni_config(&self) -> Result<String> {
        let resp = self
            .inner
            .clone()
            .status(api::StatusRequest { verbose: true })
            .await
            .map_err(Error::cri("Status"))?
            .into_inner();
        Ok(resp.info.get("cniconfig").cloned().unwrap_or_default())
    }

    /// `RunPodSandbox`: returns the sandbox id.
    pub async fn run_pod_sandbox(&self, config: api::PodSandboxConfig) -> Result<String> {
        let req = api::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        };
        let resp = self.inner.clone().run_pod_sandbox(req).await;
        Ok(resp
            .map_err(Error::cri("RunPodSandbox"))?
            .into_inner()
            .pod_sandbox_id)
    }

    /// `StopPodSandbox`.
    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let req = api::StopPodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        let resp = self.inner.clone().stop_pod_sandbox(req).await;
        resp.map_err(Error::cri("StopPodSandbox"))?;
        Ok(())
    }

    /// `RemovePodSandbox`.
    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let req = api::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        let resp = self.inner.clone().remove_pod_sandbox(req).await;
        resp.map_err(Error::cri("RemovePodSandbox"))?;
        Ok(())
    }

    /// `PodSandboxStatus` (verbose, so `info` carries containerd's JSON).
    pub async fn pod_sandbox_status(&self, id: &str) -> Result<api::PodSandboxStatusResponse> {
        let req = api::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_owned(),
            verbose: true,
        };
        let resp = self.inner.clone().pod_sandbox_status(req).await;
        Ok(resp.map_err(Error::cri("PodSandboxStatus"))?.into_inner())
    }

    /// `ListPodSandbox` without a filter.
    pub async fn list_pod_sandboxes(&self) -> Result<Vec<api::PodSandbox>> {
        let req = api::ListPodSandboxRequest { filter: None };
        let resp = self.inner.clone().list_pod_sandbox(req).await;
        Ok(resp
            .map_err(Error::cri("ListPodSandbox"))?
            .into_inner()
            .items)
    }
}

impl Client {
    /// `CreateContainer` in `sandbox` (whose config is passed again, as the kubelet does):
    /// returns the container id.
    pub async fn create_container(
        &self,
        sandbox: &str,
        config: api::ContainerConfig,
        sandbox_config: api::PodSandboxConfig,
    ) -> Result<String> {
        let req = api::CreateContainerRequest {
            pod_sandbox_id: sandbox.to_owned(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        let resp = self.inner.clone().create_container(req).await;
        Ok(resp
            .map_err(Error::cri("CreateContainer"))?
            .into_inner()
            .container_id)
    }

    /// `StartContainer`.
    pub async fn start_container(&self, id: &str) -> Result<()> {
        let req = api::StartContainerRequest {
            container_id: id.to_owned(),
        };
        let resp = self.inner.clone().start_container(req).await;
        resp.map_err(Error::cri("StartContainer"))?;
        Ok(())
    }

    /// `StopContainer` with a grace period of `timeout_secs` (0: kill at once).
    pub async fn stop_container(&self, id: &str, timeout_secs: i64) -> Result<()> {
        let req = api::StopContainerRequest {
            container_id: id.to_owned(),
            timeout: timeout_secs,
        };
        let resp = self.inner.clone().stop_container(req).await;
        resp.map_err(Error::cri("StopContainer"))?;
        Ok(())
    }

    /// `RemoveContainer`.
    pub async fn remove_container(&self, id: &str) -> Result<()> {
        let req = api::RemoveContainerRequest {
            container_id: id.to_owned(),
        };
        let resp = self.inner.clone().remove_container(req).await;
        resp.map_err(Error::cri("RemoveContainer"))?;
        Ok(())
    }

    /// `ContainerStatus` (not verbose).
    pub async fn container_status(&self, id: &str) -> Result<api::ContainerStatus> {
        let req = api::ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: false,
        };
        let resp = self.inner.clone().container_status(req).await;
        resp.map_err(Error::cri("ContainerStatus"))?
            .into_inner()
            .status
            .ok_or_else(|| Error::Unexpected {
                what: "container status",
                detail: format!("no status for container {id}"),
            })
    }

    /// `ExecSync`: runs `cmd` in the container, at most `timeout_secs`.
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout_secs: i64,
    ) -> Result<api::ExecSyncResponse> {
        let req = api::ExecSyncRequest {
            container_id: id.to_owned(),
            cmd: cmd.to_vec(),
            timeout: timeout_secs,
        };
        let resp = self.inner.clone().exec_sync(req).await;
        Ok(resp.map_err(Error::cri("ExecSync"))?.into_inner())
    }
}

/// The network namespace path of a sandbox, from a verbose `PodSandboxStatus`:
/// `info["info"]` is JSON with `.runtimeSpec.linux.namespaces[type=="network"].path`.
pub fn netns_path(status: &api::PodSandboxStatusResponse) -> Result<PathBuf> {
    let info = status.info.get("info").ok_or_else(|| Error::Unexpected {
        what: "pod sandbox status",
        detail: "no `info` key in the verbose info map".into(),
    })?;
    let v: serde_json::Value = serde_json::from_str(info).map_err(|source| Error::Json {
        what: "pod sandbox status info",
        source,
    })?;
    v.pointer("/runtimeSpec/linux/namespaces")
        .and_then(|n| n.as_array())
        .and_then(|ns| {
            ns.iter()
                .find(|n| n.get("type").and_then(|t| t.as_str()) == Some("network"))
        })
        .and_then(|n| n.get("path")?.as_str())
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| Error::Unexpected {
            what: "pod sandbox status info",
            detail: "no network namespace path in runtimeSpec.linux.namespaces".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_with_info(info: &str) -> api::PodSandboxStatusResponse {
        api::PodSandboxStatusResponse {
            info: [("info".to_owned(), info.to_owned())].into(),
            ..Default::default()
        }
    }

    #[test]
    fn netns_path_is_read_from_the_runtime_spec() {
        let info = r#"{"pid":42,"runtimeSpec":{"linux":{"namespaces":[
            {"type":"pid"},{"type":"ipc"},
            {"type":"network","path":"/var/run/netns/cni-0f1e"},{"type":"uts"}]}}}"#;
        let path = netns_path(&status_with_info(info)).unwrap();
        assert_eq!(path, Path::new("/var/run/netns/cni-0f1e"));
    }

    #[test]
    fn netns_path_missing_is_an_error() {
        let host_network = r#"{"runtimeSpec":{"linux":{"namespaces":[{"type":"pid"}]}}}"#;
        assert!(netns_path(&status_with_info(host_network)).is_err());
        assert!(netns_path(&api::PodSandboxStatusResponse::default()).is_err());
        assert!(netns_path(&status_with_info("not json")).is_err());
    }
}

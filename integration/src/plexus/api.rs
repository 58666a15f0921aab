//! The node API of a running [`Plexus`], as the tests ask it: its recorded attachments,
//! a pod's network-status, a runtime's retried SetupPod, and `plexusctl`.

use plexus_proto::v1;
use plexus_proto::v1::node_client::NodeClient;
use tonic::transport::Channel;

use super::{Plexus, binary, connect};
use crate::error::{Error, Result};
use crate::pod::{Pod, PodSpec};
use crate::process::output;

impl Plexus {
    /// A node API client on plexusd's socket.
    pub async fn client(&self) -> Result<NodeClient<Channel>> {
        connect(&self.paths.socket).await
    }

    /// Every attachment plexusd has recorded (`ListAttachments`).
    pub async fn attachments(&self) -> Result<Vec<v1::Attachment>> {
        let mut c = self.client().await?;
        let resp = c
            .list_attachments(v1::ListAttachmentsRequest { target: None })
            .await
            .map_err(Error::node("ListAttachments"))?;
        Ok(resp.into_inner().attachments)
    }

    /// The attachments recorded for one sandbox.
    pub async fn attachments_of(&self, sandbox_id: &str) -> Result<Vec<v1::Attachment>> {
        let all = self.attachments().await?;
        Ok(all
            .into_iter()
            .filter(|a| a.sandbox_id == sandbox_id)
            .collect())
    }

    /// The pod's `k8s.v1.cni.cncf.io/network-status` as plexusd renders it
    /// (`ListAttachmentsResponse.network_status` for its sandbox).
    pub async fn network_status(&self, pod: &Pod) -> Result<String> {
        let mut c = self.client().await?;
        let target = v1::PodSelector {
            sandbox_id: pod.id.clone(),
            pod: None,
        };
        let resp = c
            .list_attachments(v1::ListAttachmentsRequest {
                target: Some(target),
            })
            .await
            .map_err(Error::node("ListAttachments"))?
            .into_inner();
        resp.network_status
            .get(&pod.id)
            .cloned()
            .ok_or_else(|| Error::Unexpected {
                what: "ListAttachments response",
                detail: format!("no network-status for sandbox {}", pod.id),
            })
    }

    /// Sends the `SetupPod` plexus-nri sent for this pod again (a runtime retry) and
    /// returns the network-status of the answer.
    pub async fn retry_setup(&self, pod: &Pod, spec: &PodSpec) -> Result<String> {
        let mut c = self.client().await?;
        let req = v1::SetupPodRequest {
            pod: Some(v1::PodRef {
                namespace: spec.namespace.clone(),
                name: spec.name.clone(),
                uid: spec.uid.clone(),
            }),
            sandbox_id: pod.id.clone(),
            netns_path: pod.netns.display().to_string(),
            annotations: spec.annotations.clone().into_iter().collect(),
            labels: spec.labels.clone().into_iter().collect(),
            may_finish_later: false,
        };
        let resp = c.setup_pod(req).await.map_err(Error::node("SetupPod"))?;
        Ok(resp.into_inner().network_status)
    }

    /// Runs `plexusctl --socket <plexusd socket> args...`; returns its standard output.
    pub fn plexusctl(&self, args: &[&str]) -> Result<String> {
        let program = binary(&self.bins, "plexusctl")?;
        let mut cmd = std::process::Command::new(program);
        cmd.arg("--socket").arg(&self.paths.socket).args(args);
        output(&mut cmd)
    }
}

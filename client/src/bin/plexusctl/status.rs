//! `plexusctl status`: without a pod, plexusd's own state — standalone or Kubernetes mode
//! and, in Kubernetes mode, whether the API server answers, whether the NAD cache and the pod
//! watch have synced, and the publish backlog (`--output json` for scripts). With `--pod` or
//! `--sandbox`, the `k8s.v1.cni.cncf.io/network-status` value plexusd renders for that pod,
//! exactly as Multus would write the annotation.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use plexus_client::output::Format;
use plexus_client::{node_status, output, v1};

use crate::{OutputArg, Target, api_error, client};

/// Print plexusd's status, or a pod's network-status annotation value.
#[derive(Debug, Args)]
pub struct Cmd {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    output: OutputArg,
}

impl Cmd {
    pub async fn run(self, socket: &Path) -> anyhow::Result<ExitCode> {
        let Some(target) = self.target.selector()? else {
            return node(socket, self.output.output).await;
        };
        let mut client = client(socket).await?;
        let answer = client
            .list_attachments(v1::ListAttachmentsRequest {
                target: Some(target),
            })
            .await
            .map_err(api_error)?
            .into_inner();
        let mut statuses: Vec<(String, String)> = answer.network_status.into_iter().collect();
        statuses.sort();
        match statuses.as_slice() {
            [] => anyhow::bail!("no sandbox recorded for that pod"),
            [(_, status)] => output::emit(status),
            many => {
                // Several sandboxes (a restarted pod): one line per sandbox id.
                for (id, status) in many {
                    output::emit(&format!("{id}: {status}"));
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// plexusd's own state.
async fn node(socket: &Path, format: Format) -> anyhow::Result<ExitCode> {
    let mut client = client(socket).await?;
    let answer = client
        .get_status(v1::GetStatusRequest {})
        .await
        .map_err(api_error)?
        .into_inner();
    match format {
        Format::Json => output::emit(&node_status::status_json(&answer)),
        Format::Text => output::emit(&node_status::status_text(&answer)),
    }
    Ok(ExitCode::SUCCESS)
}

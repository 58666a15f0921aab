//! `plexusctl status`: the `k8s.v1.cni.cncf.io/network-status` value plexusd renders for a pod,
//! exactly as Multus would write the annotation.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use plexus_client::{output, v1};

use crate::{Target, api_error, client};

/// Print a pod's network-status annotation value.
#[derive(Debug, Args)]
pub struct Cmd {
    #[command(flatten)]
    target: Target,
}

impl Cmd {
    pub async fn run(self, socket: &Path) -> anyhow::Result<ExitCode> {
        let target = Some(self.target.required()?);
        let mut client = client(socket).await?;
        let answer = client
            .list_attachments(v1::ListAttachmentsRequest { target })
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

//! `plexusctl detach`: hot-unplug one interface from a running pod — on a Kubernetes node by
//! removing its element from the pod's networks annotation (plexusd patches it), else, or
//! with `--direct`, right away.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use plexus_client::output::{self, Format};
use plexus_client::v1;

use crate::{OutputArg, Target, api_error, client};

/// Hot-unplug the interface IFNAME (e.g. net3).
#[derive(Debug, Args)]
pub struct Cmd {
    #[command(flatten)]
    target: Target,
    /// The interface inside the pod.
    interface: String,
    /// Detach right away through plexusd instead of editing the pod's annotation (needed for
    /// an interface attached with `attach --direct`).
    #[arg(long)]
    direct: bool,
    #[command(flatten)]
    output: OutputArg,
}

impl Cmd {
    pub async fn run(self, socket: &Path) -> anyhow::Result<ExitCode> {
        let target = Some(self.target.required()?);
        let mut client = client(socket).await?;
        let answer = client
            .detach(v1::DetachRequest {
                target,
                interface: self.interface,
                via_annotation: !self.direct,
            })
            .await
            .map_err(api_error)?
            .into_inner();
        if answer.removed.is_none() {
            return crate::edited(&answer.annotation, "detaches", self.output.output);
        }
        let list: Vec<v1::Attachment> = answer.removed.into_iter().collect();
        match self.output.output {
            Format::Json => output::emit(&output::attachments_json(&list)),
            Format::Text => output::emit(&output::attachments_text(&list)),
        }
        Ok(ExitCode::SUCCESS)
    }
}

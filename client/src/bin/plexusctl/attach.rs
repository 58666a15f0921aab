//! `plexusctl attach`: hot-plug one network into a running pod — on a Kubernetes node by
//! appending it to the pod's networks annotation (plexusd patches it), else, or with
//! `--direct`, right away.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use plexus_client::output::{self, Format};
use plexus_client::v1;

use crate::{OutputArg, Target, api_error, client};

/// Hot-plug a network: SELECTION is `ns/name@ifname` or a JSON selection element.
#[derive(Debug, Args)]
pub struct Cmd {
    #[command(flatten)]
    target: Target,
    /// The network selection, as in the k8s.v1.cni.cncf.io/networks annotation (one element).
    selection: String,
    /// Attach right away through plexusd instead of editing the pod's annotation (on a
    /// Kubernetes node the annotation is edited by default and plexusd's hot-plug controller
    /// attaches it; a direct attachment is left alone by the controller).
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
            .attach(v1::AttachRequest {
                target,
                selection: self.selection,
                via_annotation: !self.direct,
            })
            .await
            .map_err(api_error)?
            .into_inner();
        if answer.attachment.is_none() {
            return crate::edited(&answer.annotation, "attaches", self.output.output);
        }
        let list: Vec<v1::Attachment> = answer.attachment.into_iter().collect();
        match self.output.output {
            Format::Json => output::emit(&output::attachments_json(&list)),
            Format::Text => output::emit(&output::attachments_text(&list)),
        }
        Ok(ExitCode::SUCCESS)
    }
}

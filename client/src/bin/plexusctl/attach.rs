//! `plexusctl attach`: hot-plug one network into a running pod.

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
            })
            .await
            .map_err(api_error)?
            .into_inner();
        let list: Vec<v1::Attachment> = answer.attachment.into_iter().collect();
        match self.output.output {
            Format::Json => output::emit(&output::attachments_json(&list)),
            Format::Text => output::emit(&output::attachments_text(&list)),
        }
        Ok(ExitCode::SUCCESS)
    }
}

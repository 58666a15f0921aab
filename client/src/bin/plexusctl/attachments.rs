//! `plexusctl attachments`: list recorded attachments.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use plexus_client::output::{self, Format};
use plexus_client::v1;

use crate::{OutputArg, Target, api_error, client};

/// List recorded attachments, optionally of one pod or sandbox.
#[derive(Debug, Args)]
pub struct Cmd {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    output: OutputArg,
}

impl Cmd {
    pub async fn run(self, socket: &Path) -> anyhow::Result<ExitCode> {
        let target = self.target.selector()?;
        let mut client = client(socket).await?;
        let list = client
            .list_attachments(v1::ListAttachmentsRequest { target })
            .await
            .map_err(api_error)?
            .into_inner()
            .attachments;
        match self.output.output {
            Format::Json => output::emit(&output::attachments_json(&list)),
            Format::Text => output::emit(&output::attachments_text(&list)),
        }
        Ok(ExitCode::SUCCESS)
    }
}

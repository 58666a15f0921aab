//! `plexusctl reconcile`: tear down every recorded sandbox that is not live.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use plexus_client::v1;

use crate::{api_error, client};

/// Name the live sandbox ids; every other recorded sandbox is torn down.
#[derive(Debug, Args)]
pub struct Cmd {
    /// Sandbox ids that are alive (none: tear down everything recorded).
    live: Vec<String>,
}

impl Cmd {
    pub async fn run(self, socket: &Path) -> anyhow::Result<ExitCode> {
        let mut client = client(socket).await?;
        let answer = client
            .reconcile(v1::ReconcileRequest {
                live_sandbox_ids: self.live,
            })
            .await
            .map_err(api_error)?
            .into_inner();
        for id in &answer.torn_down {
            plexus_client::output::emit(&format!("torn down {id}"));
        }
        for failure in &answer.failed {
            eprintln!("failed {failure}");
        }
        Ok(if answer.failed.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}

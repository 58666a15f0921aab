//! `plexusctl reconcile`: tear down every recorded sandbox that is not live.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use plexus_client::v1;

use crate::{api_error, client};

/// Name the live sandbox ids; every other recorded sandbox is torn down.
#[derive(Debug, Args)]
pub struct Cmd {
    /// Sandbox ids that are alive (at least one, or `--all`).
    #[arg(value_parser = plexus_client::sandbox::parse)]
    live: Vec<String>,
    /// Tear down every recorded sandbox: required when no live id is given, so a forgotten
    /// argument cannot take the networks of every pod on the node.
    #[arg(long, conflicts_with = "live")]
    all: bool,
}

impl Cmd {
    pub async fn run(self, socket: &Path) -> anyhow::Result<ExitCode> {
        if self.live.is_empty() && !self.all {
            anyhow::bail!(
                "no live sandbox ids given: that would tear down every recorded sandbox; \
                 name the live ones, or pass --all to tear down everything"
            );
        }
        let mut client = client(socket).await?;
        let answer = client
            .reconcile(v1::ReconcileRequest {
                live_sandbox_ids: self.live,
                live_pods: Vec::new(),
                all_listed: self.all,
            })
            .await
            .map_err(api_error)?
            .into_inner();
        for id in &answer.torn_down {
            plexus_client::output::emit(&format!("torn down {id}"));
        }
        for kept in &answer.kept {
            plexus_client::output::emit(&format!("kept {kept}"));
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

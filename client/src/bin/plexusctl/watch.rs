//! `plexusctl watch`: print attachment events as they happen.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use plexus_client::output::{self, AttachmentJson, Format};
use plexus_client::v1;

use crate::{OutputArg, Target, api_error, client};

/// Stream attachment events (one line each) until interrupted.
#[derive(Debug, Args)]
pub struct Cmd {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    output: OutputArg,
}

fn kind_name(kind: i32) -> &'static str {
    match v1::watch_event::Kind::try_from(kind) {
        Ok(v1::watch_event::Kind::Attached) => "attached",
        Ok(v1::watch_event::Kind::Detached) => "detached",
        Ok(v1::watch_event::Kind::AttachFailed) => "attach-failed",
        Ok(v1::watch_event::Kind::DetachFailed) => "detach-failed",
        _ => "unknown",
    }
}

impl Cmd {
    pub async fn run(self, socket: &Path) -> anyhow::Result<ExitCode> {
        let target = self.target.selector()?;
        let mut client = client(socket).await?;
        let mut stream = client
            .watch(v1::WatchRequest { target })
            .await
            .map_err(api_error)?
            .into_inner();
        while let Some(event) = stream.message().await.map_err(api_error)? {
            let attachment = event.attachment.unwrap_or_default();
            match self.output.output {
                Format::Json => {
                    let line = serde_json::json!({
                        "kind": kind_name(event.kind),
                        "attachment": AttachmentJson::from(&attachment),
                        "message": event.message,
                        "unixNanos": event.unix_nanos,
                    });
                    output::emit(&line.to_string());
                }
                Format::Text => {
                    let pod = attachment
                        .pod
                        .as_ref()
                        .map(|p| format!("{}/{}", p.namespace, p.name))
                        .unwrap_or_default();
                    output::emit(&format!(
                        "{} {} {} {} {} {}",
                        kind_name(event.kind),
                        pod,
                        attachment.sandbox_id,
                        attachment.network,
                        attachment.interface,
                        event.message
                    ));
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

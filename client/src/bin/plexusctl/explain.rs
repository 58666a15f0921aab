//! `plexusctl explain`: the networks a pod would get. With `--networks` it runs offline by
//! executing `plexusd explain` (the server's own resolution); otherwise it asks plexusd.
//! `--pod` is a manifest file, or — when no such file exists — `namespace/name` of a pod that
//! plexusd (Kubernetes mode) reads from the API server with its NADs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use plexus_client::output::Format;
use plexus_client::v1;

use crate::{OutputArg, api_error, client};

/// Explain a pod manifest's networks.
#[derive(Debug, Args)]
pub struct Cmd {
    /// The pod manifest (YAML or JSON), or namespace/name of a pod plexusd reads from the
    /// API server (Kubernetes mode).
    #[arg(long)]
    pod: PathBuf,
    /// Offline: a directory of NAD manifests (no plexusd needed).
    #[arg(long)]
    networks: Option<PathBuf>,
    /// Offline: a plexusd config file for the resolver settings.
    #[arg(long, requires = "networks")]
    config: Option<PathBuf>,
    #[command(flatten)]
    output: OutputArg,
}

/// `plexusd` next to this executable, else the one on PATH.
fn plexusd() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("plexusd")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("plexusd"))
}

impl Cmd {
    pub async fn run(self, socket: &Path) -> anyhow::Result<ExitCode> {
        let format = match self.output.output {
            Format::Json => "json",
            Format::Text => "text",
        };
        if !self.pod.is_file() {
            let text = self.pod.to_string_lossy();
            let (namespace, name) =
                plexus_client::node_status::parse_pod_ref(&text).map_err(|e| {
                    anyhow::anyhow!(
                        "--pod {text:?} is neither a manifest file nor namespace/name of a pod: {e}"
                    )
                })?;
            if self.networks.is_some() {
                anyhow::bail!(
                    "--networks explains a manifest file offline; --pod {text:?} is not a file (without --networks, plexusd reads the pod from the API server)"
                );
            }
            let asked = format!(
                "no file {text:?} exists, so plexusd was asked for pod {namespace}/{name} in the cluster"
            );
            return self
                .ask(
                    socket,
                    v1::ExplainRequest {
                        pod: Some(v1::PodRef {
                            namespace,
                            name,
                            uid: String::new(),
                        }),
                        from_cluster: true,
                        ..Default::default()
                    },
                )
                .await
                .context(asked);
        }
        if let Some(networks) = &self.networks {
            let exe = plexusd();
            let mut cmd = tokio::process::Command::new(&exe);
            cmd.arg("explain")
                .arg("--pod")
                .arg(&self.pod)
                .arg("--networks")
                .arg(networks)
                .arg("--output")
                .arg(format);
            if let Some(config) = &self.config {
                cmd.arg("--config").arg(config);
            }
            let status = cmd
                .status()
                .await
                .with_context(|| format!("running {} explain", exe.display()))?;
            let code = status
                .code()
                .and_then(|c| u8::try_from(c).ok())
                .unwrap_or(1);
            return Ok(ExitCode::from(code));
        }
        let manifest = std::fs::read_to_string(&self.pod)
            .with_context(|| format!("reading {}", self.pod.display()))?;
        self.ask(
            socket,
            v1::ExplainRequest {
                pod_manifest: manifest,
                ..Default::default()
            },
        )
        .await
    }

    /// Asks plexusd and prints its explanation; exit 1 when resolution failed.
    async fn ask(&self, socket: &Path, request: v1::ExplainRequest) -> anyhow::Result<ExitCode> {
        let mut client = client(socket).await?;
        let answer = client
            .explain(request)
            .await
            .map_err(api_error)?
            .into_inner();
        match self.output.output {
            Format::Json => plexus_client::output::emit(&answer.json),
            Format::Text => plexus_client::output::emit(&answer.text),
        }
        // The server says whether resolution succeeded (the JSON then carries the error).
        Ok(if answer.ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}

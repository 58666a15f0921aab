//! plexusctl: command-line client of plexusd's node API.
//!
//! One file per subcommand. It forwards what the user typed and prints what plexusd answers;
//! it decides nothing (offline `explain` runs `plexusd explain`, the server code).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use plexus_client::output::{self, Format};
use plexus_client::v1;

mod attach;
mod attachments;
mod detach;
mod explain;
mod health;
mod reconcile;
mod status;
mod watch;

/// Command-line client of the plexus node service.
#[derive(Debug, Parser)]
#[command(name = "plexusctl", version)]
struct Cli {
    /// plexusd's unix socket.
    #[arg(long, global = true, env = "PLEXUS_SOCKET", default_value = plexus_client::DEFAULT_SOCKET)]
    socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List recorded attachments.
    Attachments(attachments::Cmd),
    /// Show the networks a pod would get (offline with --networks).
    Explain(explain::Cmd),
    /// Hot-plug a network into a running pod.
    Attach(attach::Cmd),
    /// Hot-unplug an interface from a running pod.
    Detach(detach::Cmd),
    /// Stream attachment events.
    Watch(watch::Cmd),
    /// Tear down every recorded sandbox not named as live.
    Reconcile(reconcile::Cmd),
    /// Show plexusd's state (mode, API server, NAD cache, publish backlog), or with --pod /
    /// --sandbox a pod's network-status annotation value (Multus's shape).
    Status(status::Cmd),
    /// Check that plexusd serves (gRPC health); the readiness probe.
    Health(health::Cmd),
}

/// Selects a pod by `--pod ns/name` or `--sandbox ID`.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The pod, as namespace/name.
    #[arg(long, conflicts_with = "sandbox")]
    pod: Option<String>,
    /// The runtime sandbox id.
    #[arg(long, value_parser = plexus_client::sandbox::parse)]
    sandbox: Option<String>,
}

impl Target {
    /// The wire selector; `None` when neither flag was given.
    fn selector(&self) -> anyhow::Result<Option<v1::PodSelector>> {
        if let Some(id) = &self.sandbox {
            return Ok(Some(v1::PodSelector {
                sandbox_id: id.clone(),
                pod: None,
            }));
        }
        let Some(pod) = &self.pod else {
            return Ok(None);
        };
        let (namespace, name) = pod
            .split_once('/')
            .filter(|(ns, n)| !ns.is_empty() && !n.is_empty() && !n.contains('/'))
            .ok_or_else(|| anyhow::anyhow!("--pod {pod:?}: write namespace/name"))?;
        Ok(Some(v1::PodSelector {
            sandbox_id: String::new(),
            pod: Some(v1::PodRef {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                uid: String::new(),
            }),
        }))
    }

    /// The selector, required.
    fn required(&self) -> anyhow::Result<v1::PodSelector> {
        self.selector()?
            .ok_or_else(|| anyhow::anyhow!("select the pod with --pod ns/name or --sandbox ID"))
    }
}

/// `--output json|text`.
#[derive(Debug, Clone, Args)]
pub struct OutputArg {
    /// Output format: json or text.
    #[arg(long, short, default_value = "text")]
    output: Format,
}

/// Connects to plexusd.
async fn client(
    socket: &std::path::Path,
) -> anyhow::Result<v1::node_client::NodeClient<tonic::transport::Channel>> {
    Ok(plexus_client::connect(socket).await?)
}

/// A gRPC status as the user should read it.
fn api_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", status.code(), status.message())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Attachments(cmd) => cmd.run(&cli.socket).await,
        Command::Explain(cmd) => cmd.run(&cli.socket).await,
        Command::Attach(cmd) => cmd.run(&cli.socket).await,
        Command::Detach(cmd) => cmd.run(&cli.socket).await,
        Command::Watch(cmd) => cmd.run(&cli.socket).await,
        Command::Reconcile(cmd) => cmd.run(&cli.socket).await,
        Command::Status(cmd) => cmd.run(&cli.socket).await,
        Command::Health(cmd) => cmd.run(&cli.socket).await,
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("plexusctl: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints the outcome of an Attach/Detach that patched the pod's networks annotation.
fn edited(annotation: &str, verb: &str, format: Format) -> anyhow::Result<ExitCode> {
    match format {
        Format::Json => output::emit(
            &serde_json::json!({ "annotation": { "k8s.v1.cni.cncf.io/networks": annotation } })
                .to_string(),
        ),
        Format::Text => output::emit(&format!(
            "k8s.v1.cni.cncf.io/networks is now {annotation:?}; plexusd's hot-plug controller {verb} it (follow with plexusctl watch)"
        )),
    }
    Ok(ExitCode::SUCCESS)
}

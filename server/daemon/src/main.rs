//! plexusd: the plexus node service. Parses flags, loads the config, starts telemetry and
//! runs the library (`plexus_server::daemon`); `plexusd explain` resolves offline,
//! `check-config` and `install-cni` are one-shot tools (`offline.rs`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use plexus_server::config::{Config, LogFormat};
use plexus_server::daemon;

mod offline;

/// The plexus node service.
#[derive(Debug, Parser)]
#[command(name = "plexusd", version)]
struct Cli {
    /// Config file (YAML); without it the embedded standalone config is used.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// How long to wait for another plexusd holding the state directory to exit (e.g. 30s;
    /// 0 exits at once naming it). Overrides the config's `lockWait`.
    #[arg(long, value_parser = lock_wait)]
    lock_wait: Option<std::time::Duration>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Resolve a pod manifest offline (no socket, no root) and print the plan.
    Explain {
        /// The pod manifest (YAML or JSON).
        #[arg(long)]
        pod: PathBuf,
        /// Directory of NAD manifests.
        #[arg(long)]
        networks: PathBuf,
        /// Output format: json or text.
        #[arg(long, short, default_value = "text", value_parser = ["json", "text"])]
        output: String,
    },
    /// Load --config with the daemon's strict parser and exit: 0 when valid, 2 when not.
    CheckConfig,
    /// Install the CNI shim into a directory atomically (the DaemonSet's init step).
    InstallCni {
        /// The binary to install (plexus-cni in the image).
        #[arg(long)]
        source: PathBuf,
        /// The host's CNI bin directory; the binary keeps its file name there.
        #[arg(long)]
        dest_dir: PathBuf,
    },
    /// The CNI shim path.
    Cni {
        #[command(subcommand)]
        command: CniCommand,
    },
}

#[derive(Debug, Subcommand)]
enum CniCommand {
    /// Remove the generated 00-plexus.conflist from the runtime's CNI conf dir (a stopping
    /// plexusd leaves it, so pods retry instead of starting without their networks).
    Uninstall,
}

fn cni_uninstall(config: Option<&Path>) -> ExitCode {
    let outcome = load(config).and_then(|c| {
        plexus_server::cni::install::uninstall(&c.cni.conf_dir)
            .map(|removed| (removed, c.cni.conf_dir))
            .map_err(|e| plexus_server::Error::InvalidRequest {
                message: e.to_string(),
            })
    });
    match outcome {
        Ok((removed, dir)) => {
            let what = if removed { "removed" } else { "no" };
            emit(&format!("{what} 00-plexus.conflist in {}", dir.display()));
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("plexusd cni uninstall: {err}");
            ExitCode::FAILURE
        }
    }
}

fn lock_wait(text: &str) -> Result<std::time::Duration, String> {
    plexus_server::config::parse_lock_wait(text).map_err(|e| e.to_string())
}

fn load(path: Option<&Path>) -> plexus_server::Result<Config> {
    match path {
        Some(p) => Config::load(p),
        None => Config::standalone(&std::env::current_dir().unwrap_or_else(|_| "/".into())),
    }
}

/// Prints to stdout; a closed pipe (`| head`) is not an error.
fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", text.trim_end()).and_then(|()| out.flush());
}

fn explain(config: Option<&Path>, pod: &Path, networks: &Path, json: bool) -> ExitCode {
    let outcome = load(config).and_then(|c| daemon::explain_offline(pod, networks, &c));
    match outcome {
        Ok(e) => {
            emit(if json { &e.json } else { &e.text });
            if e.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(err) if json => {
            emit(&format!("{:#}", daemon::explain_failure_json(&err)));
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("plexusd explain: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config, niced: Option<std::io::Result<i32>>) -> anyhow::Result<()> {
    let _telemetry = plexus_telemetry::init(plexus_telemetry::TelemetryConfig {
        service_name: "plexusd".to_owned(),
        log_format: match config.telemetry.log_format {
            LogFormat::Human => plexus_telemetry::LogFormat::Human,
            LogFormat::Json => plexus_telemetry::LogFormat::Json,
        },
        log_filter: config.telemetry.log_level.clone(),
        otlp_endpoint: config.telemetry.otlp_endpoint.clone(),
    })
    .context("starting telemetry")?;
    match daemon::raise_fd_limit() {
        Ok((old, new)) if old != new => tracing::info!(old, new, "open-file limit raised"),
        Ok((_, limit)) => tracing::debug!(limit, "open-file limit"),
        Err(err) => tracing::warn!(error = %err, "cannot raise the open-file limit"),
    }
    match niced {
        Some(Ok(before)) => tracing::info!(nice = config.nice, before, "CPU niceness set"),
        Some(Err(err)) => tracing::warn!(nice = config.nice, error = %err,
            "cannot set plexusd's CPU niceness: give it CAP_SYS_NICE, or set concurrency.nice: 0; \
             pod starts may then time out when many start at once"),
        None => {}
    }
    let mut registry = plexus_telemetry::Registry::default();
    let metrics = plexus_telemetry::Metrics::new(&mut registry);
    let readiness = plexus_telemetry::Readiness::new();
    let _metrics_server = match config.telemetry.metrics_address {
        Some(addr) => Some(
            plexus_telemetry::serve_metrics(addr, Arc::new(registry), readiness.clone())
                .await
                .with_context(|| format!("serving metrics on {addr}"))?,
        ),
        None => None,
    };
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler cannot fail in a fresh runtime");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down");
    };
    daemon::run_ready(
        &config,
        Some(metrics),
        move || readiness.set_ready(),
        shutdown,
    )
    .await?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Explain {
        pod,
        networks,
        output,
    }) = &cli.command
    {
        return explain(cli.config.as_deref(), pod, networks, output == "json");
    }
    match &cli.command {
        Some(Command::CheckConfig) => {
            let Some(path) = cli.config.as_deref() else {
                eprintln!("plexusd check-config: name the file with --config");
                return ExitCode::from(2);
            };
            return match offline::check_config(path) {
                Ok(summary) => {
                    emit(&summary);
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("plexusd: {err}");
                    ExitCode::from(2)
                }
            };
        }
        Some(Command::InstallCni { source, dest_dir }) => {
            return match offline::install_cni(source, dest_dir) {
                Ok(target) => {
                    emit(&format!("installed {}", target.display()));
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("plexusd install-cni: {err:#}");
                    ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    if let Some(Command::Cni {
        command: CniCommand::Uninstall,
    }) = &cli.command
    {
        return cni_uninstall(cli.config.as_deref());
    }
    let mut config = match load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(err) => {
            eprintln!("plexusd: {err}");
            return ExitCode::from(2);
        }
    };
    if let Some(wait) = cli.lock_wait {
        config.lock_wait = wait;
    }
    // Before the runtime starts its threads, so that they all inherit it.
    let niced = (config.nice != 0).then(|| daemon::set_nice(config.nice));
    daemon::limit_malloc_arenas();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("plexusd: starting the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config, niced)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("plexusd: {err:#}");
            ExitCode::FAILURE
        }
    }
}

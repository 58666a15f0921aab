//! `plexus-nri`: parses flags, sets up logging and runs the plugin until a signal.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use plexus_nri::config::{self, Config};

/// containerd NRI plugin forwarding pod-sandbox events to plexusd.
#[derive(Debug, Parser)]
#[command(name = "plexus-nri", version)]
struct Args {
    /// The runtime's NRI socket.
    #[arg(long, default_value = config::DEFAULT_NRI_SOCKET, env = "PLEXUS_NRI_SOCKET")]
    nri_socket: PathBuf,
    /// plexusd's node API socket.
    #[arg(long, default_value = config::DEFAULT_PLEXUSD_SOCKET, env = "PLEXUS_SOCKET")]
    plexusd_socket: PathBuf,
    /// Deadline for one pod event (e.g. 1500ms, 1.5s); lowered to 75% of the runtime's
    /// request timeout when the runtime reports one.
    #[arg(long, default_value = "1500ms", value_parser = parse_duration)]
    deadline: Duration,
    /// Two-digit plugin index; orders plugins inside the runtime.
    #[arg(long, default_value = "10")]
    plugin_idx: String,
    /// Plugin name as registered with the runtime.
    #[arg(long, default_value = "plexus")]
    plugin_name: String,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// Validate the arguments, print the settings and exit without connecting (deployment
    /// tooling and the Helm chart's tests use it).
    #[arg(long)]
    check: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    config::parse_duration(value).map_err(|err| err.to_string())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let check = args.check;
    if !check {
        init_logging(args.log_format);
    }
    let config = Config {
        nri_socket: args.nri_socket,
        plexusd_socket: args.plexusd_socket,
        deadline: args.deadline,
        plugin_idx: args.plugin_idx,
        plugin_name: args.plugin_name,
        ..Config::default()
    };
    let summary = format!(
        "nri_socket={} plexusd_socket={} deadline={:?} plugin={}-{}",
        config.nri_socket.display(),
        config.plexusd_socket.display(),
        config.deadline,
        config.plugin_idx,
        config.plugin_name
    );
    let plugin = plexus_nri::Plugin::new(config).context("invalid configuration")?;
    if check {
        println!("valid: {summary}");
        return Ok(());
    }
    tracing::info!(config = %summary, "starting plexus-nri");
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("install SIGTERM handler")?;
    tokio::select! {
        () = plugin.run() => {}
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; exiting"),
        _ = sigterm.recv() => tracing::info!("terminated; exiting"),
    }
    Ok(())
}

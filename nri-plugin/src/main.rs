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
    /// Log format (`human` writes colours only to a terminal).
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// Log level or filter (`info`, `debug`, `plexus_nri=debug,info`; Multus's `verbose`
    /// means `info`); `RUST_LOG` wins when set.
    #[arg(long, default_value = "info", env = "PLEXUS_NRI_LOG_LEVEL")]
    log_level: String,
    /// OTLP/gRPC collector (`http://host:4317`) to export each pod event's span to, the
    /// root of the trace plexusd continues; the same endpoint as plexusd's `otlpEndpoint`.
    #[arg(long, env = "PLEXUS_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
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

fn telemetry(args: &Args) -> plexus_telemetry::TelemetryConfig {
    plexus_telemetry::TelemetryConfig {
        service_name: "plexus-nri".to_owned(),
        log_format: match args.log_format {
            LogFormat::Human => plexus_telemetry::LogFormat::Human,
            LogFormat::Json => plexus_telemetry::LogFormat::Json,
        },
        log_filter: args.log_level.clone(),
        otlp_endpoint: args.otlp_endpoint.clone().filter(|e| !e.is_empty()),
    }
}

/// One thread: plexus-nri only forwards, a few hundred microseconds of work per event, and
/// on one thread the tasks of an event (the runtime's connection, the handler, the call to
/// plexusd) hand work to each other without waking another thread for it. Concurrent
/// events still overlap while they wait for plexusd.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let check = args.check;
    let telemetry = telemetry(&args);
    if let Some(endpoint) = &telemetry.otlp_endpoint {
        plexus_telemetry::check_otlp_endpoint(endpoint).context("invalid --otlp-endpoint")?;
    }
    let guard = match check {
        true => None,
        false => Some(plexus_telemetry::init(telemetry).context("set up logging and tracing")?),
    };
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
    if let Some(guard) = guard {
        // The last events' spans; nothing useful can be done if the collector is gone.
        let _ = guard.shutdown().await;
    }
    Ok(())
}

//! `plexus-demo`: two pods on an IoT macvlan network with static IPs, through a private
//! containerd with NRI, plexusd and plexus-nri. Needs root (`make demo` as root).

use std::path::PathBuf;

use clap::Parser;

/// Runs the plexus demo against a private containerd.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Leave containerd, plexusd, plexus-nri and the pods running, and print how to look.
    #[arg(long, conflicts_with = "cleanup")]
    keep: bool,
    /// Remove what an earlier `--keep` run left (its run dir, printed by that run).
    #[arg(long, value_name = "RUN_DIR")]
    cleanup: Option<PathBuf>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!(
            "plexus-demo needs root (containerd, network namespaces): run `make demo` as root"
        );
    }
    if let Some(dir) = args.cleanup {
        plexus_integration::demo::cleanup(&dir)?;
        println!("removed {}", dir.display());
        return Ok(());
    }
    // On Ctrl-C the demo future is dropped, and with it every guard: pods, daemons,
    // namespaces and the run dir are removed (the daemons run in their own process
    // groups, so the terminal's SIGINT reaches only this process).
    tokio::select! {
        result = plexus_integration::demo::run(args.keep) => result?,
        _ = tokio::signal::ctrl_c() => eprintln!("interrupted: cleaning up"),
    }
    Ok(())
}

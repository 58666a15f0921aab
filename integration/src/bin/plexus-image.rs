//! `plexus-image`: writes the plexus OCI image archive (`make image`) from built binaries,
//! without any registry. Load it with `ctr -n k8s.io images import <archive>` or
//! `docker load -i <archive>`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use plexus_integration::release_image;

/// Build the plexus image archive from the binaries in --bin-dir.
#[derive(Debug, Parser)]
#[command(name = "plexus-image")]
struct Args {
    /// Directory holding plexusd, plexus-nri, plexusctl and plexus-cni.
    #[arg(long)]
    bin_dir: PathBuf,
    /// The plexus-cni to ship instead of --bin-dir's; it must be statically linked (it runs on
    /// the hosts, against their own loader and C library). `make image` builds it so.
    #[arg(long)]
    shim: Option<PathBuf>,
    /// The archive to write.
    #[arg(long)]
    output: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let work = tempfile::tempdir().context("creating a work directory")?;
    let built = release_image::build(
        &args.bin_dir,
        args.shim.as_deref(),
        work.path(),
        &args.output,
    )
    .with_context(|| format!("building the image from {}", args.bin_dir.display()))?;
    println!(
        "{} {} ({})",
        built.archive.display(),
        release_image::image_name(),
        built.manifest.digest
    );
    for file in &built.files {
        println!("  {file}");
    }
    Ok(())
}

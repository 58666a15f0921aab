//! The plexus image (`make image`): built twice from the same binaries it is byte-identical;
//! the private containerd imports it under the chart's image name; and every binary runs
//! from the image's own root filesystem (so the libraries `ldd` found are all there).

use plexus_integration::containerd::{Containerd, Options};
use plexus_integration::process::run;
use plexus_integration::release_image::{self, BINARIES};
use plexus_integration::require_privileged;

#[tokio::test]
async fn image_is_reproducible_imports_into_containerd_and_its_binaries_run() {
    if !require_privileged() {
        return;
    }
    let bin_dir = plexus_integration::plexus::bin_dir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let first = release_image::build(
        &bin_dir,
        None,
        &work.path().join("a"),
        &work.path().join("a.tar"),
    )
    .unwrap_or_else(|e| panic!("building the image: {e}"));
    let second = release_image::build(
        &bin_dir,
        None,
        &work.path().join("b"),
        &work.path().join("b.tar"),
    )
    .unwrap();
    assert_eq!(first.manifest, second.manifest, "two builds differ");
    assert_eq!(
        std::fs::read(&first.archive).unwrap(),
        std::fs::read(&second.archive).unwrap(),
        "the archives differ byte for byte"
    );
    std::fs::remove_file(&second.archive).unwrap();
    for name in BINARIES {
        assert!(
            first.files.contains(&format!("/usr/local/bin/{name}")),
            "{name} missing: {:?}",
            first.files
        );
    }
    assert!(
        first.files.iter().any(|f| f.contains("libc.so")),
        "{:?}",
        first.files
    );

    // Both loaders' entry points are in the archive.
    let listing = run("tar", ["-tf", first.archive.to_str().unwrap()]).unwrap();
    for entry in ["index.json", "oci-layout", "manifest.json"] {
        assert!(listing.lines().any(|l| l == entry), "{entry}: {listing}");
    }

    let containerd = Containerd::start(Options::default()).await.unwrap();
    let sock = containerd.paths().socket.display().to_string();
    let image = release_image::image_name();
    plexus_integration::image::import(&containerd.paths().socket, &first.archive).unwrap();
    let images = run("ctr", ["-a", &sock, "-n", "k8s.io", "images", "ls", "-q"]).unwrap();
    assert!(
        images.lines().any(|l| l == image),
        "{image} not in {images}"
    );

    // Each binary starts inside the image (its own libc and loader, nothing from the host),
    // and the DaemonSet's init step works there. plexus-cni links exactly what plexusctl
    // links (same crate) and reads stdin, which `ctr run` never closes, so it is not run.
    for (i, (cmd, expect)) in [
        (vec!["/usr/local/bin/plexusd", "--version"], "plexusd"),
        (vec!["/usr/local/bin/plexusctl", "--version"], "plexusctl"),
        (vec!["/usr/local/bin/plexus-nri", "--check"], "valid:"),
        (
            vec![
                "/usr/local/bin/plexusd",
                "install-cni",
                "--source=/usr/local/bin/plexus-cni",
                "--dest-dir=/tmp",
            ],
            "installed /tmp/plexus-cni",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("plexus-image-{}-{i}", std::process::id());
        // A hung container must fail the test, not hang it.
        let mut args = vec!["60", "ctr", "-a", &sock, "-n", "k8s.io", "run", "--rm"];
        args.extend([image.as_str(), id.as_str()]);
        args.extend(cmd.iter().copied());
        let out = run("timeout", &args).unwrap_or_else(|e| panic!("{cmd:?} in the image: {e}"));
        assert!(out.contains(expect), "{cmd:?}: {out}");
    }
}

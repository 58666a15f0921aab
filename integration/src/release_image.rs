//! The plexus image without a registry (`make image`): one uncompressed layer holding
//! plexusd, plexus-nri, plexusctl and plexus-cni under `/usr/local/bin` (debug info
//! stripped) plus exactly the shared libraries and the dynamic loader `ldd` names for
//! them, at the paths the binaries ask for. The archive is an OCI image layout
//! (`index.json`, `oci-layout`, `blobs/sha256/`) with a docker-archive `manifest.json`
//! beside it pointing at the same blobs, so both `ctr images import` and `docker load`
//! take it. Everything is built from the given bytes with sorted names, owner 0 and
//! mtime 0: the same binaries always give the same digests.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::error::{Error, Result};
use crate::image::{Blob, deterministic_tar, oci_arch};
use crate::process::run;

/// The binaries the image carries, all under `/usr/local/bin`.
pub const BINARIES: [&str; 4] = ["plexusd", "plexus-nri", "plexusctl", "plexus-cni"];

/// Where the binaries live in the image (the chart's container commands use it).
pub const BIN_DIR: &str = "usr/local/bin";

/// The image name: the chart's default repository, tagged with the workspace version
/// (which is the chart's `appVersion`).
pub fn image_name() -> String {
    format!("ghcr.io/plexus-cni/plexus:{}", env!("CARGO_PKG_VERSION"))
}

/// What [`build`] made.
#[derive(Debug, Clone)]
pub struct Built {
    /// The archive.
    pub archive: PathBuf,
    /// The image manifest's descriptor (its digest is the image's identity).
    pub manifest: Blob,
    /// Paths inside the image, sorted (binaries and libraries).
    pub files: Vec<String>,
}

/// The libraries and loader `ldd` lists for `binary`, as absolute paths (no vdso).
pub fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let text = run("ldd", [binary])?;
    parse_ldd(&text)
}

/// Parses `ldd` output: `name => /path (0x..)`, `/path (0x..)`, `linux-vdso.so.1 (0x..)`.
/// A `not found` library is an error naming it; a static binary has none.
pub fn parse_ldd(text: &str) -> Result<Vec<PathBuf>> {
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("statically linked") || line.starts_with("linux-vdso") {
            continue;
        }
        if line.contains("not found") {
            return Err(Error::Unexpected {
                what: "ldd output",
                detail: format!("a library is missing on this machine: {line}"),
            });
        }
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.trim(),
            None => line,
        };
        let path = path.split(" (").next().unwrap_or("").trim();
        if !path.starts_with('/') {
            return Err(Error::Unexpected {
                what: "ldd output",
                detail: format!("no absolute library path in {line:?}"),
            });
        }
        libs.push(PathBuf::from(path));
    }
    Ok(libs)
}

/// The image config: the entrypoint is plexusd; the chart sets each container's command.
pub fn config_json(layer: &Blob) -> Vec<u8> {
    let v = json!({
        "architecture": oci_arch(),
        "os": "linux",
        "config": {
            "Entrypoint": ["/usr/local/bin/plexusd"],
            "Env": ["PATH=/usr/local/bin"],
            "Labels": {
                "org.opencontainers.image.title": "plexus",
                "org.opencontainers.image.version": env!("CARGO_PKG_VERSION"),
                "org.opencontainers.image.source": "https://github.com/plexus-cni/plexus",
            },
        },
        "rootfs": { "type": "layers", "diff_ids": [layer.digest] },
        "history": [{ "created_by": "plexus make image", "created": "1970-01-01T00:00:00Z" }],
        "created": "1970-01-01T00:00:00Z",
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

/// docker-archive `manifest.json` for the same blobs.
pub fn docker_manifest_json(config: &Blob, layer: &Blob, name: &str) -> Vec<u8> {
    let v = json!([{
        "Config": format!("blobs/sha256/{}", config.hex()),
        "RepoTags": [name],
        "Layers": [format!("blobs/sha256/{}", layer.hex())],
    }]);
    serde_json::to_vec(&v).unwrap_or_default()
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(Error::io("create", parent))?;
    }
    // The file's bytes (a symlink is followed): the image has no host layout to point into.
    std::fs::copy(from, to).map_err(Error::io("copy", from))?;
    Ok(())
}

/// Builds the image from the binaries in `bin_dir` under `work` and writes the archive to
/// `archive`.
pub fn build(bin_dir: &Path, work: &Path, archive: &Path) -> Result<Built> {
    let rootfs = work.join("rootfs");
    if rootfs.exists() {
        std::fs::remove_dir_all(&rootfs).map_err(Error::io("remove", &rootfs))?;
    }
    let mut files = Vec::new();
    let mut libs = std::collections::BTreeSet::new();
    for name in BINARIES {
        let src = bin_dir.join(name);
        if !src.is_file() {
            return Err(Error::MissingProgram {
                program: name.into(),
                searched: format!("{} (build the binaries first)", bin_dir.display()),
            });
        }
        let dest = rootfs.join(BIN_DIR).join(name);
        copy(&src, &dest)?;
        run(
            "strip",
            [std::ffi::OsStr::new("--strip-debug"), dest.as_os_str()],
        )?;
        files.push(format!("/{BIN_DIR}/{name}"));
        libs.extend(shared_libraries(&src)?);
    }
    for lib in &libs {
        let rel = lib.strip_prefix("/").unwrap_or(lib);
        copy(lib, &rootfs.join(rel))?;
        files.push(lib.display().to_string());
    }
    // Directories plexusd and the tools expect (tmp for CNI plugins' temporary files).
    for dir in ["tmp", "etc", "run", "var/lib"] {
        let d = rootfs.join(dir);
        std::fs::create_dir_all(&d).map_err(Error::io("create", &d))?;
    }
    // `/var/run` is `/run`, as on the hosts: runtimes hand out netns paths under
    // `/var/run/netns` while the chart may mount the directory at `/run/netns`.
    let var_run = rootfs.join("var/run");
    std::os::unix::fs::symlink("../run", &var_run).map_err(Error::io("link", &var_run))?;
    let mut top: Vec<String> = std::fs::read_dir(&rootfs)
        .map_err(Error::io("read", &rootfs))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    top.sort();
    let layer_tar = work.join("layer.tar");
    let entries: Vec<&str> = top.iter().map(String::as_str).collect();
    deterministic_tar(&rootfs, &layer_tar, &entries)?;
    let layer_bytes = std::fs::read(&layer_tar).map_err(Error::io("read", &layer_tar))?;
    let layer = Blob::of(&layer_bytes);
    drop(layer_bytes);

    let layout = work.join("layout");
    if layout.exists() {
        std::fs::remove_dir_all(&layout).map_err(Error::io("remove", &layout))?;
    }
    let blobs = layout.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs).map_err(Error::io("create", &blobs))?;
    std::fs::rename(&layer_tar, blobs.join(layer.hex())).map_err(Error::io("move", &layer_tar))?;
    let write = |path: PathBuf, bytes: &[u8]| -> Result<()> {
        std::fs::write(&path, bytes).map_err(Error::io("write", path))
    };
    let config_bytes = config_json(&layer);
    let config = Blob::of(&config_bytes);
    write(blobs.join(config.hex()), &config_bytes)?;
    let manifest_bytes = crate::image::manifest_json(&config, &layer);
    let manifest = Blob::of(&manifest_bytes);
    write(blobs.join(manifest.hex()), &manifest_bytes)?;
    let name = image_name();
    write(
        layout.join("index.json"),
        &crate::image::index_json(&manifest, &name),
    )?;
    write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    write(
        layout.join("manifest.json"),
        &docker_manifest_json(&config, &layer, &name),
    )?;
    deterministic_tar(
        &layout,
        archive,
        &["blobs", "index.json", "manifest.json", "oci-layout"],
    )?;
    std::fs::remove_dir_all(&layout).map_err(Error::io("remove", &layout))?;
    std::fs::remove_dir_all(&rootfs).map_err(Error::io("remove", &rootfs))?;
    files.sort();
    Ok(Built {
        archive: archive.to_path_buf(),
        manifest,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_libraries_and_loader_without_vdso() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f31)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f31)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f31)\n";
        let libs = parse_ldd(text).unwrap();
        assert_eq!(
            libs,
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
            .map(PathBuf::from)
        );
        assert!(parse_ldd("\tnot a dynamic executable\n").is_err());
        assert!(parse_ldd("\tstatically linked\n").unwrap().is_empty());
        let err = parse_ldd("\tlibfoo.so.1 => not found\n").unwrap_err();
        assert!(err.to_string().contains("libfoo.so.1"), "{err}");
    }

    #[test]
    fn docker_manifest_points_at_the_oci_blobs() {
        let (config, layer) = (Blob::of(b"c"), Blob::of(b"l"));
        let v: serde_json::Value =
            serde_json::from_slice(&docker_manifest_json(&config, &layer, "x/y:1")).unwrap();
        assert_eq!(v[0]["Config"], format!("blobs/sha256/{}", config.hex()));
        assert_eq!(v[0]["Layers"][0], format!("blobs/sha256/{}", layer.hex()));
        assert_eq!(v[0]["RepoTags"][0], "x/y:1");
    }
}

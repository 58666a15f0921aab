//! The pause image without a registry: an OCI image layout tarball with one uncompressed
//! layer holding a static busybox (`/bin/busybox`, `bin/sleep` linked to it) and the
//! Entrypoint `["/bin/sleep","infinity"]`, named [`PAUSE_IMAGE`] for `ctr images import`.
//!
//! Digests are sha256 over the exact bytes written; tarballs are made with GNU `tar`
//! (sorted names, owner 0, mtime 0) so the same busybox always gives the same digests.

use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::process::run;

/// The image name containerd's `sandbox_image` points at.
pub const PAUSE_IMAGE: &str = "localhost/pause:test";

/// Where Debian's `busybox-static` installs the static binary.
pub const BUSYBOX: &str = "/bin/busybox";

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// A content descriptor: digest (`sha256:<hex>`) and size of a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
}

impl Blob {
    /// Describes `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            digest: format!("sha256:{}", hex::encode(Sha256::digest(bytes))),
            size: bytes.len() as u64,
        }
    }

    /// The digest without its `sha256:` prefix (the blob's file name in a layout).
    pub fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }
}

/// The OCI architecture name of this machine.
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    }
}

/// The image config JSON for a single layer with diff id `layer`.
pub fn config_json(layer: &Blob) -> Vec<u8> {
    let v = json!({
        "architecture": oci_arch(),
        "os": "linux",
        "config": {
            "Entrypoint": ["/bin/sleep", "infinity"],
            "Env": ["PATH=/bin"],
        },
        "rootfs": { "type": "layers", "diff_ids": [layer.digest] },
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The image manifest JSON referencing `config` and one uncompressed `layer`.
pub fn manifest_json(config: &Blob, layer: &Blob) -> Vec<u8> {
    let v = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": { "mediaType": CONFIG_TYPE, "digest": config.digest, "size": config.size },
        "layers": [{ "mediaType": LAYER_TYPE, "digest": layer.digest, "size": layer.size }],
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The `index.json` naming `manifest` as `name`.
pub fn index_json(manifest: &Blob, name: &str) -> Vec<u8> {
    let tag = name.rsplit(':').next().unwrap_or(name);
    let v = json!({
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [{
            "mediaType": MANIFEST_TYPE,
            "digest": manifest.digest,
            "size": manifest.size,
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(Error::io("write", path))
}

/// Tars `entries` of `dir` into `out` with sorted names, owner 0 and mtime 0.
pub(crate) fn deterministic_tar(dir: &Path, out: &Path, entries: &[&str]) -> Result<()> {
    let mut args: Vec<String> = [
        "--sort=name",
        "--owner=0",
        "--group=0",
        "--numeric-owner",
        "--mtime=@0",
        "--format=posix",
        "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
        "-C",
    ]
    .map(String::from)
    .into();
    args.push(dir.display().to_string());
    args.push("-cf".into());
    args.push(out.display().to_string());
    args.extend(entries.iter().map(|e| e.to_string()));
    run("tar", &args)?;
    Ok(())
}

/// Builds the pause image layout under `work` and returns the path of the tarball.
pub fn build_pause_tarball(work: &Path) -> Result<PathBuf> {
    let rootfs = work.join("rootfs");
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).map_err(Error::io("create", &bin))?;
    std::fs::copy(BUSYBOX, bin.join("busybox")).map_err(Error::io("copy", BUSYBOX))?;
    for applet in ["sleep", "sh"] {
        let link = bin.join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", &link).map_err(Error::io("symlink", &link))?;
        }
    }
    let layer_tar = work.join("layer.tar");
    deterministic_tar(&rootfs, &layer_tar, &["bin"])?;
    let layer_bytes = std::fs::read(&layer_tar).map_err(Error::io("read", &layer_tar))?;
    let layer = Blob::of(&layer_bytes);

    let layout = work.join("layout");
    let blobs = layout.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs).map_err(Error::io("create", &blobs))?;
    std::fs::rename(&layer_tar, blobs.join(layer.hex())).map_err(Error::io("move", &layer_tar))?;

    let config_bytes = config_json(&layer);
    let config = Blob::of(&config_bytes);
    write(&blobs.join(config.hex()), &config_bytes)?;
    let manifest_bytes = manifest_json(&config, &layer);
    let manifest = Blob::of(&manifest_bytes);
    write(&blobs.join(manifest.hex()), &manifest_bytes)?;
    write(
        &layout.join("index.json"),
        &index_json(&manifest, PAUSE_IMAGE),
    )?;
    write(
        &layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;

    let tarball = work.join("pause.tar");
    deterministic_tar(&layout, &tarball, &["blobs", "index.json", "oci-layout"])?;
    Ok(tarball)
}

/// Imports `tarball` into containerd's `k8s.io` namespace through its socket.
pub fn import(containerd_socket: &Path, tarball: &Path) -> Result<()> {
    let sock = containerd_socket.display().to_string();
    let tar = tarball.display().to_string();
    run(
        "ctr",
        ["-a", &sock, "-n", "k8s.io", "images", "import", &tar],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_digest_is_sha256_of_the_bytes() {
        let b = Blob::of(b"abc");
        assert_eq!(
            b.digest,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(b.size, 3);
    }

    #[test]
    fn manifest_and_index_reference_their_blobs() {
        let layer = Blob::of(b"layer");
        let config_bytes = config_json(&layer);
        let config: serde_json::Value = serde_json::from_slice(&config_bytes).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], layer.digest.as_str());
        assert_eq!(config["config"]["Entrypoint"][1], "infinity");

        let cfg = Blob::of(&config_bytes);
        let manifest: serde_json::Value =
            serde_json::from_slice(&manifest_json(&cfg, &layer)).unwrap();
        assert_eq!(manifest["config"]["digest"], cfg.digest.as_str());
        assert_eq!(manifest["layers"][0]["size"], 5);

        let m = Blob::of(b"m");
        let index: serde_json::Value =
            serde_json::from_slice(&index_json(&m, PAUSE_IMAGE)).unwrap();
        let ann = &index["manifests"][0]["annotations"];
        assert_eq!(ann["io.containerd.image.name"], PAUSE_IMAGE);
        assert_eq!(ann["org.opencontainers.image.ref.name"], "test");
    }
}

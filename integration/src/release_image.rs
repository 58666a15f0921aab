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

/// The flags `make image` builds the shipped `plexus-cni` with: statically linked and not
/// position-independent (no loader, no relocations to apply at each start).
pub const STATIC_SHIM_RUSTFLAGS: &str = "-C target-feature=+crt-static -C relocation-model=static";

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

/// Whether the ELF executable at `path` names a program interpreter (the dynamic loader,
/// `PT_INTERP`): a statically linked one does not, and runs on any Linux host of its
/// architecture. Reads the ELF header and program headers only.
pub fn needs_loader(path: &Path) -> Result<bool> {
    use std::os::unix::fs::FileExt;
    let bad = |detail: String| Error::Unexpected {
        what: "executable",
        detail: format!("{}: {detail}", path.display()),
    };
    let file = std::fs::File::open(path).map_err(Error::io("open", path))?;
    let mut header = [0u8; 64];
    file.read_exact_at(&mut header, 0)
        .map_err(|e| bad(format!("no ELF header ({e})")))?;
    // 64-bit little-endian ELF: what the image's binaries are built as.
    if header[..4] != *b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return Err(bad("not a 64-bit little-endian ELF file".into()));
    }
    let u16_at = |at: usize| u16::from_le_bytes([header[at], header[at + 1]]) as usize;
    let phoff = u64::from_le_bytes(header[0x20..0x28].try_into().unwrap_or_default());
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    // A real executable has a few dozen headers of 56 bytes; anything past 64 KiB is not one.
    if phentsize < 4 || phentsize * phnum > 64 * 1024 {
        return Err(bad(format!(
            "{phnum} program headers of {phentsize} bytes (at most 64 KiB of headers of at \
             least 4 bytes are read)"
        )));
    }
    let mut headers = vec![0u8; phentsize * phnum];
    file.read_exact_at(&mut headers, phoff)
        .map_err(|e| bad(format!("program headers cut short ({e})")))?;
    const PT_INTERP: u32 = 3;
    Ok(headers
        .chunks_exact(phentsize)
        .any(|ph| u32::from_le_bytes([ph[0], ph[1], ph[2], ph[3]]) == PT_INTERP))
}

/// Builds the image from the binaries in `bin_dir` under `work` and writes the archive to
/// `archive`. `shim`, when given, is the `plexus-cni` to ship instead of `bin_dir`'s: it must
/// be statically linked, because `install-cni` copies it onto the host, where the runtime
/// runs it against the host's own loader and C library (a Talos node has no glibc; older
/// distributions have an older one). `make image` builds it so.
pub fn build(bin_dir: &Path, shim: Option<&Path>, work: &Path, archive: &Path) -> Result<Built> {
    let rootfs = work.join("rootfs");
    if rootfs.exists() {
        std::fs::remove_dir_all(&rootfs).map_err(Error::io("remove", &rootfs))?;
    }
    let mut files = Vec::new();
    let mut libs = std::collections::BTreeSet::new();
    for name in BINARIES {
        let src = match shim {
            Some(shim) if name == "plexus-cni" => shim.to_path_buf(),
            _ => bin_dir.join(name),
        };
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
        let dynamic = needs_loader(&src)?;
        if shim.is_some() && name == "plexus-cni" && dynamic {
            return Err(Error::Unexpected {
                what: "shim",
                detail: format!(
                    "{} is dynamically linked: it would run on the hosts against their own \
                     loader and C library; build it static (make image does: RUSTFLAGS=\"{}\" \
                     cargo build --release -p plexus-client --bin plexus-cni --target <host>)",
                    src.display(),
                    STATIC_SHIM_RUSTFLAGS
                ),
            });
        }
        if dynamic {
            libs.extend(shared_libraries(&src)?);
        }
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

    /// A minimal 64-bit little-endian ELF file: its header and one program header of type
    /// `p_type` (3 is PT_INTERP, 1 PT_LOAD).
    fn elf_with(p_type: u32) -> Vec<u8> {
        let mut f = vec![0u8; 64 + 56];
        f[..4].copy_from_slice(b"\x7fELF");
        (f[4], f[5], f[6]) = (2, 1, 1);
        f[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        f[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        f[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        f[64..68].copy_from_slice(&p_type.to_le_bytes());
        f
    }

    #[test]
    fn a_loader_is_found_in_a_dynamic_executable_and_not_in_a_static_one() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        assert!(needs_loader(&write("dynamic", &elf_with(3))).unwrap());
        assert!(!needs_loader(&write("static", &elf_with(1))).unwrap());
        // This test's own executable is linked dynamically, as cargo builds it.
        assert!(needs_loader(&std::env::current_exe().unwrap()).unwrap());
        // Not an ELF file, and one whose program headers lie past its end: named errors.
        let err = needs_loader(&write("script", b"#!/bin/sh\nexit 0\n")).unwrap_err();
        assert!(err.to_string().contains("script"), "{err}");
        let mut short = elf_with(3);
        short.truncate(80);
        let err = needs_loader(&write("short", &short)).unwrap_err();
        assert!(err.to_string().contains("cut short"), "{err}");
        // 65535 headers of 65535 bytes would be 4 GiB to read: refused before reading.
        let mut huge = elf_with(3);
        huge[0x36..0x3a].copy_from_slice(&[0xff; 4]);
        let err = needs_loader(&write("huge", &huge)).unwrap_err();
        assert!(err.to_string().contains("at most 64 KiB"), "{err}");
    }

    #[test]
    fn make_image_builds_the_shim_with_the_flags_this_module_names() {
        // The Makefile's static-shim target and the hint in `build`'s refusal must agree.
        let makefile = concat!(env!("CARGO_MANIFEST_DIR"), "/../Makefile");
        let text = std::fs::read_to_string(makefile).unwrap();
        assert!(
            text.contains(&format!("RUSTFLAGS=\"{STATIC_SHIM_RUSTFLAGS}\"")),
            "{makefile} does not build plexus-cni with RUSTFLAGS=\"{STATIC_SHIM_RUSTFLAGS}\""
        );
    }

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

//! Installing plexus as the runtime's CNI network (`cni.install: auto`): the generated
//! `00-plexus.conflist` kept in step with the primary config, the `plexus-cni` binary in
//! the CNI bin dir, and `plexusd cni uninstall`.
//!
//! Every write is atomic: a hidden temp file beside the target (libcni never loads a name
//! starting with `.` without a config extension), fsync, rename over the target, fsync of
//! the directory. The runtime therefore sees the old file or the new one, never an empty
//! or half-written one, and the rename is an `IN_MOVED_TO` (fsnotify Create) on the real
//! name that containerd's CNI conf watcher reloads on. A stopping plexusd leaves the file:
//! pods then fail and retry instead of starting without their networks (Multus Q7); only
//! [`uninstall`] removes it.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::conflist::{self, OWN_FILE, Settings as ShimSettings};

/// How often the watcher compares the primary with the generated file.
pub const WATCH_PERIOD: Duration = Duration::from_millis(500);

/// Where and what to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The runtime's CNI conf dir, where `00-plexus.conflist` goes (Multus `cniConfigDir`).
    pub conf_dir: PathBuf,
    /// Where the primary config is looked for (Multus `multusAutoconfigDir`; default
    /// `conf_dir`).
    pub primary_dir: PathBuf,
    /// The CNI bin dir the shim binary is installed into; `None`: not installed.
    pub bin_dir: Option<PathBuf>,
    /// The `plexus-cni` binary to install.
    pub shim_binary: PathBuf,
    /// What the generated config tells the shim.
    pub shim: ShimSettings,
}

/// What one sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Synced {
    /// The file was written (created or changed) for this primary file.
    Written {
        /// The wrapped primary's file name.
        primary: String,
    },
    /// The file already had the right content.
    Unchanged,
    /// No usable primary: nothing written (an existing file is left as it is).
    NoPrimary {
        /// Why.
        reason: String,
    },
}

/// Errors of installing.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A file or directory operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> InstallError {
    let path = path.to_path_buf();
    move |source| InstallError::Io { op, path, source }
}

/// Writes `bytes` to `dir/name` atomically with `mode` (temp + fsync + rename + dir fsync).
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<(), InstallError> {
    let target = dir.join(name);
    let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&temp).map_err(io("creating", &temp))?;
        f.write_all(bytes).map_err(io("writing", &temp))?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io("setting the mode of", &temp))?;
        f.sync_all().map_err(io("syncing", &temp))?;
        std::fs::rename(&temp, &target).map_err(io("renaming into", &target))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing directory", dir))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Regenerates `00-plexus.conflist` from the current primary when it differs.
pub fn sync_once(settings: &Settings) -> Result<Synced, InstallError> {
    let (primary, generated) = match generate_current(settings)? {
        Ok(found) => found,
        Err(reason) => return Ok(Synced::NoPrimary { reason }),
    };
    let own = settings.conf_dir.join(OWN_FILE);
    if std::fs::read(&own).ok().as_deref() == Some(generated.as_slice()) {
        return Ok(Synced::Unchanged);
    }
    write_atomic(&settings.conf_dir, OWN_FILE, &generated, 0o644)?;
    Ok(Synced::Written { primary })
}

/// The primary network plexus wraps now (the generated conflist's `delegate`), read from
/// the primary dir as [`sync_once`] does, so it is known before the first sync wrote it.
pub fn wrapped_primary(settings: &Settings) -> Result<serde_json::Value, String> {
    let (_, generated) = generate_current(settings).map_err(|e| e.to_string())??;
    let doc: serde_json::Value = serde_json::from_slice(&generated).map_err(|e| e.to_string())?;
    Ok(doc["plugins"][0][super::request::DELEGATE_KEY].clone())
}

/// The current primary's file name and the conflist generated for it, or why there is
/// no usable primary.
fn generate_current(
    settings: &Settings,
) -> Result<Result<(String, Vec<u8>), String>, InstallError> {
    let names: Vec<String> = std::fs::read_dir(&settings.primary_dir)
        .map_err(io("listing", &settings.primary_dir))?
        .filter_map(|e| e.ok())
        // Followed like libcni does: a symlinked primary counts, a directory does not.
        .filter(|e| std::fs::metadata(e.path()).is_ok_and(|m| m.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    let Some(primary) = conflist::select_primary(names.iter().map(String::as_str)) else {
        return Ok(Err(format!(
            "no CNI config (*.conf, *.conflist, *.json) besides plexus's own in {}",
            settings.primary_dir.display()
        )));
    };
    let path = settings.primary_dir.join(primary);
    // Replaced between the listing and the read: the next sync sees the new one.
    let bytes = match read_bounded(&path) {
        Ok(bytes) => bytes,
        Err(e) => return Ok(Err(e.to_string())),
    };
    Ok(conflist::generate(primary, &bytes, &settings.shim)
        .map(|generated| (primary.to_owned(), generated))
        .map_err(|e| e.to_string()))
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, InstallError> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(io("opening", path))?;
    let mut bytes = Vec::new();
    f.take(conflist::MAX_PRIMARY + 1)
        .read_to_end(&mut bytes)
        .map_err(io("reading", path))?;
    if bytes.len() as u64 > conflist::MAX_PRIMARY {
        return Err(InstallError::Io {
            op: "reading",
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("larger than {} bytes", conflist::MAX_PRIMARY),
            ),
        });
    }
    Ok(bytes)
}

/// Installs the shim binary into the bin dir atomically, unless it is already there with
/// the same content (a running runtime may be executing the old one: the rename leaves
/// that process its file, so there is never "text file busy").
pub fn install_binary(source: &Path, bin_dir: &Path) -> Result<bool, InstallError> {
    let bytes = std::fs::read(source).map_err(io("reading the shim binary", source))?;
    let target = bin_dir.join(conflist::SHIM_TYPE);
    if std::fs::read(&target).ok().as_deref() == Some(bytes.as_slice()) {
        return Ok(false);
    }
    write_atomic(bin_dir, conflist::SHIM_TYPE, &bytes, 0o755)?;
    Ok(true)
}

/// Removes the generated config (`plexusd cni uninstall`); absent is fine.
pub fn uninstall(conf_dir: &Path) -> Result<bool, InstallError> {
    let own = conf_dir.join(OWN_FILE);
    match std::fs::remove_file(&own) {
        Ok(()) => {
            std::fs::File::open(conf_dir)
                .and_then(|d| d.sync_all())
                .map_err(io("syncing directory", conf_dir))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io("removing", &own)(e)),
    }
}

/// Installs the shim binary, then keeps `00-plexus.conflist` in step with the primary:
/// regenerated when the primary appears, changes or is replaced, re-created with a warning
/// when something removed it. Stops when the task is dropped/aborted; leaves the file.
pub fn spawn_watcher(settings: Settings) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Some(bin_dir) = &settings.bin_dir {
            let (src, dir) = (settings.shim_binary.clone(), bin_dir.clone());
            match tokio::task::spawn_blocking(move || install_binary(&src, &dir)).await {
                Ok(Ok(true)) => {
                    tracing::info!(bin_dir = %bin_dir.display(), "installed plexus-cni")
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "installing plexus-cni"),
                Err(e) => tracing::error!(error = %e, "installing plexus-cni"),
            }
        }
        let own = settings.conf_dir.join(OWN_FILE);
        let mut written_once = false;
        let mut last_reason = String::new();
        let mut tick = tokio::time::interval(WATCH_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let vanished = written_once && !own.exists();
            let s = settings.clone();
            let synced = match tokio::task::spawn_blocking(move || sync_once(&s)).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "CNI config sync task failed");
                    continue;
                }
            };
            match synced {
                Ok(Synced::Written { primary }) => {
                    if vanished {
                        tracing::warn!(file = %own.display(), primary,
                            "re-created the CNI config: something removed it (e.g. Cilium's cni.exclusive or another meta-plugin renaming foreign configs)");
                    } else {
                        tracing::info!(file = %own.display(), primary, "wrote the CNI config wrapping the primary network");
                    }
                    written_once = true;
                    last_reason.clear();
                }
                Ok(Synced::Unchanged) => written_once = true,
                Ok(Synced::NoPrimary { reason }) => {
                    if reason != last_reason {
                        tracing::warn!(%reason, "not writing the CNI config: no usable primary network config yet");
                        last_reason = reason;
                    }
                }
                Err(e) => tracing::error!(error = %e, "writing the CNI config"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIMARY: &str = r#"{"cniVersion":"1.0.0","name":"cbr0","plugins":[{"type":"bridge"}]}"#;

    fn settings(dir: &Path) -> Settings {
        Settings {
            conf_dir: dir.to_path_buf(),
            primary_dir: dir.to_path_buf(),
            bin_dir: None,
            shim_binary: PathBuf::new(),
            shim: ShimSettings {
                socket: "/run/plexus/plexus.sock".into(),
                spool_dir: "/var/lib/plexus/cni-spool".into(),
                readiness_file: None,
            },
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn nothing_is_written_without_a_usable_primary() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        assert!(matches!(sync_once(&s).unwrap(), Synced::NoPrimary { .. }));
        std::fs::write(dir.path().join("10-x.conflist"), "{\"cniVersion\":").unwrap();
        match sync_once(&s).unwrap() {
            Synced::NoPrimary { reason } => assert!(reason.contains("10-x.conflist"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            names(dir.path()),
            ["10-x.conflist"],
            "never an empty or partial file"
        );
    }

    #[test]
    fn the_file_follows_the_primary_and_comes_back_when_removed() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        std::fs::write(dir.path().join("10-bridge.conflist"), PRIMARY).unwrap();
        std::fs::create_dir(dir.path().join("01-dir.conf")).unwrap();
        assert_eq!(
            sync_once(&s).unwrap(),
            Synced::Written {
                primary: "10-bridge.conflist".into()
            }
        );
        std::fs::remove_dir(dir.path().join("01-dir.conf")).unwrap();
        assert_eq!(sync_once(&s).unwrap(), Synced::Unchanged);
        assert_eq!(
            names(dir.path()),
            [OWN_FILE, "10-bridge.conflist"],
            "no temp file left"
        );
        let own = dir.path().join(OWN_FILE);
        let mode = std::fs::metadata(&own).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        // The primary rewritten (Cilium/flannel at start): the file follows.
        std::fs::write(
            dir.path().join("10-bridge.conflist"),
            PRIMARY.replace("1.0.0", "0.4.0"),
        )
        .unwrap();
        assert!(matches!(sync_once(&s).unwrap(), Synced::Written { .. }));
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&own).unwrap()).unwrap();
        assert_eq!(v["cniVersion"], "0.4.0");
        // A new, earlier primary appears: it is wrapped instead.
        std::fs::write(
            dir.path().join("05-cilium.conflist"),
            PRIMARY.replace("cbr0", "cilium"),
        )
        .unwrap();
        assert_eq!(
            sync_once(&s).unwrap(),
            Synced::Written {
                primary: "05-cilium.conflist".into()
            }
        );
        // A symlinked primary counts (libcni follows links).
        let target = dir.path().join("elsewhere.txt");
        std::fs::write(&target, PRIMARY.replace("cbr0", "linked")).unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("01-linked.conflist")).unwrap();
        assert_eq!(
            sync_once(&s).unwrap(),
            Synced::Written {
                primary: "01-linked.conflist".into()
            }
        );
        std::fs::remove_file(dir.path().join("01-linked.conflist")).unwrap();
        std::fs::remove_file(&target).unwrap();
        assert!(matches!(sync_once(&s).unwrap(), Synced::Written { .. }));
        // Removed by someone else: re-created.
        std::fs::remove_file(&own).unwrap();
        assert!(matches!(sync_once(&s).unwrap(), Synced::Written { .. }));
        assert!(own.exists());
        assert!(uninstall(dir.path()).unwrap());
        assert!(!uninstall(dir.path()).unwrap());
        assert!(!own.exists());
    }

    #[test]
    fn the_shim_binary_is_replaced_by_rename_not_rewritten_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("plexus-cni.new");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(&src, b"v1").unwrap();
        assert!(install_binary(&src, &bin).unwrap());
        let target = bin.join(conflist::SHIM_TYPE);
        let old_inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&target).unwrap());
        // A process executing the old binary keeps its inode: a rename gives a new one.
        let held = std::fs::File::open(&target).unwrap();
        assert!(
            !install_binary(&src, &bin).unwrap(),
            "same content: untouched"
        );
        std::fs::write(&src, b"v2").unwrap();
        assert!(install_binary(&src, &bin).unwrap());
        let meta = std::fs::metadata(&target).unwrap();
        assert_ne!(std::os::unix::fs::MetadataExt::ino(&meta), old_inode);
        assert_eq!(meta.permissions().mode() & 0o777, 0o755);
        assert_eq!(std::fs::read(&target).unwrap(), b"v2");
        drop(held);
        assert_eq!(names(&bin), [conflist::SHIM_TYPE]);
    }

    /// Polls `probe` until it holds (the watcher works on its own period); panics after 10s.
    async fn until(what: &str, probe: impl Fn() -> bool) {
        let end = tokio::time::Instant::now() + Duration::from_secs(10);
        while !probe() {
            assert!(
                tokio::time::Instant::now() < end,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn the_watcher_follows_the_primary_recreates_its_file_and_leaves_it_when_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let own = dir.path().join(OWN_FILE);
        let version = |own: &Path| {
            std::fs::read(own)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["cniVersion"].as_str().map(str::to_owned))
        };
        let task = spawn_watcher(settings(dir.path()));
        std::fs::write(dir.path().join("10-bridge.conflist"), PRIMARY).unwrap();
        until("the file for a primary that appeared", || own.exists()).await;
        write_atomic(
            dir.path(),
            "10-bridge.conflist",
            PRIMARY.replace("1.0.0", "0.4.0").as_bytes(),
            0o644,
        )
        .unwrap();
        until("the file to follow the rewritten primary", || {
            version(&own).as_deref() == Some("0.4.0")
        })
        .await;
        std::fs::remove_file(&own).unwrap();
        until("the removed file to be re-created", || own.exists()).await;
        task.abort();
        let _ = task.await;
        assert!(own.exists(), "a stopping plexusd leaves the file");
    }
}

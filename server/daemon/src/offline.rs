//! plexusd's one-shot subcommands, which run and exit without serving: `check-config`
//! (the strict config parser, for deployment tooling and the chart's tests) and
//! `install-cni` (the shim installer of the DaemonSet's init step). They touch nothing but
//! the files named on the command line.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use plexus_server::config::Config;

/// Loads `path` with the daemon's strict parser and describes what it configures.
pub fn check_config(path: &Path) -> plexus_server::Result<String> {
    let config = Config::load(path)?;
    Ok(format!(
        "{}: valid; socket {}, state {}, NAD source {:?}, primary mode {:?}",
        path.display(),
        config.socket.display(),
        config.state_dir.display(),
        config.nad_source,
        config.primary_mode
    ))
}

/// Installs `source` into `dest_dir` under its own file name, atomically: the bytes go to a
/// hidden file beside the target, are fsynced, made executable and renamed over the target,
/// then the directory is fsynced. A runtime executing the previous binary keeps its inode
/// (no "text file busy", Multus #1221) and never sees a partial file. Returns the target.
pub fn install_cni(source: &Path, dest_dir: &Path) -> anyhow::Result<PathBuf> {
    let meta = fs::metadata(source)
        .with_context(|| format!("--source {}: cannot read it", source.display()))?;
    if !meta.is_file() {
        bail!("--source {}: not a regular file", source.display());
    }
    let name = source
        .file_name()
        .with_context(|| format!("--source {}: no file name", source.display()))?;
    let dir_meta = fs::metadata(dest_dir).with_context(|| {
        format!(
            "--dest-dir {}: not there (mount the host's CNI bin dir)",
            dest_dir.display()
        )
    })?;
    if !dir_meta.is_dir() {
        bail!("--dest-dir {}: not a directory", dest_dir.display());
    }
    let target = dest_dir.join(name);
    let temp = dest_dir.join(format!(
        ".{}.plexus-install-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = write_then_rename(source, &temp, &target);
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.with_context(|| format!("installing {} as {}", source.display(), target.display()))?;
    File::open(dest_dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("fsync of {}", dest_dir.display()))?;
    Ok(target)
}

fn write_then_rename(source: &Path, temp: &Path, target: &Path) -> io::Result<()> {
    let mut input = File::open(source)?;
    let mut output = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(temp)?;
    io::copy(&mut input, &mut output)?;
    output.flush()?;
    // The mode given to open is filtered by the umask; the shim must be executable by all.
    output.set_permissions(fs::Permissions::from_mode(0o755))?;
    output.sync_all()?;
    drop(output);
    fs::rename(temp, target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_replaces_the_target_atomically_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("plexus-cni");
        fs::write(&src, b"new shim").unwrap();
        let dest = dir.path().join("bin");
        fs::create_dir(&dest).unwrap();
        fs::write(dest.join("plexus-cni"), b"old").unwrap();
        // A reader holding the old file keeps reading the old bytes.
        let old = File::open(dest.join("plexus-cni")).unwrap();

        let target = install_cni(&src, &dest).unwrap();

        assert_eq!(target, dest.join("plexus-cni"));
        assert_eq!(fs::read(&target).unwrap(), b"new shim");
        let mode = fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755);
        assert_eq!(io::read_to_string(old).unwrap(), "old");
        let names: Vec<_> = fs::read_dir(&dest)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("plexus-cni")]);
    }

    #[test]
    fn install_names_a_missing_destination_and_a_bad_source() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("plexus-cni");
        fs::write(&src, b"x").unwrap();
        let err = install_cni(&src, &dir.path().join("absent")).unwrap_err();
        assert!(format!("{err:#}").contains("--dest-dir"), "{err:#}");
        let err = install_cni(dir.path(), dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("not a regular file"), "{err:#}");
    }

    #[test]
    fn check_config_rejects_an_unknown_key_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plexusd.yaml");
        fs::write(
            &path,
            "stateDir: /var/lib/plexus\nnamespaceIsolaton: true\n",
        )
        .unwrap();
        let err = check_config(&path).unwrap_err().to_string();
        assert!(err.contains("namespaceIsolaton"), "{err}");
        fs::write(&path, "stateDir: /var/lib/plexus\n").unwrap();
        assert!(check_config(&path).unwrap().contains("valid"));
    }
}

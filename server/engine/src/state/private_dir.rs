//! The state directory's mode, and files kept without fsync.

use std::fs;
use std::path::Path;

use super::{next_seq, temp_name};

/// Creates `dir` (and missing parents) mode 0700. An existing directory keeps its mode
/// (it may be shared on purpose, and tightening the wrong one would break the node); a
/// warning names it when others can read or enter it.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(dir = %dir.display(), mode = format!("{mode:o}"),
            "the state directory is readable by other users; it should be mode 0700 (chmod 700 it)");
    }
    Ok(())
}

/// Replaces `path` with `bytes` through a temp file in `dir`, without fsync: for a file
/// that may be lost or stale after a power loss, but that readers must never see half
/// written.
pub(crate) fn replace_file(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(temp_name(name, std::process::id(), next_seq()));
    let written = fs::write(&tmp, bytes).and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

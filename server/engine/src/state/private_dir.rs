//! The state directory's mode.

use std::fs;
use std::path::Path;

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

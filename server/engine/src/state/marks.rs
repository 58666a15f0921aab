//! The teardown mark of a runtime's teardown, as a file of its own.
//!
//! A runtime's teardown (NRI StopPodSandbox, the shim's CNI DEL) must mark the record
//! `tearing_down` before it releases anything, so that a crash of plexusd after a release
//! is finished by recovery instead of kept as a done record (whose leases recovery would
//! write back). Rewriting the record costs a file fsync before the answer (about 0.5 ms on
//! the test machine, a third of plexusd's share of a pod's stop). The mark is instead an
//! empty file next to the record, `<sandbox id>.tearing-down`, created without an fsync:
//!
//! - reading the record applies it ([`super::SandboxRecord::mark_for_teardown`]: the flag,
//!   and every attachment plexus removes `Removing`), exactly what the rewritten record
//!   would have said;
//! - a crash of plexusd loses nothing: the file exists before the answer;
//! - a power loss may lose it. The sandbox is gone after the reboot either way (the runtime
//!   removes its netns right after the answer); the record without its mark is kept by
//!   recovery and torn down by the sweep, which releases whatever of its leases came back
//!   (releases are not fsynced either, `ipam::durable`): recovery writes back the leases
//!   the record names, and the sweep releases them. Should another pod have been given one
//!   of those addresses before the power loss, that lease is the other pod's and recovery
//!   refuses to write it back (it names both); both sandboxes are gone after the reboot and
//!   the sweep tears both down. An empty file cannot be torn.
//!
//! A mark lives exactly as long as its record's teardown: the record's removal removes it
//! after the record, and any write of a record that is not tearing down removes a mark left
//! from before (a new sandbox taking over an id); start-up removes marks whose record is
//! gone (a power loss between the two removals).

use std::fs::{self, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The mark's file name after the sandbox id.
const SUFFIX: &str = ".tearing-down";

pub(super) fn path(dir: &Path, sandbox_id: &str) -> PathBuf {
    dir.join(format!("{sandbox_id}{SUFFIX}"))
}

/// Creates the mark (no fsync; see the module docs).
pub(super) fn set(dir: &Path, sandbox_id: &str) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path(dir, sandbox_id))
        .map(drop)
}

/// Whether the mark is there (a regular file; anything else at that name is not plexus's
/// and is ignored).
pub(super) fn is_set(dir: &Path, sandbox_id: &str) -> io::Result<bool> {
    match fs::symlink_metadata(path(dir, sandbox_id)) {
        Ok(meta) => Ok(meta.file_type().is_file()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes the mark; absent is fine.
pub(super) fn clear(dir: &Path, sandbox_id: &str) -> io::Result<()> {
    match fs::remove_file(path(dir, sandbox_id)) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes the marks in `dir` whose record (`<id>.json`) is gone; returns their paths.
pub(super) fn remove_orphans(dir: &Path) -> io::Result<Vec<PathBuf>> {
    super::files::remove_matching(dir, |name| {
        name.strip_suffix(SUFFIX).is_some_and(|id| {
            !id.is_empty() && !id.starts_with('.') && !dir.join(format!("{id}.json")).exists()
        })
    })
}

//! Durable file writes: fsyncs (counted for the benchmarks, shared with the leases and the
//! CNI cache), the records' temp-file-and-rename write, and the sweep of temp files a
//! killed process left.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static FSYNCS: AtomicU64 = AtomicU64::new(0);
pub(super) static RECORD_WRITES: AtomicU64 = AtomicU64::new(0);

/// fsyncs made by this process's engine so far (records, leases, CNI cache, directories):
/// what a pod's setup costs in durable writes (printed by the benchmarks).
pub fn fsyncs() -> u64 {
    FSYNCS.load(Ordering::Relaxed)
}

/// Sandbox-record writes made by this process so far (a setup makes two: intent, done).
pub fn record_writes() -> u64 {
    RECORD_WRITES.load(Ordering::Relaxed)
}

/// `file.sync_all()`, counted in [`fsyncs`].
pub(crate) fn fsync(file: &File) -> std::io::Result<()> {
    FSYNCS.fetch_add(1, Ordering::Relaxed);
    file.sync_all()
}

/// Writes `bytes` to `path` via a temp file in `dir`, fsynced before it is renamed over
/// `path`: a reader, and the disk after a power loss, sees the old or the new file whole.
/// The rename survives a crash of this process; a power loss only once the caller has
/// fsynced `dir` ([`sync_dir`]).
pub(super) fn write_renamed(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("record");
    let tmp = dir.join(temp_name(name, std::process::id(), next_seq()));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    let res = file.write_all(bytes).and_then(|()| fsync(&file));
    drop(file);
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

fn next_seq() -> u64 {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// Fsyncs a directory, so a file created or renamed in it survives a power loss.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fsync(&File::open(dir)?)
}

/// The name of [`write_renamed`]'s temp file for the file `name`: `.{name}.{pid}.{seq}.tmp`.
pub(crate) fn temp_name(name: &str, pid: u32, seq: u64) -> String {
    format!(".{name}.{pid}.{seq}.tmp")
}

/// True when `name` is one of [`write_renamed`]'s temp files (see [`temp_name`]): a leading
/// dot, a non-empty name, a decimal pid and sequence number, and `.tmp`. Nothing else
/// matches, so a sweep by this rule never touches another program's files.
pub fn is_temp_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
        return false;
    };
    let mut parts = rest.rsplitn(3, '.');
    let decimal =
        |s: Option<&str>| s.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
    decimal(parts.next()) && decimal(parts.next()) && parts.next().is_some_and(|n| !n.is_empty())
}

/// Removes the temp files [`write_renamed`] left in `dir` when a process was killed between
/// write and rename (regular files named by [`is_temp_name`], nothing else), and returns
/// their paths. Only safe while nobody writes there: at start, under the state-dir lock.
pub fn remove_stale_temp_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    remove_matching(dir, is_temp_name)
}

/// Removes the regular files directly in `dir` whose name satisfies `matches` (a missing
/// `dir` holds none); returns their paths.
pub(crate) fn remove_matching(
    dir: &Path,
    matches: impl Fn(&str) -> bool,
) -> std::io::Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if !name.to_str().is_some_and(&matches) || !entry.file_type()?.is_file() {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => removed.push(entry.path()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if !removed.is_empty() {
        sync_dir(dir)?;
    }
    removed.sort();
    Ok(removed)
}

//! Parsed records kept in memory, each with the identity of the file it came from (inode,
//! size, mtime), so a listing (the sweep, the gauge, `ListSandboxes`, reconcile) or a
//! lookup costs one `stat` per record instead of a read and a parse. The disk stays the
//! truth: a file replaced, truncated or removed by anyone is seen at once (its stamp
//! differs), and a record that cannot be read is never cached.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use plexus_core::id::SandboxId;

use super::SandboxRecord;

/// What tells one version of a record file from another: every write renames a new
/// inode over the record; an edit in place changes size or mtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl Stamp {
    /// The stamp of a file's metadata.
    pub fn of(meta: &Metadata) -> Stamp {
        Stamp {
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

/// Parsed records by sandbox id, with the stamp of the file each was parsed from.
#[derive(Debug, Default)]
pub(super) struct Index {
    records: Mutex<HashMap<SandboxId, (Stamp, SandboxRecord)>>,
    /// Lookups that found no cached record of the file's version (each is a parse).
    misses: AtomicU64,
}

impl Index {
    fn lock(&self) -> MutexGuard<'_, HashMap<SandboxId, (Stamp, SandboxRecord)>> {
        // A panic while holding the lock left at worst one entry stale, and every entry
        // is checked against its file before use: keep going.
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached record of `id`, if it was parsed from the file version `stamp`.
    pub fn get(&self, id: &SandboxId, stamp: Stamp) -> Option<SandboxRecord> {
        match self.lock().get(id) {
            Some((s, record)) if *s == stamp => Some(record.clone()),
            _ => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// How many lookups had to parse the file.
    #[cfg(test)]
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// `record` is what the file version `stamp` holds.
    pub fn put(&self, record: &SandboxRecord, stamp: Stamp) {
        self.lock()
            .insert(record.sandbox_id.clone(), (stamp, record.clone()));
    }

    /// `id` has no (readable) record file.
    pub fn forget(&self, id: &SandboxId) {
        self.lock().remove(id);
    }
}

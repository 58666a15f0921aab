//! When a host-local lease change reaches the disk.
//!
//! A sandbox's record is the durable copy of its leases; lease files follow it:
//!
//! - taking a lease writes its file without an fsync. The record's done write names the
//!   address, and recovery writes a lost lease back from it (`LeaseStore::restore`); a
//!   lease no durable record names belongs to a setup that recovery undoes anyway.
//! - releasing a lease removes its file without an fsync. The directory is fsynced by the
//!   next write or removal of that sandbox's record ([`sync_releases`]), before the record
//!   can stop naming the lease: a power loss can bring a released lease back only while a
//!   record still names it, so its teardown runs again and releases it again.
//!
//! A pod's setup thus costs its two record writes, and its teardown's answer one, however
//! many leases it holds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};

/// Lease directories with releases not yet fsynced, by the container id that held them.
static UNSYNCED: LazyLock<Mutex<BTreeMap<String, BTreeSet<PathBuf>>>> =
    LazyLock::new(Default::default);

/// Notes that a lease of `container_id` was removed from `dir` without an fsync.
pub(crate) fn released(container_id: &str, dir: &Path) {
    let mut unsynced = UNSYNCED.lock().unwrap_or_else(|e| e.into_inner());
    unsynced
        .entry(container_id.to_owned())
        .or_default()
        .insert(dir.to_path_buf());
}

/// Fsyncs every lease directory `container_id` released from since the last call. Runs
/// before each write or removal of that sandbox's record. A directory whose fsync fails
/// stays listed, and the error stops the record write.
pub(crate) fn sync_releases(container_id: &str) -> std::io::Result<()> {
    sync_releases_of(&[container_id])
}

/// [`sync_releases`] for several sandboxes at once (the reaper's batch of record
/// removals): each directory is fsynced once, however many of them released from it. On a
/// failure every one of them stays listed, so the next call syncs again.
pub(crate) fn sync_releases_of(container_ids: &[&str]) -> std::io::Result<()> {
    let taken: Vec<(String, BTreeSet<PathBuf>)> = {
        let mut unsynced = UNSYNCED.lock().unwrap_or_else(|e| e.into_inner());
        container_ids
            .iter()
            .filter_map(|id| unsynced.remove_entry(*id))
            .collect()
    };
    let dirs: BTreeSet<PathBuf> = taken.iter().flat_map(|(_, d)| d.iter().cloned()).collect();
    for dir in &dirs {
        match crate::state::sync_dir(dir) {
            Ok(()) => {}
            // A directory removed since holds no lease to bring back.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                let mut unsynced = UNSYNCED.lock().unwrap_or_else(|e| e.into_inner());
                for (id, dirs) in taken {
                    unsynced.entry(id).or_default().extend(dirs);
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(id: &str) -> Option<BTreeSet<PathBuf>> {
        UNSYNCED.lock().unwrap().get(id).cloned()
    }

    #[test]
    fn a_release_waits_for_its_own_sandboxs_next_record_write() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        released("durable-test-a", a.path());
        released("durable-test-a", a.path());
        released("durable-test-a", b.path());
        released("durable-test-b", b.path());
        let both = BTreeSet::from([a.path().to_path_buf(), b.path().to_path_buf()]);
        assert_eq!(listed("durable-test-a"), Some(both), "each directory once");
        sync_releases("durable-test-a").unwrap();
        assert_eq!(listed("durable-test-a"), None);
        assert!(
            listed("durable-test-b").is_some(),
            "another sandbox's release waits"
        );
        sync_releases("durable-test-b").unwrap();
        // A directory removed since is nothing to sync.
        let gone = a.path().join("removed");
        released("durable-test-b", &gone);
        sync_releases("durable-test-b").unwrap();
        assert_eq!(listed("durable-test-b"), None);
    }

    #[test]
    fn a_directory_that_cannot_be_synced_stays_listed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "").unwrap();
        // A path under a regular file does not open (ENOTDIR).
        let bad = file.join("x");
        released("durable-test-c", &bad);
        assert!(sync_releases("durable-test-c").is_err());
        assert_eq!(listed("durable-test-c"), Some(BTreeSet::from([bad])));
        UNSYNCED.lock().unwrap().remove("durable-test-c");
    }

    #[test]
    fn a_batch_syncs_for_all_its_sandboxes_or_keeps_them_all_listed() {
        let dir = tempfile::tempdir().unwrap();
        released("durable-test-d", dir.path());
        released("durable-test-e", dir.path());
        released("durable-test-f", dir.path());
        sync_releases_of(&["durable-test-d", "durable-test-e", "durable-test-unknown"]).unwrap();
        assert_eq!(listed("durable-test-d"), None);
        assert_eq!(listed("durable-test-e"), None);
        assert!(listed("durable-test-f").is_some(), "not in the batch");
        let bad = dir.path().join("file");
        std::fs::write(&bad, "").unwrap();
        let bad = bad.join("x");
        released("durable-test-g", &bad);
        let err = sync_releases_of(&["durable-test-f", "durable-test-g"]);
        assert!(err.is_err());
        let only = |p: &Path| Some(BTreeSet::from([p.to_path_buf()]));
        assert_eq!(
            listed("durable-test-f"),
            only(dir.path()),
            "kept for the next call"
        );
        assert_eq!(listed("durable-test-g"), only(&bad));
        UNSYNCED.lock().unwrap().remove("durable-test-f");
        UNSYNCED.lock().unwrap().remove("durable-test-g");
    }
}

//! The state directory's fsync after a *done* write, off the caller's path.
//!
//! A done write ([`super::Store::save_done`]) replaces a record whose previous version, an
//! intent written durably in the same operation, already names everything the done version
//! names: the attachments, their interfaces, their delegate configs. The done version adds
//! results (addresses, MACs) and the phase. Its temp file is fsynced before the rename, as
//! every record is, so no reader and no power loss ever sees it torn. Only the directory's
//! fsync, which makes the rename itself survive a power loss, runs after the answer:
//!
//! - a crash of plexusd loses nothing: the rename is in the kernel before the answer;
//! - a power loss before this fsync leaves the intent version or the done version, both
//!   whole. Either way the sandbox is gone after the reboot (its netns with it), and
//!   recovery and teardown undo an intent attachment as they tear down a done one. Leases
//!   follow `ipam::durable`: one the durable record does not name belongs to a setup
//!   recovery undoes.
//!
//! Requests made while one sync is queued share it, so a burst of setups pays one fsync of
//! the directory for many answers.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// One queued fsync of a directory at a time; see the module docs.
#[derive(Debug)]
pub(crate) struct DeferredDirSync {
    dir: PathBuf,
    queued: Arc<AtomicBool>,
}

static DEFERRED: AtomicU64 = AtomicU64::new(0);

/// Directory fsyncs this process has made after a done write's answer (included in
/// [`super::fsyncs`]; counted once the fsync returned).
pub fn deferred_fsyncs() -> u64 {
    DEFERRED.load(Ordering::SeqCst)
}

impl DeferredDirSync {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            queued: Arc::default(),
        }
    }

    /// Queues an fsync of the directory covering every rename made in it before this call:
    /// on the runtime's blocking pool, or here when there is no runtime.
    pub(crate) fn request(&self) {
        // A queued sync clears the flag before it syncs: one that saw it set has not
        // cleared it yet, so its fsync comes after this caller's rename.
        if self.queued.swap(true, Ordering::SeqCst) {
            return;
        }
        let (dir, queued) = (self.dir.clone(), Arc::clone(&self.queued));
        let run = move || {
            queued.store(false, Ordering::SeqCst);
            if let Err(e) = super::sync_dir(&dir) {
                // The next record write fsyncs the directory again; until then a power
                // loss may bring back intent versions (see the module docs).
                tracing::warn!(dir = %dir.display(), error = %e,
                    "fsync of the state directory after a done write failed");
            }
            DEFERRED.fetch_add(1, Ordering::SeqCst);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(run)),
            Err(_) => run(),
        }
    }
}

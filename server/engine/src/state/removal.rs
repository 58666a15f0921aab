//! Removing records: one at a time with its own fsync of the state directory, or in a
//! batch that shares one (the reaper's, `reap/batch.rs`).

use std::fs;

use plexus_core::id::SandboxId;

use super::{Store, blocking, marks, sync_dir};
use crate::error::{Error, Result};

impl Store {
    /// Removes a record (absent is fine) and fsyncs the directory, after the sandbox's
    /// lease releases are durable (`ipam::durable`).
    pub fn remove(&self, sandbox_id: &SandboxId) -> Result<()> {
        self.removed(sandbox_id, true)
    }

    /// [`Store::remove`] without the state directory's fsync, for a batch of removals
    /// that makes one [`Store::sync`] after them all (the reaper's). The sandbox's lease
    /// releases are still made durable before its record goes. Its teardown mark stays:
    /// the batch clears it once the removal is durable
    /// ([`Store::clear_mark_if_unrecorded`]).
    pub(crate) fn remove_unsynced(&self, sandbox_id: &SandboxId) -> Result<()> {
        self.removed(sandbox_id, false)
    }

    /// Removes `sandbox_id`'s teardown mark unless a record of it exists again (a new
    /// setup took the id over). Under the sandbox's lock. A failure is logged: start-up
    /// removes a mark whose record is gone.
    pub(crate) fn clear_mark_if_unrecorded(&self, sandbox_id: &SandboxId) {
        if self.path(sandbox_id).exists() {
            return;
        }
        if let Err(e) = blocking(|| marks::clear(&self.dir, sandbox_id.as_str())) {
            tracing::warn!(sandbox.id = %sandbox_id, error = %e,
                "removing a teardown mark failed; start-up removes it");
        }
    }

    /// Fsyncs the state directory: makes the removals before it durable.
    pub(crate) fn sync(&self) -> Result<()> {
        blocking(|| sync_dir(&self.dir)).map_err(|source| Error::StateDir {
            path: self.dir.clone(),
            source,
        })
    }

    fn removed(&self, sandbox_id: &SandboxId, sync_now: bool) -> Result<()> {
        let path = self.path(sandbox_id);
        let removed = blocking(|| {
            crate::ipam::durable::sync_releases(sandbox_id.as_str())?;
            match fs::remove_file(&path) {
                Ok(()) if sync_now => sync_dir(&self.dir)?,
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            // After the record's removal is durable: a mark without its record is
            // harmless, a record without its mark is not (`marks`).
            match sync_now {
                true => marks::clear(&self.dir, sandbox_id.as_str()),
                false => Ok(()),
            }
        });
        removed.map_err(|source| Error::WriteRecord { path, source })?;
        self.index.forget(sandbox_id);
        Ok(())
    }
}

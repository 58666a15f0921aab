//! Crash-safe per-sandbox state: one JSON record per sandbox under the state directory.
//!
//! Every write goes to a temp file in the same directory, is fsynced, renamed over the
//! record and the directory is fsynced, so a reader sees either the old or the new record,
//! never a torn one. The engine writes an attachment's record as an *intent* (everything it
//! is about to create, named in advance) before each step and as *done* after it; teardown
//! works from whatever the record says. A done write that follows its durable intent
//! leaves the directory's fsync until after the answer (`dir_sync` says why that is safe).
//! A runtime's teardown marks the record with a file next to it instead of rewriting it
//! (`marks`).
//! This module owns the file format and the atomic write; it does not decide what to
//! record.

use std::fs::{self, File};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use plexus_core::cni;
use plexus_core::id::SandboxId;
use plexus_core::plan::PlannedAttachment;
use plexus_core::pod::PodIdentity;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Format version of the sandbox records this binary writes.
///
/// - 1: the first format (delegate config bytes as an array of numbers).
/// - 2: delegate config bytes as the config text (a JSON string).
///
/// Records of any version are read, so upgrades and rollbacks keep every running pod's
/// networks: version 1 as written; a newer version (written by a later plexus, read after
/// a rollback) with the fields this binary does not know ignored, so it can still be
/// listed, hot-unplugged and torn down. The next write stores it in this version. (A
/// plexus of version 1 itself cannot read version 2 records: roll back past this change
/// only once its pods are gone.)
pub const RECORD_VERSION: u32 = 2;

/// The oldest record version this binary reads.
pub const OLDEST_RECORD_VERSION: u32 = 1;

/// Everything plexus knows about one sandbox's attachments. Unknown fields (from a newer
/// plexus) are ignored when read; see [`RECORD_VERSION`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxRecord {
    /// Record format version ([`RECORD_VERSION`]).
    pub version: u32,
    /// The runtime's sandbox id (also the CNI container id); validated when read.
    pub sandbox_id: SandboxId,
    /// The pod the sandbox belongs to.
    pub pod: PodIdentity,
    /// Path of the pod's network namespace (may be gone by teardown time).
    pub netns: PathBuf,
    /// Attachments in execution order.
    pub attachments: Vec<AttachmentRecord>,
    /// A whole-sandbox teardown has started: set in the same atomic write that first marks
    /// its attachments [`Phase::Removing`], so recovery tells it from the hot-unplug of one
    /// attachment (which marks only that one `Removing`) and finishes the teardown only
    /// when this is set. Absent in records written before it existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tearing_down: bool,
}

impl SandboxRecord {
    /// The attachment using `interface`, if any.
    pub fn attachment(&self, interface: &str) -> Option<&AttachmentRecord> {
        self.attachments.iter().find(|a| a.interface == interface)
    }
}

/// Which path executed an attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Driver {
    /// Configured in-process over netlink with built-in IPAM.
    Native,
    /// A CNI plugin binary run by the delegate executor.
    Exec,
    /// Made by the container runtime's own CNI (NRI path primary); never torn down here.
    Runtime,
}

impl Driver {
    /// The name used in spans and views: `native`, `exec` or `runtime`.
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Native => "native",
            Driver::Exec => "exec",
            Driver::Runtime => "runtime",
        }
    }
}

/// How far an attachment got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// About to be made; parts of it may exist. With a `result`, the ADD finished and only
    /// the route plan was pending (an undo then passes the result to DEL and reports a
    /// failed DEL instead of tolerating it).
    Intent,
    /// Fully made.
    Done,
    /// Removal started (a detach, or a teardown when [`SandboxRecord::tearing_down`] is
    /// set); parts of it may be gone.
    Removing,
}

/// One attachment as recorded (unknown fields from a newer plexus are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttachmentRecord {
    /// Network display name (`namespace/name`).
    pub network: String,
    /// Interface name inside the pod.
    pub interface: plexus_core::InterfaceName,
    /// Native or exec.
    pub driver: Driver,
    /// How far it got.
    pub phase: Phase,
    /// The plan entry, including the exact delegate config bytes, runtime config and
    /// CNI args, so teardown works after the NAD is gone.
    pub planned: PlannedAttachment,
    /// The CNI result once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<cni::Result>,
    /// What the native driver created (empty for exec).
    #[serde(default, skip_serializing_if = "NativeRecord::is_empty")]
    pub native: NativeRecord,
}

impl SandboxRecord {
    /// Marks the record for a whole-sandbox teardown: the flag, and every attachment plexus
    /// removes (runtime-made ones are never removed: nothing to record for them) as
    /// `Removing`. False when it said so already (nothing to write).
    pub fn mark_for_teardown(&mut self) -> bool {
        let removable = self.attachments.iter().any(|a| a.released_at_teardown());
        let mut changed = removable && !self.tearing_down;
        self.tearing_down = true;
        for a in self.attachments.iter_mut() {
            if a.phase != Phase::Removing && a.released_at_teardown() {
                a.phase = Phase::Removing;
                changed = true;
            }
        }
        changed
    }
}

impl AttachmentRecord {
    /// Whether plexus removes this attachment at teardown: everything it made, and a
    /// runtime-made one it took over ([`PlannedAttachment::release_on_teardown`]).
    pub fn released_at_teardown(&self) -> bool {
        self.driver != Driver::Runtime || self.planned.release_on_teardown
    }
}

/// What a native attachment creates, named before it is created (unknown fields from a
/// newer plexus are ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativeRecord {
    /// Link kind (`macvlan`, `bridge`, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Host-side links plexus creates and must delete (e.g. the host end of a veth).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_links: Vec<String>,
    /// A host device moved into the pod: its original host name, to restore on teardown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_device: Option<String>,
    /// IPAM leases to release.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leases: Vec<LeaseRecord>,
}

impl NativeRecord {
    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        *self == NativeRecord::default()
    }
}

/// An IPAM lease, identified the way the reference host-local plugin releases it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The network's lease directory (`<dataDir>/<network name>`).
    pub dir: PathBuf,
    /// Container id written into the lease file.
    pub container_id: String,
    /// Interface name written into the lease file.
    pub ifname: String,
    /// Addresses allocated, from the attachment's result (empty until then). A release
    /// reads only these addresses' lease files; without them it searches the directory
    /// for id and ifname.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpAddr>,
}

/// The state directory: `<dir>/<sandbox id>.json`. Paths are built only from a
/// [`SandboxId`], so no record can be read, written or removed outside `dir`. Parsed
/// records are kept in memory by file version (see `index`; clones share it). File I/O
/// runs through [`blocking`], so an async caller does not stall its runtime worker.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    index: std::sync::Arc<index::Index>,
    dir_sync: std::sync::Arc<dir_sync::DeferredDirSync>,
}

impl Store {
    /// Opens (creating, mode 0700) the state directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Store> {
        let dir = dir.into();
        create_private_dir(&dir).map_err(|source| Error::StateDir {
            path: dir.clone(),
            source,
        })?;
        Ok(Store {
            dir_sync: std::sync::Arc::new(dir_sync::DeferredDirSync::new(dir.clone())),
            dir,
            index: Default::default(),
        })
    }

    /// The directory records live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of a sandbox's record.
    pub fn path(&self, sandbox_id: &SandboxId) -> PathBuf {
        self.dir.join(format!("{sandbox_id}.json"))
    }

    /// Writes a record atomically and durably (temp file, fsync, rename, fsync dir), after
    /// the sandbox's lease releases are durable (`ipam::durable`).
    pub fn save(&self, record: &SandboxRecord) -> Result<()> {
        self.write(record, true)
    }

    /// The done write of a setup or hot-plug whose intent version was written by
    /// [`Store::save`] in the same operation: as `save`, but the directory's fsync runs
    /// after the caller's answer (see `dir_sync` for why a power loss cannot hurt).
    pub(crate) fn save_done(&self, record: &SandboxRecord) -> Result<()> {
        self.write(record, false)?;
        self.dir_sync.request();
        Ok(())
    }

    /// Marks a sandbox's record `tearing_down` for a runtime's teardown without rewriting
    /// it: a file next to it, no fsync (`marks` says why that is safe). Every read of the
    /// record applies it ([`SandboxRecord::mark_for_teardown`]).
    pub(crate) fn mark(&self, sandbox_id: &SandboxId) -> Result<()> {
        let path = self.path(sandbox_id);
        blocking(|| marks::set(&self.dir, sandbox_id.as_str()))
            .map_err(|source| Error::WriteRecord { path, source })
    }

    /// Removes the teardown marks whose record is gone (see `marks`); at start, under the
    /// state-dir lock.
    pub fn remove_orphan_marks(&self) -> Result<Vec<PathBuf>> {
        marks::remove_orphans(&self.dir).map_err(|source| Error::StateDir {
            path: self.dir.clone(),
            source,
        })
    }

    /// Makes every done write so far durable: the directory's deferred fsync, here when one
    /// is still owed (on the caller's thread: a clean exit, tests, benchmarks).
    pub fn flush_deferred(&self) {
        blocking(|| self.dir_sync.flush());
    }

    fn write(&self, record: &SandboxRecord, sync_dir_now: bool) -> Result<()> {
        let path = self.path(&record.sandbox_id);
        let bytes = serde_json::to_vec(record).map_err(|source| Error::EncodeRecord {
            sandbox_id: record.sandbox_id.to_string(),
            source,
        })?;
        RECORD_WRITES.fetch_add(1, Ordering::Relaxed);
        let stamp = blocking(|| {
            crate::ipam::durable::sync_releases(record.sandbox_id.as_str())?;
            if !record.tearing_down {
                // A mark from before belongs to an earlier teardown of this id (`marks`).
                marks::clear(&self.dir, record.sandbox_id.as_str())?;
            }
            write_renamed(&self.dir, &path, &bytes)?;
            if sync_dir_now {
                sync_dir(&self.dir)?;
            }
            fs::metadata(&path).map(|m| index::Stamp::of(&m))
        });
        let stamp = stamp.map_err(|source| Error::WriteRecord { path, source })?;
        self.index.put(record, stamp);
        Ok(())
    }

    /// Loads a record: `Ok(None)` when there is none, an error when it is unreadable or
    /// corrupt (never treated as "nothing to do"). An unchanged file is not parsed again.
    pub fn load(&self, sandbox_id: &SandboxId) -> Result<Option<SandboxRecord>> {
        blocking(|| {
            let Some(mut record) = self.read(sandbox_id)? else {
                return Ok(None);
            };
            if !record.tearing_down {
                // Not `ReadRecord`: the record is readable, and an unreadable one would
                // be handed to teardown's fallback.
                let marked = marks::is_set(&self.dir, sandbox_id.as_str()).map_err(|source| {
                    Error::ReadMark {
                        path: self.path(sandbox_id),
                        mark: marks::path(&self.dir, sandbox_id.as_str()),
                        source,
                    }
                })?;
                if marked {
                    record.mark_for_teardown();
                }
            }
            Ok(Some(record))
        })
    }

    /// Every readable record, sorted by sandbox id (an unreadable one is logged and left
    /// out; teardown and recovery still find it by its file). Unchanged files cost a
    /// `stat` each, not a parse.
    pub fn all(&self) -> Result<Vec<SandboxRecord>> {
        let mut out = Vec::new();
        for id in self.ids()? {
            match self.load(&id) {
                Ok(Some(r)) => out.push(r),
                Ok(None) => {}
                Err(e) => tracing::warn!(sandbox_id = %id, error = %e, "unreadable sandbox record"),
            }
        }
        Ok(out)
    }

    /// Reads and checks a record file.
    fn read(&self, sandbox_id: &SandboxId) -> Result<Option<SandboxRecord>> {
        let path = self.path(sandbox_id);
        let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
        match fs::metadata(&path) {
            Ok(meta) => {
                if let Some(record) = self.index.get(sandbox_id, index::Stamp::of(&meta)) {
                    return Ok(Some(record));
                }
            }
            Err(e) if gone(&e) => {
                self.index.forget(sandbox_id);
                return Ok(None);
            }
            Err(source) => return Err(Error::ReadRecord { path, source }),
        }
        // The stamp and the bytes of one open file, so they describe the same version.
        let opened = File::open(&path).and_then(|mut f| {
            let stamp = index::Stamp::of(&f.metadata()?);
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut bytes)?;
            Ok((stamp, bytes))
        });
        self.index.forget(sandbox_id);
        let (stamp, bytes) = match opened {
            Ok(read) => read,
            Err(e) if gone(&e) => return Ok(None),
            Err(source) => return Err(Error::ReadRecord { path, source }),
        };
        let mut record: SandboxRecord =
            serde_json::from_slice(&bytes).map_err(|source| Error::CorruptRecord {
                path: path.clone(),
                reason: source.to_string(),
            })?;
        if record.version < OLDEST_RECORD_VERSION {
            return Err(Error::CorruptRecord {
                path,
                reason: format!(
                    "record version {} is below the oldest this plexus reads ({OLDEST_RECORD_VERSION})",
                    record.version
                ),
            });
        }
        if record.sandbox_id != *sandbox_id {
            return Err(Error::CorruptRecord {
                path,
                reason: format!(
                    "the record names sandbox {:?}, its file name {sandbox_id:?}",
                    record.sandbox_id
                ),
            });
        }
        if record.version > RECORD_VERSION {
            tracing::warn!(sandbox.id = %sandbox_id, version = record.version,
                "record written by a newer plexus (a rollback?): fields this version does not know are ignored");
        }
        // In memory it is this binary's format now, and is written back as such.
        record.version = RECORD_VERSION;
        self.index.put(&record, stamp);
        Ok(Some(record))
    }

    /// Sandbox ids that have a record file (readable or not). A `.json` file whose stem is
    /// not a valid [`SandboxId`] was not written by plexus: it is logged and skipped.
    pub fn ids(&self) -> Result<Vec<SandboxId>> {
        let entries = fs::read_dir(&self.dir).map_err(|source| Error::StateDir {
            path: self.dir.clone(),
            source,
        })?;
        let mut ids = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(stem) = name.strip_suffix(".json") else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            match SandboxId::new(stem) {
                Ok(id) => ids.push(id),
                Err(e) => tracing::warn!(
                    file = %entry.path().display(),
                    error = %e,
                    "skipping a file in the state directory that is not a sandbox record"
                ),
            }
        }
        ids.sort();
        Ok(ids)
    }
}

/// Runs blocking file I/O from async code: on a multi-threaded tokio runtime the worker
/// hands its other tasks to another thread first (`block_in_place`); elsewhere (a
/// current-thread runtime, plain threads) it simply runs.
pub(crate) fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

mod dir_sync;
mod files;
mod index;
mod marks;
mod private_dir;
mod removal;

pub use dir_sync::deferred_fsyncs;
#[cfg(test)]
pub(crate) use files::temp_name;
use files::{RECORD_WRITES, write_renamed};
pub(crate) use files::{fsync, remove_matching, sync_dir};
pub use files::{fsyncs, is_temp_name, record_writes, remove_stale_temp_files};
pub(crate) use private_dir::create_private_dir;
#[cfg(test)]
mod tests;

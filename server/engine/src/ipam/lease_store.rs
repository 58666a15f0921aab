//! The lease directory of a host-local network, as the reference plugin's disk backend lays
//! it out (containernetworking/plugins v1.1.1 `plugins/ipam/host-local/backend/disk`):
//!
//! - one file per address, named by the address text, created `O_EXCL` mode 0644, holding
//!   `<container id>\r\n<ifname>` (older plugins wrote just the id; both are released);
//! - `last_reserved_ip.<range set index>` holds the last address handed out per range set;
//! - all of it under an exclusive `flock` on the file `lock` in that directory.
//!
//! When a change reaches the disk: see [`super::durable`].

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};

const LAST_IP_PREFIX: &str = "last_reserved_ip.";
const LINE_BREAK: &str = "\r\n";

/// One lease file.
pub(super) struct Lease {
    /// The address it is named by.
    pub(super) ip: IpAddr,
    /// Its content, trimmed: `<container id>\r\n<ifname>`, or the id alone (older plugins).
    content: String,
    path: PathBuf,
}

impl Lease {
    /// Whether `(id, ifname)` holds it, `key` being [`lease_key`] of the two (or `id`, in
    /// the old one-line format).
    pub(super) fn held_by(&self, id: &str, key: &str) -> bool {
        holds(&self.content, id, key)
    }
}

/// Whether a lease file's trimmed `content` is `(id, ifname)`'s, `key` being
/// [`lease_key`] of the two (or `id`, in the old one-line format).
fn holds(content: &str, id: &str, key: &str) -> bool {
    content == key || content == id.trim()
}

/// A lease file's content, trimmed (its first 4 KiB: a lease holds a container id and an
/// interface name).
fn read_lease(path: &Path) -> std::io::Result<String> {
    let mut data = Vec::with_capacity(128);
    open_regular(path, OpenOptions::new().read(true))?
        .take(4096)
        .read_to_end(&mut data)?;
    Ok(String::from_utf8_lossy(&data).trim().to_owned())
}

/// Opens `path` only if it is a regular file: not through a symlink, and never blocking
/// on a FIFO. A NAD's `dataDir` may name a directory others can write to; whatever they
/// plant there must neither redirect plexusd's writes nor hang its reads (a blocked read
/// would hold the directory's lock, and with it every allocation on that network).
fn open_regular(path: &Path, how: &mut OpenOptions) -> std::io::Result<File> {
    let refused = || {
        std::io::Error::new(
            ErrorKind::InvalidInput,
            "not a regular file (a symlink, FIFO, device or directory): plexus only opens \
             regular files in a lease directory; remove it",
        )
    };
    let f = how
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            // O_NOFOLLOW on a symlink.
            Some(libc::ELOOP) => refused(),
            _ => e,
        })?;
    if !f.metadata()?.file_type().is_file() {
        return Err(refused());
    }
    Ok(f)
}

/// What a lease file of `(id, ifname)` holds.
pub(super) fn lease_key(id: &str, ifname: &str) -> String {
    format!("{}{LINE_BREAK}{ifname}", id.trim())
}

/// Writes `last_reserved_ip.<range>` in place: over the old bytes, then cut to length.
/// It is only a hint where the next search starts, read and written under the
/// directory's lock; a crash between the two steps leaves a torn one, which starts the
/// search elsewhere (or over, as a lost one does). A temporary file renamed over it cost
/// ~0.17 ms per allocation on ext4 (the rename over an existing file starts writeback of
/// the new one), this ~0.01 ms.
///
/// Only a regular file is written (`open_regular`).
fn write_hint(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let f = open_regular(
        path,
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644),
    )?;
    f.write_all_at(bytes, 0)?;
    f.set_len(bytes.len() as u64)
}

/// The lease directory of one network, as the reference disk backend lays it out.
#[derive(Debug, Clone)]
pub struct LeaseStore {
    dir: PathBuf,
}

impl LeaseStore {
    /// A lease directory known to exist (nothing is created).
    pub(super) fn existing(dir: &Path) -> LeaseStore {
        LeaseStore {
            dir: dir.to_path_buf(),
        }
    }

    /// Opens (creating, mode 0755) a lease directory.
    pub fn open(dir: &Path) -> Result<LeaseStore> {
        fs::create_dir_all(dir).map_err(|source| Error::Lease {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(LeaseStore {
            dir: dir.to_path_buf(),
        })
    }

    fn io(&self, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.to_path_buf();
        move |source| Error::Lease { path, source }
    }

    /// Takes the directory's exclusive `flock` (shared with the reference plugin) to take
    /// an address: refused once the caller gave up ([`super::GaveUp`]).
    pub(super) fn lock_to_take(&self, gave_up: &super::GaveUp) -> Result<Flock<File>> {
        let lock = self.lock()?;
        if gave_up.is_set() {
            return Err(Error::Task(format!(
                "allocation in {} abandoned: its caller gave up before the directory's lock was free",
                self.dir.display()
            )));
        }
        Ok(lock)
    }

    /// Takes the directory's exclusive `flock` (shared with the reference plugin).
    pub(super) fn lock(&self) -> Result<Flock<File>> {
        let path = self.dir.join("lock");
        let file = open_regular(
            &path,
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644),
        )
        .map_err(self.io(&path))?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| Error::Lease {
            path,
            source: errno.into(),
        })
    }

    /// Reserves `ip` for `(id, ifname)`; false when someone holds it.
    pub(super) fn reserve(
        &self,
        id: &str,
        ifname: &str,
        ip: IpAddr,
        range_id: usize,
    ) -> Result<bool> {
        let path = self.dir.join(ip.to_string());
        let mut f = match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(self.io(&path)(e)),
        };
        // Not fsynced: the sandbox record's done write, which names this address, is the
        // durable copy, and recovery writes a lease back from it (`restore`). A lease
        // never named by a durable record belongs to a setup recovery undoes.
        if let Err(e) = f.write_all(lease_key(id, ifname).as_bytes()) {
            let _ = fs::remove_file(&path);
            return Err(self.io(&path)(e));
        }
        drop(f);
        // The lease is taken; a hint that cannot be written only costs where the next
        // search starts.
        let last = self.dir.join(format!("{LAST_IP_PREFIX}{range_id}"));
        if let Err(e) = write_hint(&last, ip.to_string().as_bytes()) {
            tracing::warn!(path = %last.display(), error = %e,
                "cannot write the host-local hint of the last address taken; the next search starts over (remove whatever is at that path)");
        }
        Ok(true)
    }

    pub(super) fn last_reserved(&self, range_id: usize) -> Option<IpAddr> {
        let path = self.dir.join(format!("{LAST_IP_PREFIX}{range_id}"));
        let mut text = String::new();
        open_regular(&path, OpenOptions::new().read(true))
            .ok()?
            .take(64)
            .read_to_string(&mut text)
            .ok()?;
        text.trim().parse().ok()
    }

    /// Every lease: a regular file named by an address, each read once (its first 4 KiB;
    /// a lease holds a container id and an interface name).
    fn scan(&self) -> Vec<Lease> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let Some(ip) = e.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            if !e.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let path = e.path();
            if let Ok(content) = read_lease(&path) {
                out.push(Lease { ip, content, path });
            }
        }
        out
    }

    /// The leases, under the lock (`_held`), after removing those a killed writer left
    /// empty (created, content not yet written): no release could ever match them, so each
    /// would hold its address for ever. Every writer — this store and the reference
    /// plugin — creates and fills a lease while holding the lock, so an empty lease seen
    /// then belongs to no one. One pass over the directory.
    pub(super) fn live_leases(&self, _held: &Flock<File>) -> Vec<Lease> {
        let mut leases = self.scan();
        leases.retain(|l| {
            let torn = l.content.is_empty() && fs::remove_file(&l.path).is_ok();
            if torn {
                tracing::warn!(lease = %l.path.display(), "removed an empty lease file a killed writer left");
            }
            !torn
        });
        leases
    }

    /// Addresses held by `(id, ifname)` (or by `id` in the old one-line format).
    pub fn get_by_id(&self, id: &str, ifname: &str) -> Vec<IpAddr> {
        let key = lease_key(id, ifname);
        let held = self.scan().into_iter().filter(|l| l.held_by(id, &key));
        held.map(|l| l.ip).collect()
    }

    /// Releases every address of `(id, ifname)`, like the reference `ReleaseByID`, and
    /// removes torn (empty) leases.
    pub fn release(&self, id: &str, ifname: &str) -> Result<()> {
        let lock = self.lock()?;
        let leases = self.live_leases(&lock);
        let key = lease_key(id, ifname);
        let mut found = false;
        for l in &leases {
            if l.content == key && fs::remove_file(&l.path).is_ok() {
                found = true;
            }
        }
        if !found {
            for l in leases.iter().filter(|l| l.content == id.trim()) {
                let _ = fs::remove_file(&l.path);
            }
        }
        // Made durable by the next write of this sandbox's record, before that write can
        // drop the lease from it (`durable::sync_releases`).
        super::durable::released(id.trim(), &self.dir);
        Ok(())
    }

    /// Releases `(id, ifname)`'s leases of `ips`, the addresses its record names: only
    /// their files are read, so a release costs the same however many leases the network
    /// holds ([`LeaseStore::release`] reads every one, as the reference `ReleaseByID`
    /// does). A file another holder has now is left alone; one emptied by a killed writer
    /// is removed. For a lease whose addresses are not known (an allocation cut short
    /// before its result was recorded), use [`LeaseStore::release`].
    pub fn release_addresses(&self, id: &str, ifname: &str, ips: &[IpAddr]) -> Result<()> {
        let _lock = self.lock()?;
        // Before any removal, so that one which fails after others still has them synced
        // by the next write or removal of the record (`durable::sync_releases`).
        super::durable::released(id.trim(), &self.dir);
        let key = lease_key(id, ifname);
        for ip in ips {
            let path = self.dir.join(ip.to_string());
            match read_lease(&path) {
                // Empty under the lock: torn (see `live_leases`).
                Ok(held) if held.is_empty() || holds(&held, id, &key) => {}
                // Someone else's now; or gone (released already), or not a lease file
                // (skipped, as the directory search skips it).
                Ok(_) | Err(_) => continue,
            }
            match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(self.io(&path)(e));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Writes back any of `ips` that `(id, ifname)` no longer holds (a lease is not
    /// fsynced when taken, so a power loss can lose it while the record naming it
    /// survives), durably. Returns the addresses written back; an address someone else
    /// holds now is an error that names the holder.
    pub fn restore(&self, id: &str, ifname: &str, ips: &[IpAddr]) -> Result<Vec<IpAddr>> {
        let _lock = self.lock()?;
        let key = lease_key(id, ifname);
        let mut restored = Vec::new();
        // Only the recorded addresses' files are read: recovery runs this for every
        // recorded lease, and a scan of the directory each time would cost O(leases²).
        for ip in ips {
            let path = self.dir.join(ip.to_string());
            match read_lease(&path) {
                Ok(held) if holds(&held, id, &key) => continue,
                // Empty under the lock: torn (see `live_leases`); written again below.
                Ok(held) if held.is_empty() => fs::remove_file(&path).map_err(self.io(&path))?,
                Ok(held) => {
                    let holder = held.replace(LINE_BREAK, " on ");
                    return Err(self.io(&path)(std::io::Error::other(format!(
                        "the record of {id} names {ip} for {ifname}, but {holder} holds it now; \
                         remove one of the two pods so the address is not used twice"
                    ))));
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(self.io(&path)(e)),
            }
            let written = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&path)
                .and_then(|mut f| {
                    f.write_all(key.as_bytes())?;
                    crate::state::fsync(&f)
                });
            written.map_err(self.io(&path))?;
            restored.push(*ip);
        }
        if !restored.is_empty() {
            crate::state::sync_dir(&self.dir).map_err(self.io(&self.dir))?;
        }
        Ok(restored)
    }

    /// Releases every lease naming `id` except those of interfaces in `keep`; returns
    /// `(ip, ifname)` of what was released.
    pub fn release_container(&self, id: &str, keep: &[&str]) -> Result<Vec<(String, String)>> {
        let lock = self.lock()?;
        let mut out = Vec::new();
        for l in self.live_leases(&lock) {
            let mut lines = l.content.split(LINE_BREAK);
            let owner = lines.next().unwrap_or("");
            let ifname = lines.next().unwrap_or("").to_string();
            if owner != id.trim() || keep.contains(&ifname.as_str()) {
                continue;
            }
            if fs::remove_file(&l.path).is_ok() {
                out.push((l.ip.to_string(), ifname));
            }
        }
        if !out.is_empty() {
            crate::state::sync_dir(&self.dir).map_err(self.io(&self.dir))?;
        }
        Ok(out)
    }
}

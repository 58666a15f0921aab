//! Lease files and the renewal task.
//!
//! One JSON file per lease at `<dir>/<sandbox id>/<ifname>.json`, written to a temporary
//! file, fsynced and renamed over the old one, so a crash leaves the old or the new lease.
//! Names are validated before any path is built from them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use plexus_netlink::{Handle, Netns};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::{DhcpError, Granted, client};
use crate::error::{Error, Result};

/// Everything needed to renew and release a lease without the sandbox record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseFile {
    /// CNI network name.
    pub network: String,
    /// Sandbox id.
    pub sandbox_id: String,
    /// Interface in the pod.
    pub ifname: String,
    /// The pod's netns path.
    pub netns: PathBuf,
    /// The interface's MAC (`chaddr` and client id).
    pub mac: [u8; 6],
    /// Request timeout in seconds.
    pub timeout_secs: u64,
    /// What the last ACK granted.
    pub granted: Granted,
    /// When that ACK arrived (seconds since the Unix epoch).
    pub bound_at: u64,
    /// How many times the lease was renewed or rebound.
    #[serde(default)]
    pub renewals: u64,
}

impl LeaseFile {
    fn at(&self, secs: u32) -> u64 {
        self.bound_at.saturating_add(u64::from(secs))
    }

    /// Absolute expiry (seconds since the epoch); `None` for an infinite lease.
    pub fn expires_at(&self) -> Option<u64> {
        (self.granted.lease_secs != u32::MAX).then(|| self.at(self.granted.lease_secs))
    }

    /// When the next renewal attempt is due: T1 while BOUND, `now` once RENEWING or
    /// REBINDING (a failed attempt already waited its request timeout); `None` for an
    /// infinite lease.
    pub fn next_due(&self, now: u64) -> Option<u64> {
        if self.granted.lease_secs == u32::MAX {
            return None;
        }
        Some(self.at(self.granted.t1_secs).max(now))
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A name usable as one path component: 1..=253 of `[A-Za-z0-9_.-]`, not `.`/`..`.
fn valid_component(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The directory of lease files.
#[derive(Debug, Clone)]
pub struct LeaseStore {
    dir: PathBuf,
}

impl LeaseStore {
    /// A store rooted at `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> LeaseStore {
        LeaseStore { dir: dir.into() }
    }

    /// The root directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, sandbox_id: &str, ifname: &str) -> Result<PathBuf> {
        for (what, v) in [("sandbox id", sandbox_id), ("interface name", ifname)] {
            if !valid_component(v) {
                return Err(Error::InvalidIpam {
                    network: String::new(),
                    reason: format!(
                        "dhcp lease {what} {v:?} is not 1 to 253 of A-Z a-z 0-9 _ . - (and not . or ..)"
                    ),
                });
            }
        }
        Ok(self.dir.join(sandbox_id).join(format!("{ifname}.json")))
    }

    /// Writes `lease` atomically (temp file, fsync, rename, fsync of the directory), off
    /// the async workers ([`crate::state::blocking`]) like every durable write.
    pub fn save(&self, lease: &LeaseFile) -> Result<()> {
        crate::state::blocking(|| self.write(lease))
    }

    fn write(&self, lease: &LeaseFile) -> Result<()> {
        let path = self.path(&lease.sandbox_id, &lease.ifname)?;
        let parent = path.parent().unwrap_or(&self.dir).to_path_buf();
        let io = |source| Error::Lease {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&parent).map_err(io)?;
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(lease).map_err(|e| io(std::io::Error::other(e)))?;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        crate::state::fsync(&f).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        crate::state::sync_dir(&parent).map_err(io)
    }

    /// Reads one lease; `None` when there is none.
    pub fn load(&self, sandbox_id: &str, ifname: &str) -> Result<Option<LeaseFile>> {
        let path = self.path(sandbox_id, ifname)?;
        crate::state::blocking(|| read(&path))
    }

    /// Removes one lease (absent is fine) and the sandbox directory when it empties.
    pub fn remove(&self, sandbox_id: &str, ifname: &str) -> Result<()> {
        crate::state::blocking(|| self.delete(sandbox_id, ifname))
    }

    fn delete(&self, sandbox_id: &str, ifname: &str) -> Result<()> {
        let path = self.path(sandbox_id, ifname)?;
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::Lease { path, source }),
        }
        if let Some(p) = path.parent() {
            // Fails (and is ignored) while other interfaces' leases remain.
            let _ = std::fs::remove_dir(p);
        }
        Ok(())
    }

    /// Every readable lease (unreadable files are logged and skipped).
    pub fn list(&self) -> Vec<LeaseFile> {
        crate::state::blocking(|| self.read_all())
    }

    fn read_all(&self) -> Vec<LeaseFile> {
        let mut out = Vec::new();
        let Ok(sandboxes) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        for sb in sandboxes.flatten() {
            let Ok(files) = std::fs::read_dir(sb.path()) else {
                continue;
            };
            for f in files.flatten() {
                let p = f.path();
                if p.extension().is_some_and(|e| e == "json") {
                    match read(&p) {
                        Ok(Some(l)) => out.push(l),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(path = %p.display(), error = %e, "unreadable dhcp lease")
                        }
                    }
                }
            }
        }
        out
    }
}

fn read(path: &Path) -> Result<Option<LeaseFile>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Lease {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::Lease {
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        })
}

/// Longest sleep of [`run_renewer`] between looks at the store (new leases appear there).
pub const RENEW_POLL: Duration = Duration::from_secs(2);

/// Renews every lease in `store` at T1 (unicast) and rebinds after T2 (broadcast), for as
/// long as it runs (plexusd spawns it once). Leases are re-read each pass, so a restarted
/// plexusd continues where the previous one stopped. A lease whose netns is gone is
/// removed; an expired or refused lease loses its address and goes back to INIT
/// (retried each pass until it binds).
pub async fn run_renewer(store: LeaseStore) {
    loop {
        let now = now_secs();
        let mut next = now + RENEW_POLL.as_secs();
        let leases = store.list();
        tracing::trace!(count = leases.len(), dir = %store.dir().display(), "dhcp renewer pass");
        // Due leases are renewed concurrently: one silent server must not hold up the rest.
        let mut due_now = Vec::new();
        for lease in leases {
            match lease.next_due(now) {
                Some(due) if due <= now => {
                    let span = tracing::info_span!("dhcp_renew", sandbox = %lease.sandbox_id, ifname = %lease.ifname, network = %lease.network);
                    due_now.push(renew_one(&store, lease, now).instrument(span));
                }
                Some(due) => next = next.min(due),
                None => {}
            }
        }
        futures::future::join_all(due_now).await;
        let wait = next.saturating_sub(now_secs()).max(1);
        tokio::time::sleep(Duration::from_secs(wait).min(RENEW_POLL)).await;
    }
}

async fn renew_one(store: &LeaseStore, mut lease: LeaseFile, now: u64) {
    let netns = match Netns::open(&lease.netns) {
        Ok(n) => n,
        Err(e) => {
            tracing::info!(error = %e, "pod netns gone; dropping dhcp lease");
            let _ = store.remove(&lease.sandbox_id, &lease.ifname);
            return;
        }
    };
    if lease.expires_at().is_some_and(|e| now >= e) {
        super::reinit::reinit(store, lease, &netns, "lease expired").await;
        return;
    }
    let rebinding = now >= lease.at(lease.granted.t2_secs);
    let timeout = Duration::from_secs(lease.timeout_secs.clamp(1, super::MAX_TIMEOUT_SECS));
    let res = async {
        let sock = client::open(&netns, &lease.ifname).await?;
        client::renew(&sock, lease.mac, &lease.granted, rebinding, timeout).await
    }
    .await;
    match res {
        Ok(g) => {
            tracing::debug!(address = %g.address, lease_secs = g.lease_secs, rebinding, "dhcp lease renewed");
            lease.granted = g;
            lease.bound_at = now_secs();
            lease.renewals += 1;
            if let Err(e) = store.save(&lease) {
                tracing::warn!(error = %e, "saving renewed dhcp lease");
            }
        }
        Err(DhcpError::Nak { server, message }) => {
            tracing::warn!(%server, message, "dhcp server refused renewal");
            super::reinit::reinit(store, lease, &netns, "server sent NAK").await;
        }
        Err(e) => tracing::warn!(error = %e, rebinding, "dhcp renewal failed; will retry"),
    }
}

/// Acquires a lease for `ifname` (already up) in `pod` and saves it.
pub(crate) async fn acquire_and_save(
    store: &LeaseStore,
    pod: &Handle,
    meta: LeaseFile,
) -> Result<LeaseFile> {
    let timeout = Duration::from_secs(meta.timeout_secs);
    let fail = |e: DhcpError| Error::Dhcp {
        network: meta.network.clone(),
        ifname: meta.ifname.clone(),
        cause: e,
    };
    let sock = client::open(pod.netns(), &meta.ifname)
        .await
        .map_err(fail)?;
    let granted = client::acquire(&sock, meta.mac, timeout)
        .await
        .map_err(fail)?;
    let lease = LeaseFile {
        granted,
        bound_at: now_secs(),
        ..meta
    };
    store.save(&lease)?;
    Ok(lease)
}

/// Whether `sandbox_id` holds any saved lease here (what [`release_sandbox`] would
/// release).
pub fn holds_sandbox(store: &LeaseStore, sandbox_id: &str) -> bool {
    valid_component(sandbox_id) && store.dir.join(sandbox_id).exists()
}

/// [`release_saved`] for every saved lease of the sandbox (before a link group delete
/// takes the interfaces away), through `held` once the recorded netns path is gone (the
/// netns plexusd held since the setup). Failures are logged; the files are removed either
/// way.
pub async fn release_sandbox(store: &LeaseStore, sandbox_id: &str, held: Option<&Netns>) {
    if !valid_component(sandbox_id) {
        return;
    }
    let ifnames: Vec<String> = std::fs::read_dir(store.dir.join(sandbox_id))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            n.strip_suffix(".json").map(str::to_string)
        })
        .collect();
    for ifname in ifnames {
        if let Err(e) = release_saved(store, sandbox_id, &ifname, held).await {
            tracing::warn!(sandbox = sandbox_id, ifname, error = %e, "dhcp lease release");
        }
    }
}

/// Sends RELEASE for the saved lease of `ifname` (when its netns is still there) and
/// removes the file. Absent leases are fine.
pub(crate) async fn release_saved(
    store: &LeaseStore,
    sandbox_id: &str,
    ifname: &str,
    held: Option<&Netns>,
) -> Result<()> {
    let Some(lease) = store.load(sandbox_id, ifname)? else {
        return Ok(());
    };
    let netns = Netns::open(&lease.netns)
        .ok()
        .or_else(|| held.and_then(|n| n.try_clone().ok()));
    if let Some(netns) = netns {
        let sent = async {
            let sock = client::open(&netns, ifname).await?;
            client::release(&sock, lease.mac, &lease.granted).await
        }
        .await;
        if let Err(e) = sent {
            tracing::warn!(sandbox = sandbox_id, ifname, error = %e, "dhcp RELEASE not sent");
        }
    }
    store.remove(sandbox_id, ifname)
}

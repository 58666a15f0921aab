//! Link deletion after the answer: the runtime's teardown of a pod (NRI StopPodSandbox,
//! the shim's CNI DEL) waits for what must not outlive it, and not for the kernel's slow
//! part.
//!
//! containerd 1.7 tears a pod down as NRI StopPodSandbox → CNI DEL (netns still there) →
//! netns removed (`docs/teardown.md` has the evidence). Every virtual link plexus made in
//! the pod's netns (macvlan, ipvlan, vlan, a bridge's veth end) is destroyed by the kernel
//! with that namespace, so the teardown only waits for the leases to be released and the
//! addresses to be removed (`native::release`); it answers with the sandbox still recorded
//! `tearing_down` and those attachments `Removing`. NRI StopPodSandbox does not wait even for
//! those: it answers once the record is marked and the netns held open, and the releases run
//! before the reaper, in its task ([`LinkDeletion::AfterMark`], `teardown/early.rs`).
//! A reaper task then lets go of the namespace and waits (`EngineConfig::links_grace`) for
//! the runtime to remove it, which takes the links with it in the kernel's own cleanup, off
//! every caller's path: deleting
//! them here would hold the rtnl lock while containerd runs its own CNI DEL. If the
//! namespace is still there after the grace, the reaper deletes the links itself (one
//! group delete). Either way each attachment's idempotent `native::del` then removes what a
//! namespace does not take (a bridge's host veth end when someone else holds the
//! namespace), and the record is removed under the sandbox's lock. A crash before that
//! leaves the record for recovery, which finishes it like any interrupted teardown. Host devices (moved back), exec'd
//! plugins (their DEL) and hot-unplug (Detach) are never deferred.
//!
//! While a sandbox is being reaped, another teardown of it (RemovePodSandbox after
//! StopPodSandbox) has nothing left to do and answers at once; a new setup of the same id
//! waits until the links are gone and takes the record over.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use plexus_core::id::SandboxId;
use plexus_netlink::Handle;
use tokio::sync::watch;

use crate::engine::Engine;
use crate::error::chain;
use crate::state::SandboxRecord;
use crate::{crash, native};

mod batch;

pub(crate) use batch::Batch;

/// When a teardown deletes the links the kernel destroys with the pod's netns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkDeletion {
    /// Before it answers: the caller's netns stays (plexusctl, tests, recovery).
    BeforeAnswer,
    /// After it answers, in the background: the runtime removes the netns right after
    /// the teardown (the shim's CNI DEL). It answers once the leases are released and the
    /// addresses removed.
    AfterAnswer,
    /// Like [`LinkDeletion::AfterAnswer`], answering as soon as the record is marked and
    /// the pod's netns is held open (NRI StopPodSandbox, whose failure containerd only
    /// logs): the addresses are removed and then the leases released in the background,
    /// in that order, before the links are left to the netns (`teardown/early.rs`). A
    /// teardown that cannot hold the netns this way answers as `AfterAnswer` does.
    AfterMark,
}

/// The sandboxes whose links are being deleted after their teardown answered.
#[derive(Debug)]
pub(crate) struct Reaping {
    /// Per sandbox: the reaper's token and whether its links are gone yet.
    pending: Mutex<HashMap<SandboxId, (u64, watch::Receiver<bool>)>>,
    next: AtomicU64,
    /// Reaper tasks running.
    running: watch::Sender<usize>,
}

impl Reaping {
    pub(crate) fn new() -> Reaping {
        Reaping {
            pending: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            running: watch::channel(0).0,
        }
    }

    fn entries(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<SandboxId, (u64, watch::Receiver<bool>)>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `id`'s teardown answered and its links are still being deleted.
    pub(crate) fn is_pending(&self, id: &SandboxId) -> bool {
        self.entries().contains_key(id)
    }

    /// The sandboxes being reaped now.
    pub(crate) fn pending_ids(&self) -> std::collections::HashSet<SandboxId> {
        self.entries().keys().cloned().collect()
    }

    /// Waits (if `id` is being reaped) until its links are gone.
    pub(crate) async fn links_gone(&self, id: &SandboxId) {
        let Some((_, mut gone)) = self.entries().get(id).cloned() else {
            return;
        };
        // An error means the reaper ended (its sender dropped): the links are settled.
        let _ = gone.wait_for(|gone| *gone).await;
    }

    /// For a new setup of `id`: waits (if it is being reaped) until its links are gone,
    /// then takes the record over from the reaper, which will leave it alone.
    pub(crate) async fn take_over(&self, id: &SandboxId) {
        self.links_gone(id).await;
        self.entries().remove(id);
    }

    /// Registers a reaper of `id`: from now on `id` is pending, and counted as running
    /// until a [`Running`] made for it is dropped.
    fn start(&self, id: &SandboxId) -> Reaper {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(false);
        self.entries().insert(id.clone(), (token, rx));
        self.running.send_modify(|n| *n += 1);
        Reaper {
            token,
            links_gone: tx,
        }
    }

    /// Whether `id` is still the reaper `token`'s; false when a setup took it over.
    /// Asked under the sandbox's lock, which a take-over also holds.
    fn owns(&self, id: &SandboxId, token: u64) -> bool {
        matches!(self.entries().get(id), Some((t, _)) if *t == token)
    }

    /// Forgets `id` if it is still the reaper `token`'s. Called after the record is
    /// removed (or kept for recovery), so no listing sees a record between the two.
    pub(crate) fn finish(&self, id: &SandboxId, token: u64) {
        let mut entries = self.entries();
        if matches!(entries.get(id), Some((t, _)) if *t == token) {
            entries.remove(id);
        }
    }
}

/// A registered reaper ([`Reaping::start`]): its token, and the sender that says its
/// sandbox's links are gone (dropping it says so too).
pub(crate) struct Reaper {
    pub(crate) token: u64,
    pub(crate) links_gone: watch::Sender<bool>,
}

/// First and longest pause between two looks at whether the runtime removed the netns.
const FIRST_LOOK: Duration = Duration::from_millis(2);
const LONGEST_PAUSE: Duration = Duration::from_millis(250);

/// How long a reaper leaves the kernel, once the runtime removed the pod's netns, to
/// destroy the host ends of the pod's veths with the namespace (its cleanup runs a moment
/// later, in a kernel worker) before deleting them itself. The kernel unregisters the
/// devices of every dying namespace in one batch; a deletion per veth from plexus takes the
/// rtnl lock through a device unregistration each, and after a mass pod deletion those
/// queued ahead of the next pods' link requests.
const KERNEL_CLEANUP: Duration = Duration::from_secs(2);

/// Counts a reaper task as running until dropped.
struct Running<'a>(&'a watch::Sender<usize>);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Engine {
    /// Waits until every link deletion deferred by a teardown has finished and its record
    /// is settled, which includes waiting for a removal batch (`batch.rs`; tests, a
    /// shutdown that wants the records settled).
    pub async fn reaped(&self) {
        let mut running = self.inner.reaping.running.subscribe();
        let _ = running.wait_for(|n| *n == 0).await;
    }

    /// Whether the runtime removed the netns at `path` within [`EngineConfig::links_grace`]
    /// (looked at after 2 ms, then at doubling intervals up to 250 ms).
    ///
    /// [`EngineConfig::links_grace`]: crate::EngineConfig::links_grace
    pub(crate) async fn netns_removed(&self, path: &Path) -> bool {
        let until = tokio::time::Instant::now() + self.inner.cfg.links_grace;
        let mut pause = FIRST_LOOK;
        loop {
            if tokio::fs::symlink_metadata(path).await.is_err() {
                return true;
            }
            let now = tokio::time::Instant::now();
            if now >= until {
                return false;
            }
            tokio::time::sleep(pause.min(until - now)).await;
            pause = (pause * 2).min(LONGEST_PAUSE);
        }
    }

    /// Deletes the links of `rec` (a teardown's deferred attachments, recorded `Removing`)
    /// in the background, then removes the record.
    pub(crate) fn spawn_reap(&self, rec: SandboxRecord) {
        let id = rec.sandbox_id.clone();
        self.spawn_reaper(&id, |engine, reaper| async move {
            engine.reap(rec, reaper).await;
        });
    }

    /// Registers a reaper of `id` (pending from now on, see [`Reaping`]) and runs `work`
    /// with it in a task that [`Engine::reaped`] waits for.
    pub(crate) fn spawn_reaper<F>(&self, id: &SandboxId, work: impl FnOnce(Engine, Reaper) -> F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let reaper = self.inner.reaping.start(id);
        let running = work(self.clone(), reaper);
        let engine = self.clone();
        tokio::spawn(async move {
            let _running = Running(&engine.inner.reaping.running);
            running.await;
        });
    }

    /// Holds no handle of the namespace while it waits: that would keep the namespace
    /// (and the links) alive.
    pub(crate) async fn reap(&self, rec: SandboxRecord, reaper: Reaper) {
        let Reaper { token, links_gone } = reaper;
        let id = rec.sandbox_id.clone();
        crash::point("reap", 0, "deleting");
        let pod = match self.netns_removed(&rec.netns).await {
            true => None,
            // Still there after the grace: delete the links ourselves.
            false => match Handle::open_path(&rec.netns).await {
                Ok(pod) => Some(pod),
                Err(e) => {
                    tracing::debug!(sandbox.id = %id, error = %e, "pod netns gone meanwhile");
                    None
                }
            },
        };
        if let Some(pod) = &pod
            && let Err(e) = pod.delete_group(self.inner.cfg.link_group).await
        {
            tracing::debug!(sandbox.id = %id, error = %e, "group delete failed; deleting one by one");
        }
        // What is left either way: a bridge's host veth end if the namespace is held
        // open by someone else, a link the group delete missed. The leases went before
        // the answer (`native::release`); only links are left. Idempotent.
        let mut problems = Vec::new();
        match self.host().await {
            Ok(host) => {
                if pod.is_none() {
                    host_links_taken(host, &rec).await;
                }
                let ctx = self.ctx(host, pod.as_ref(), &rec.netns, id.as_str());
                for a in &rec.attachments {
                    if let Err(e) = native::delete_links(&a.native, &a.interface, &ctx).await {
                        problems.push(format!("{}: {}", a.interface, chain(&e)));
                    }
                }
            }
            Err(e) => problems.push(chain(&e)),
        }
        drop(pod);
        let _ = links_gone.send(true);
        crash::point("reap", 0, "deleted");
        if problems.is_empty() && !self.inner.cfg.removal_batch.is_zero() {
            // Settled with other reapers' records (`batch.rs`).
            return self.remove_in_batch(id, token).await;
        }
        let _lock = self.lock(&id).await;
        if !self.inner.reaping.owns(&id, token) {
            return;
        }
        self.settle_reaped(&id, &problems, Settle::Alone);
        // Only now is the sandbox listed again (if its record was kept): a listing between
        // the two would show a teardown that already answered as still detaching.
        self.inner.reaping.finish(&id, token);
    }

    /// Removes a reaped sandbox's record, or keeps it for the sweep and recovery when some
    /// of its links could not be deleted. Called under the sandbox's lock. Returns whether
    /// the record was removed.
    fn settle_reaped(&self, id: &SandboxId, problems: &[String], how: Settle) -> bool {
        if !problems.is_empty() {
            tracing::warn!(sandbox.id = %id, ?problems,
                "deleting the links of a torn-down pod failed; the record is kept for the sweep and recovery");
            return false;
        }
        match self.inner.store.load(id) {
            Ok(Some(now)) if now.tearing_down => {
                let removed = match how {
                    Settle::Alone => self.inner.store.remove(id),
                    Settle::Batched => self.inner.store.remove_unsynced(id),
                };
                match removed {
                    Ok(()) => return true,
                    Err(e) => tracing::warn!(sandbox.id = %id, error = %chain(&e),
                        "removing a reaped record failed"),
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(sandbox.id = %id, error = %chain(&e), "reaped record unreadable")
            }
        }
        false
    }
}

/// How a reaped record is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settle {
    /// With its own fsync of the state directory.
    Alone,
    /// In a batch that fsyncs the state directory once after all its removals.
    Batched,
}

/// Waits until the host-side links `rec` names (a bridge's host veth ends) are gone, looked
/// at after 20 ms and then at doubling intervals, for at most [`KERNEL_CLEANUP`]. A lookup
/// that fails ends the wait: the deletion that follows reports it.
async fn host_links_taken(host: &Handle, rec: &SandboxRecord) {
    let names: Vec<&str> = rec
        .attachments
        .iter()
        .flat_map(|a| a.native.host_links.iter().map(String::as_str))
        .collect();
    let until = tokio::time::Instant::now() + KERNEL_CLEANUP;
    let mut pause = Duration::from_millis(20);
    for name in names {
        // By ioctl: a look-up by netlink would wait for the rtnl lock.
        while let Ok(Some(_)) = host.peek_link(name) {
            let now = tokio::time::Instant::now();
            if now >= until {
                return;
            }
            tokio::time::sleep(pause.min(until - now)).await;
            pause = (pause * 2).min(LONGEST_PAUSE);
        }
    }
}

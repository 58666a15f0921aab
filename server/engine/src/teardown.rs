//! Teardown, detach and start-up recovery.
//!
//! A teardown marks the record [`SandboxRecord::tearing_down`] and every attachment
//! `Removing` in one atomic write before removing anything (a runtime's teardown: by the
//! mark file next to the record, `state::marks`, and it may remove the pod's addresses
//! meanwhile, never a lease); a detach marks only its one attachment `Removing`. Recovery
//! finishes exactly what was interrupted: the whole teardown when the flag is set, else
//! only the `Removing` attachments (as detach would), and undoes `Intent` ones. A record
//! written before the flag existed is recovered the per-attachment way, which never
//! removes more than was being removed.
//!
//! Teardown works from the sandbox record alone (no NAD needed: the record has the exact
//! config bytes), in reverse order, and is idempotent. With the netns gone only IPAM
//! leases and host-side leftovers are released. A corrupt record is never a silent
//! success: teardown falls back to what it can find (libcni cache files naming the
//! sandbox, host-local leases naming it, plexus's link group in the netns) and reports
//! what it could not.

use std::path::Path;

use plexus_core::cni;
use plexus_core::id::{InterfaceName, SandboxId};
use plexus_netlink::Handle;

use crate::crash;
use crate::engine::Engine;
use crate::error::{Error, Result, chain};
use crate::lock::SandboxLock;
use crate::observe::Call;
use crate::reap::{LinkDeletion, Reaper};
use crate::state::{AttachmentRecord, Driver, Phase, SandboxRecord};

mod early;
mod fallback;
mod quick;

/// What a teardown did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TeardownReport {
    /// False when no record (nor fallback evidence) existed: nothing was to be done.
    pub known: bool,
    /// Interfaces torn down, in teardown order.
    pub removed: Vec<String>,
    /// True when the record was unreadable and the fallback search was used.
    pub fallback: bool,
    /// What the fallback could not determine or remove (logged as well).
    pub unresolved: Vec<String>,
}

/// What start-up recovery did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Records found.
    pub sandboxes: usize,
    /// `(sandbox, interface)` of half-made attachments that were undone.
    pub undone: Vec<(String, String)>,
    /// Sandboxes whose interrupted teardown was finished.
    pub finished_teardowns: Vec<String>,
    /// `(sandbox, interface)` of interrupted detaches that were finished (the sandbox's
    /// other attachments are kept).
    pub finished_detaches: Vec<(String, String)>,
    /// `(sandbox, interface, address)` of host-local leases a power loss had lost and
    /// that were written back from the record (see `ipam::durable`).
    pub restored_leases: Vec<(String, String, std::net::IpAddr)>,
    /// Sandboxes with unreadable records (left for teardown's fallback).
    pub corrupt: Vec<String>,
    /// Failures (left in the records for a later teardown).
    pub failures: Vec<String>,
}

impl Engine {
    /// Tears a sandbox down: every attachment in reverse, exactly once. An unknown sandbox
    /// is `Ok` with `known = false`.
    /// Takes the sandbox's lock for itself.
    pub async fn teardown(&self, sandbox_id: &SandboxId) -> Result<TeardownReport> {
        self.teardown_locked(&self.lock(sandbox_id).await).await
    }

    /// Like [`Engine::teardown`] under a lock the caller already holds.
    pub async fn teardown_locked(&self, lock: &SandboxLock) -> Result<TeardownReport> {
        self.teardown_locked_as(lock, LinkDeletion::BeforeAnswer)
            .await
    }

    /// Like [`Engine::teardown_locked`], deleting the links the kernel destroys with the
    /// pod's netns when `links` says (see [`LinkDeletion`]).
    pub async fn teardown_locked_as(
        &self,
        lock: &SandboxLock,
        links: LinkDeletion,
    ) -> Result<TeardownReport> {
        let sandbox_id = lock.sandbox_id();
        self.held(lock, sandbox_id)?;
        if self.inner.reaping.is_pending(sandbox_id) {
            // Torn down already; only its links are still being deleted (`reap.rs`).
            if links == LinkDeletion::BeforeAnswer {
                self.inner.reaping.links_gone(sandbox_id).await;
            }
            return Ok(TeardownReport {
                known: true,
                ..Default::default()
            });
        }
        match self.inner.store.load(sandbox_id) {
            Ok(None) => Ok(TeardownReport::default()),
            Ok(Some(rec)) => self.teardown_record(rec, Call::Teardown, links).await,
            Err(Error::CorruptRecord { .. } | Error::ReadRecord { .. }) => {
                self.teardown_fallback(sandbox_id, Call::Teardown).await
            }
            Err(e) => Err(e),
        }
    }

    /// Removes one hot-plugged (or planned) attachment by interface name. Takes the
    /// sandbox's lock for itself.
    pub async fn detach(
        &self,
        sandbox_id: &SandboxId,
        interface: &InterfaceName,
    ) -> Result<AttachmentRecord> {
        self.detach_locked(&self.lock(sandbox_id).await, interface)
            .await
    }

    /// Like [`Engine::detach`] under a lock the caller already holds.
    pub async fn detach_locked(
        &self,
        lock: &SandboxLock,
        interface: &InterfaceName,
    ) -> Result<AttachmentRecord> {
        let sandbox_id = lock.sandbox_id();
        self.held(lock, sandbox_id)?;
        let mut rec = self
            .inner
            .store
            .load(sandbox_id)?
            .ok_or_else(|| Error::UnknownSandbox {
                sandbox_id: sandbox_id.to_string(),
            })?;
        let pos = rec
            .attachments
            .iter()
            .position(|a| a.interface == *interface)
            .ok_or_else(|| Error::NoSuchAttachment {
                sandbox_id: sandbox_id.to_string(),
                interface: interface.to_string(),
            })?;
        let target = &rec.attachments[pos];
        if target.driver == Driver::Runtime && !target.planned.primary {
            return Err(Error::DetachAdopted {
                sandbox_id: sandbox_id.to_string(),
                interface: target.interface.to_string(),
                network: target.network.clone(),
            });
        }
        if target.driver == Driver::Runtime || target.planned.primary {
            return Err(Error::DetachPrimary {
                sandbox_id: sandbox_id.to_string(),
                interface: target.interface.to_string(),
                network: target.network.clone(),
            });
        }
        rec.attachments[pos].phase = Phase::Removing;
        self.inner.store.save(&rec)?;
        crash::point("detach", pos, "removing");
        let pod = open_pod(&rec.netns).await;
        let a = rec.attachments[pos].clone();
        self.remove_one(&rec, &a, pod.as_ref(), Call::Detach, false)
            .await?;
        crash::point("detach", pos, "undone");
        rec.attachments.remove(pos);
        self.inner.store.save(&rec)?;
        Ok(a)
    }

    /// At start: finishes interrupted teardowns (record marked `tearing_down`) and, in
    /// every other record, finishes interrupted detaches (`Removing`) and undoes half-made
    /// attachments (`Intent`), keeping the rest.
    pub async fn recover(&self) -> Result<RecoveryReport> {
        let mut report = RecoveryReport::default();
        for id in self.inner.store.ids()? {
            let _lock = self.lock(&id).await;
            let mut rec = match self.inner.store.load(&id) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(sandbox_id = %id, error = %e, "unreadable record left for teardown");
                    report.corrupt.push(id.to_string());
                    continue;
                }
            };
            report.sandboxes += 1;
            if rec.tearing_down {
                match self
                    .teardown_record(rec, Call::Recover, LinkDeletion::BeforeAnswer)
                    .await
                {
                    Ok(_) => report.finished_teardowns.push(id.to_string()),
                    Err(e) => report.failures.push(format!("{id}: {}", chain(&e))),
                }
                continue;
            }
            self.restore_leases(&rec, &mut report).await;
            if rec.attachments.iter().all(|a| a.phase == Phase::Done) {
                self.hold(&rec, None);
                continue;
            }
            let pod = open_pod(&rec.netns).await;
            for i in (0..rec.attachments.len()).rev() {
                // Intent: a half-made attachment, undone. Removing: an interrupted detach
                // (never a teardown: that sets `tearing_down`), finished as detach would.
                let rollback = match rec.attachments[i].phase {
                    Phase::Done => continue,
                    Phase::Intent => true,
                    Phase::Removing => false,
                };
                let a = rec.attachments[i].clone();
                match self
                    .remove_one(&rec, &a, pod.as_ref(), Call::Recover, rollback)
                    .await
                {
                    Ok(()) => {
                        let done = (id.to_string(), a.interface.to_string());
                        match rollback {
                            true => report.undone.push(done),
                            false => report.finished_detaches.push(done),
                        }
                        rec.attachments.remove(i);
                    }
                    Err(e) => report
                        .failures
                        .push(format!("{id}/{}: {}", a.interface, chain(&e))),
                }
            }
            self.inner.store.save(&rec)?;
            self.hold(&rec, None);
        }
        Ok(report)
    }

    /// Writes back the host-local leases of `rec`'s made attachments that are missing
    /// from disk: a lease is not fsynced when taken, and the record is its durable copy.
    async fn restore_leases(&self, rec: &SandboxRecord, report: &mut RecoveryReport) {
        let made = rec.attachments.iter().filter(|a| a.phase == Phase::Done);
        for a in made.filter(|a| a.driver == Driver::Native) {
            for lease in a.native.leases.clone() {
                let restored = tokio::task::spawn_blocking(move || crate::ipam::restore(&lease))
                    .await
                    .map_err(|e| Error::Task(e.to_string()))
                    .and_then(|r| r);
                let (id, ifname) = (rec.sandbox_id.to_string(), a.interface.to_string());
                match restored {
                    Ok(ips) => {
                        for ip in ips {
                            tracing::warn!(sandbox_id = %id, interface = %ifname, %ip,
                                "wrote back a host-local lease lost from disk (a power loss?)");
                            report
                                .restored_leases
                                .push((id.clone(), ifname.clone(), ip));
                        }
                    }
                    Err(e) => report
                        .failures
                        .push(format!("{id}/{ifname}: {}", chain(&e))),
                }
            }
        }
    }

    /// Tears down everything a readable record names; removes the record on success.
    pub(crate) async fn teardown_record(
        &self,
        rec: SandboxRecord,
        call: Call,
        links: LinkDeletion,
    ) -> Result<TeardownReport> {
        match links {
            LinkDeletion::AfterMark => self.teardown_early(rec, call).await,
            _ => self.teardown_record_in(rec, call, links, None, None).await,
        }
    }

    /// [`Engine::teardown_record`]. `way`: the way into the netns when the caller has
    /// found it already (`early.rs`; else [`Engine::way_in`] finds it). `reaper`: an early
    /// answer's registered reaper, which runs here, in the caller's (background) task;
    /// with it the addresses are removed only through the netns the answer held open.
    async fn teardown_record_in(
        &self,
        mut rec: SandboxRecord,
        call: Call,
        links: LinkDeletion,
        way: Option<quick::Way>,
        reaper: Option<Reaper>,
    ) -> Result<TeardownReport> {
        let mut report = TeardownReport {
            known: true,
            ..Default::default()
        };
        // The flag and the phases go out in one atomic write (a runtime's teardown: its
        // mark file, `state::marks`), before any lease is released.
        let dirty = rec.mark_for_teardown();
        // The way into the pod's netns (`quick.rs`): the addresses removed in one job, or a
        // handle opened, while the record is marked; neither needs the other.
        let way = match way {
            Some(way) => way,
            None => self.way_in(&rec, links),
        };
        let listed: Vec<(usize, (&str, Option<&cni::Result>))> = rec
            .attachments
            .iter()
            .enumerate()
            .filter(|(_, a)| a.released_at_teardown())
            .map(|(i, a)| (i, (a.interface.as_str(), a.result.as_ref())))
            .collect();
        let (pod, stripped, written) = tokio::join!(
            way.handle(&rec),
            async {
                let quick::Way::Job(ns) = &way else {
                    return None;
                };
                let links: Vec<_> = listed.iter().map(|(_, l)| *l).collect();
                match links.is_empty() {
                    true => Some(Ok(Vec::new())),
                    false => Some(crate::native::remove_addresses(ns, &links).await),
                }
            },
            async {
                match (dirty, links) {
                    (false, _) => Ok(()),
                    (true, LinkDeletion::BeforeAnswer) => self.inner.store.save(&rec),
                    (true, _) => self.inner.store.mark(&rec.sandbox_id),
                }
            }
        );
        written?;
        // Per attachment: the outcome of its addresses' removal when that job ran.
        let mut removed_addrs: Vec<Option<plexus_netlink::Result<()>>> =
            rec.attachments.iter().map(|_| None).collect();
        let (pod, in_netns) = match stripped {
            Some(Ok(results)) => {
                for ((i, _), r) in listed.iter().zip(results) {
                    removed_addrs[*i] = Some(r);
                }
                (pod, true)
            }
            // After an early answer the netns path may be gone while the links still hold
            // their addresses: the leases stay until the sweep finds the netns gone.
            Some(Err(e)) if reaper.is_some() => {
                return Err(Error::TeardownIncomplete {
                    sandbox_id: rec.sandbox_id.to_string(),
                    problems: vec![format!("remove the pod's addresses: {}", chain(&e))],
                });
            }
            Some(Err(e)) => {
                tracing::warn!(error = %chain(&e),
                    "could not remove the pod's addresses in one job; removing them one by one");
                (way.open(&rec).await, false)
            }
            None => (pod, false),
        };
        let dhcp = crate::ipam::dhcp::LeaseStore::new(&self.inner.cfg.dhcp_lease_dir);
        // DHCP RELEASE needs the interfaces, so it goes before the group delete.
        let held = pod.as_ref().map(plexus_netlink::Handle::netns);
        crate::ipam::dhcp::release_sandbox(&dhcp, rec.sandbox_id.as_str(), held).await;
        // The runtime's teardown of a pod whose netns still exists answers before the
        // links the kernel destroys with that netns are deleted (`reap.rs`).
        let defer = links != LinkDeletion::BeforeAnswer && (pod.is_some() || in_netns);
        let deferred = |a: &AttachmentRecord| {
            defer
                && a.driver == Driver::Native
                && crate::native::deferrable(&a.native, a.result.as_ref())
        };
        // Fast path: every native pod link of this sandbox in one group delete (the
        // per-attachment lookups below then find nothing left to delete one by one).
        if let Some(pod) = &pod
            && !defer
            && rec
                .attachments
                .iter()
                .any(|a| a.driver == Driver::Native && a.native.host_device.is_none())
            && let Err(e) = pod.delete_group(self.inner.cfg.link_group).await
        {
            tracing::warn!(error = %e, "link group delete failed; deleting one by one");
        }
        let mut problems = Vec::new();
        let mut kept = Vec::new();
        // The attachments are independent: removed all at once (each DEL or delete in its
        // own span), reported in reverse plan order.
        let attachments = std::mem::take(&mut rec.attachments);
        let later: Vec<AttachmentRecord> = attachments
            .iter()
            .filter(|a| deferred(a))
            .cloned()
            .collect();
        let removed_now = attachments
            .iter()
            .any(|a| a.released_at_teardown() && !deferred(a));
        let (record, pod) = (&rec, pod.as_ref());
        let removals =
            futures::future::join_all(attachments.iter().zip(removed_addrs).enumerate().map(
                |(i, (a, addrs))| async move {
                    crash::point("teardown", i, "removing");
                    let removed = match deferred(a) {
                        true => self.release_one(record, a, pod, addrs, call).await,
                        false => self.remove_one(record, a, pod, call, false).await,
                    };
                    if removed.is_ok() {
                        crash::point("teardown", i, "undone");
                    }
                    removed
                },
            ))
            .await;
        for (a, removed) in attachments.into_iter().zip(removals).rev() {
            match removed {
                Ok(()) => {
                    if a.released_at_teardown() {
                        report.removed.push(a.interface.to_string());
                    }
                }
                Err(e) => {
                    problems.push(format!("{}: {}", a.interface, chain(&e)));
                    kept.push(a);
                }
            }
        }
        if problems.is_empty() {
            if later.is_empty() {
                self.inner.store.remove(&rec.sandbox_id)?;
                if let Some(reaper) = reaper {
                    self.inner.reaping.finish(&rec.sandbox_id, reaper.token);
                }
            } else {
                // The record says what is left: only the links still to delete. It is
                // written again only when something else plexus made went with them (an
                // exec'd network, a host device); the runtime's own interface, listed
                // for the record, was never plexus's to remove.
                rec.attachments = later;
                if removed_now {
                    self.inner.store.save(&rec)?;
                }
                match reaper {
                    // The netns is let go before the reaper waits for it to be removed.
                    Some(reaper) => {
                        drop(way);
                        self.reap(rec, reaper).await;
                    }
                    None => self.spawn_reap(rec),
                }
            }
            Ok(report)
        } else {
            kept.reverse();
            rec.attachments = kept;
            self.inner.store.save(&rec)?;
            Err(Error::TeardownIncomplete {
                sandbox_id: rec.sandbox_id.to_string(),
                problems,
            })
        }
    }
}

/// Opens the pod netns if it still exists.
pub(crate) async fn open_pod(netns: &Path) -> Option<Handle> {
    if netns.as_os_str().is_empty() {
        return None;
    }
    match Handle::open_path(netns).await {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::info!(netns = %netns.display(), error = %e, "pod netns not available");
            None
        }
    }
}

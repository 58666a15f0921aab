//! Teardown, detach and start-up recovery.
//!
//! A teardown marks the record [`SandboxRecord::tearing_down`] and every attachment
//! `Removing` in one atomic write before removing anything; a detach marks only its one
//! attachment `Removing`. Recovery finishes exactly what was interrupted: the whole
//! teardown when the flag is set, else only the `Removing` attachments (as detach would),
//! and undoes `Intent` ones. A record written before the flag existed is recovered the
//! per-attachment way, which never removes more than was being removed.
//!
//! Teardown works from the sandbox record alone (no NAD needed: the record has the exact
//! config bytes), in reverse order, and is idempotent. With the netns gone only IPAM
//! leases and host-side leftovers are released. A corrupt record is never a silent
//! success: teardown falls back to what it can find (libcni cache files naming the
//! sandbox, host-local leases naming it, plexus's link group in the netns) and reports
//! what it could not.

use std::path::{Path, PathBuf};

use plexus_core::id::{InterfaceName, SandboxId};
use plexus_core::plan::{ConfigForm, DelegateConfig, NetworkSource, Origin, PlannedAttachment};
use plexus_core::pod::PodIdentity;
use plexus_netlink::Handle;
use tracing::Instrument;

use crate::crash;
use crate::engine::Engine;
use crate::error::{Error, Result, chain};
use crate::exec::ExecRequest;
use crate::ipam;
use crate::lock::SandboxLock;
use crate::observe::{Call, Op, Outcome};
use crate::state::{AttachmentRecord, Driver, Phase, SandboxRecord};

/// Interfaces a fallback teardown never touches: the runtime's own (`lo`, and `eth0`
/// which the runtime's CNI tears down itself).
const RUNTIME_INTERFACES: &[&str] = &["lo", "eth0"];

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
        let sandbox_id = lock.sandbox_id();
        self.held(lock, sandbox_id)?;
        match self.inner.store.load(sandbox_id) {
            Ok(None) => Ok(TeardownReport::default()),
            Ok(Some(rec)) => self.teardown_record(rec, Call::Teardown).await,
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
                match self.teardown_record(rec, Call::Recover).await {
                    Ok(_) => report.finished_teardowns.push(id.to_string()),
                    Err(e) => report.failures.push(format!("{id}: {}", chain(&e))),
                }
                continue;
            }
            if rec.attachments.iter().all(|a| a.phase == Phase::Done) {
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
        }
        Ok(report)
    }

    /// Tears down everything a readable record names; removes the record on success.
    pub(crate) async fn teardown_record(
        &self,
        mut rec: SandboxRecord,
        call: Call,
    ) -> Result<TeardownReport> {
        let mut report = TeardownReport {
            known: true,
            ..Default::default()
        };
        let pod = open_pod(&rec.netns).await;
        // The flag and the phases go out in one atomic write, before anything is removed
        // (runtime-made attachments are never removed here: nothing to record for them).
        let removable = rec.attachments.iter().any(|a| a.released_at_teardown());
        let mut dirty = removable && !rec.tearing_down;
        rec.tearing_down = true;
        for a in rec.attachments.iter_mut() {
            if a.phase != Phase::Removing && a.released_at_teardown() {
                a.phase = Phase::Removing;
                dirty = true;
            }
        }
        if dirty {
            self.inner.store.save(&rec)?;
        }
        // DHCP RELEASE needs the interfaces, so it goes before the group delete.
        let dhcp = crate::ipam::dhcp::LeaseStore::new(&self.inner.cfg.dhcp_lease_dir);
        crate::ipam::dhcp::release_sandbox(&dhcp, rec.sandbox_id.as_str()).await;
        // Fast path: every native pod link of this sandbox in one group delete (the
        // per-attachment lookups below then find nothing left to delete one by one).
        if let Some(pod) = &pod
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
        let (record, pod) = (&rec, pod.as_ref());
        let removals =
            futures::future::join_all(attachments.iter().enumerate().map(|(i, a)| async move {
                crash::point("teardown", i, "removing");
                let removed = self.remove_one(record, a, pod, call, false).await;
                if removed.is_ok() {
                    crash::point("teardown", i, "undone");
                }
                removed
            }))
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
            self.inner.store.remove(&rec.sandbox_id)?;
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

    /// Teardown without a readable record: libcni cache entries, host-local leases and
    /// the link group, each naming the sandbox. The unreadable record is kept aside as
    /// `<id>.json.corrupt` for inspection.
    pub(crate) async fn teardown_fallback(
        &self,
        sandbox_id: &SandboxId,
        call: Call,
    ) -> Result<TeardownReport> {
        let path = self.inner.store.path(sandbox_id);
        let raw = std::fs::read(&path).unwrap_or_default();
        let netns = salvage_netns(&raw);
        tracing::warn!(%sandbox_id, record = %path.display(), "state record unreadable; tearing down from what can be found");
        let mut report = TeardownReport {
            known: true,
            fallback: true,
            ..Default::default()
        };
        let pod = match &netns {
            Some(p) => open_pod(p).await,
            None => None,
        };
        let dhcp = crate::ipam::dhcp::LeaseStore::new(&self.inner.cfg.dhcp_lease_dir);
        crate::ipam::dhcp::release_sandbox(&dhcp, sandbox_id.as_str()).await;
        match (&netns, &pod) {
            (Some(_), Some(pod)) => {
                if let Err(e) = pod.delete_group(self.inner.cfg.link_group).await {
                    report.unresolved.push(format!("link group delete: {e}"));
                }
            }
            (Some(p), None) => tracing::info!(netns = %p.display(), "pod netns already gone"),
            (None, _) => report
                .unresolved
                .push("pod netns path unknown: native links left to the netns removal".into()),
        }
        let pod_identity = PodIdentity::default();
        let cache = crate::delegate_exec::cached_entries(&self.inner.cfg, sandbox_id.as_str());
        match cache {
            Ok(entries) => {
                for entry in entries {
                    if RUNTIME_INTERFACES.contains(&entry.if_name.as_str()) {
                        continue;
                    }
                    // Listed by its file name, which the cache only gives to valid names.
                    let Ok(ifname) = InterfaceName::new(entry.if_name.as_str()) else {
                        report.unresolved.push(format!(
                            "cache entry of {} with an invalid interface name",
                            entry.network_name
                        ));
                        continue;
                    };
                    let att = attachment_from_cache(
                        &entry.network_name,
                        ifname,
                        entry.config,
                        entry.cni_args,
                    );
                    let prev = entry
                        .result
                        .and_then(|v| serde_json::from_value::<plexus_core::cni::Result>(v).ok());
                    let req = ExecRequest {
                        sandbox_id,
                        pod: &pod_identity,
                        netns: pod.as_ref().and(netns.as_deref()),
                        attachment: &att,
                        prev_result: prev.as_ref(),
                    };
                    let step = self.track(
                        "detach",
                        Op::Teardown,
                        call,
                        &att.network,
                        &att.interface,
                        Driver::Exec,
                    );
                    let deleted = self
                        .inner
                        .exec
                        .del(req)
                        .instrument(step.span())
                        .await
                        .map_err(|source| Error::Delegate {
                            verb: "DEL",
                            network: att.network.clone(),
                            interface: att.interface.to_string(),
                            source,
                        });
                    step.finish(&deleted, Outcome::Ok);
                    match deleted {
                        Ok(()) => report.removed.push(att.interface.to_string()),
                        Err(e) => report.unresolved.push(chain(&e)),
                    }
                }
            }
            Err(e) => report
                .unresolved
                .push(format!("libcni cache: {}", chain(&e))),
        }
        let dir = self.inner.cfg.ipam_data_dir.clone();
        let id = sandbox_id.to_string();
        let span = tracing::Span::current();
        let released = tokio::task::spawn_blocking(move || {
            span.in_scope(|| ipam::release_all_for_container(&dir, &id, RUNTIME_INTERFACES))
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?;
        match released {
            Ok(list) => {
                for (dir, ip, ifname) in list {
                    tracing::info!(lease = %dir.join(&ip).display(), ifname, "released lease of unreadable sandbox");
                    if !report.removed.contains(&ifname) {
                        report.removed.push(ifname);
                    }
                }
            }
            Err(e) => report
                .unresolved
                .push(format!("host-local leases: {}", chain(&e))),
        }
        report
            .unresolved
            .push("host-local leases under a config's own dataDir and moved host devices cannot be found without the record".into());
        for u in &report.unresolved {
            tracing::warn!(%sandbox_id, "fallback teardown: {u}");
        }
        let aside = PathBuf::from(format!("{}.corrupt", path.display()));
        if let Err(e) = std::fs::rename(&path, &aside) {
            tracing::warn!(error = %e, "could not move the unreadable record aside");
        }
        Ok(report)
    }
}

/// Opens the pod netns if it still exists.
async fn open_pod(netns: &Path) -> Option<Handle> {
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

/// Best-effort: the `"netns":"…"` value of a damaged record.
fn salvage_netns(raw: &[u8]) -> Option<PathBuf> {
    let text = String::from_utf8_lossy(raw);
    let start = text.find("\"netns\":\"")? + "\"netns\":\"".len();
    let end = text[start..].find('"')? + start;
    let p = &text[start..end];
    (!p.is_empty() && !p.contains('\\')).then(|| PathBuf::from(p))
}

fn attachment_from_cache(
    network: &str,
    ifname: InterfaceName,
    bytes: Vec<u8>,
    cni_args: Vec<(String, String)>,
) -> PlannedAttachment {
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let conflist = value.get("plugins").is_some_and(|p| p.is_array());
    let plugin_types = if conflist {
        value["plugins"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| p["type"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        value["type"]
            .as_str()
            .map(|t| vec![t.to_string()])
            .unwrap_or_default()
    };
    PlannedAttachment {
        index: 0,
        network: network.to_string(),
        interface: ifname,
        origin: Origin::Annotation,
        primary: false,
        source: NetworkSource::File {
            path: String::new(),
        },
        config: DelegateConfig {
            form: if conflist {
                ConfigForm::Conflist
            } else {
                ConfigForm::Conf
            },
            name: network.to_string(),
            cni_version: value["cniVersion"].as_str().unwrap_or("").to_string(),
            plugin_types,
            bytes,
        },
        runtime_config: Default::default(),
        cni_args: None,
        extra_cni_args: cni_args
            .into_iter()
            .filter(|(k, _)| !k.starts_with("K8S_POD_") && k != "IgnoreUnknown")
            .collect(),
        default_route: None,
        route_plan: Default::default(),
        resource_name: None,
        force_exec: true,
        runtime_managed: false,
        release_on_teardown: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_is_salvaged_from_a_truncated_record() {
        let raw = br#"{"version":1,"sandbox_id":"x","pod":{"namespace":"a","name":"b","uid":""},"netns":"/var/run/netns/cni-1","attachments":[{"netw"#;
        assert_eq!(
            salvage_netns(raw),
            Some(PathBuf::from("/var/run/netns/cni-1"))
        );
        assert_eq!(salvage_netns(br#"{"version":1,"netns":"/var/ru"#), None);
        assert_eq!(salvage_netns(b""), None);
    }
}

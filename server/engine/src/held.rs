//! The pod network namespaces plexusd holds open, from a sandbox's setup to its teardown.
//!
//! containerd removes a pod's netns path right after its NRI StopPodSandbox and its own CNI
//! DEL, and a namespace nobody holds is destroyed with its virtual links soon after its path
//! is gone (`docs/teardown.md`). plexusd holds each set-up pod's namespace by a file
//! descriptor (one per pod; plexusd raises its soft `RLIMIT_NOFILE` to the hard limit at
//! start), so whenever the pod's teardown comes, before or after the path is gone, it
//! reaches the same namespace: the addresses are removed before their leases are released,
//! and host devices are moved back, through the descriptor. The teardown takes the
//! descriptor and lets go of it when done; start-up recovery holds the namespaces of the
//! records it keeps whose path is still there.
//!
//! So a runtime's stop need not wait for plexusd when everything plexusd releases at the
//! pod's teardown can be released through the held namespace ([`Engine::stop_at_once`]):
//! native links the namespace takes with it, with their addresses recorded and no DHCP
//! lease. An exec'd plugin is given the netns *path*, which is gone after the stop; should
//! one be hot-plugged after such a setup, its DEL is given the held descriptor's
//! `/proc/<plexusd>/fd/<n>` instead ([`plugin_netns`]).

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use plexus_core::id::SandboxId;
use plexus_netlink::{Handle, Netns};

use crate::engine::Engine;
use crate::state::{Driver, SandboxRecord};

/// The held namespaces, by sandbox.
#[derive(Debug, Default)]
pub(crate) struct Held {
    map: Mutex<HashMap<SandboxId, Hold>>,
}

#[derive(Debug)]
struct Hold {
    netns: Netns,
    /// [`Engine::stop_at_once`]'s answer, as of the last setup or hot-plug.
    at_once: bool,
}

impl Held {
    fn lock(&self) -> MutexGuard<'_, HashMap<SandboxId, Hold>> {
        // Plain values: a panicked holder cannot leave them half-updated.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the sandbox's namespace (a teardown's): no longer held once dropped.
    pub(crate) fn take(&self, sandbox_id: &SandboxId) -> Option<Netns> {
        self.lock().remove(sandbox_id).map(|h| h.netns)
    }

    /// How many namespaces are held.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

impl Engine {
    /// Whether every attachment plexus releases at `rec`'s teardown can be released through
    /// its namespace alone (module docs), so a teardown may answer once the record is marked.
    pub(crate) fn releasable_in_netns(&self, rec: &SandboxRecord) -> bool {
        let dhcp = crate::ipam::dhcp::LeaseStore::new(&self.inner.cfg.dhcp_lease_dir);
        !rec.netns.as_os_str().is_empty()
            && !crate::ipam::dhcp::holds_sandbox(&dhcp, rec.sandbox_id.as_str())
            && rec
                .attachments
                .iter()
                .filter(|a| a.released_at_teardown())
                .all(|a| {
                    a.driver == Driver::Native
                        && crate::native::deferrable(&a.native, a.result.as_ref())
                })
    }

    /// Holds `rec`'s namespace: `netns` (a setup's own, duplicated), or else opened by the
    /// recorded path unless one is held already. A path that cannot be opened is not held
    /// (the pod is gone, or its teardown reports why).
    pub(crate) fn hold(&self, rec: &SandboxRecord, netns: Option<Netns>) {
        if netns.is_none() && self.inner.held.lock().contains_key(&rec.sandbox_id) {
            return;
        }
        self.hold_again(rec, netns);
    }

    /// Like [`Engine::hold`], and works out [`Engine::stop_at_once`] again for a namespace
    /// held already (after a hot-plug changed what the teardown releases).
    pub(crate) fn hold_again(&self, rec: &SandboxRecord, netns: Option<Netns>) {
        if rec.netns.as_os_str().is_empty() {
            return;
        }
        let at_once = self.releasable_in_netns(rec);
        let mut held = self.inner.held.lock();
        if let Some(hold) = held.get_mut(&rec.sandbox_id) {
            hold.at_once = at_once;
            if let Some(netns) = netns {
                hold.netns = netns;
            }
            return;
        }
        let netns = match netns {
            Some(netns) => netns,
            None => match Netns::open(&rec.netns) {
                Ok(netns) => netns,
                Err(e) => {
                    tracing::debug!(sandbox.id = %rec.sandbox_id, error = %e,
                        "pod netns not held (its path could not be opened)");
                    return;
                }
            },
        };
        held.insert(rec.sandbox_id.clone(), Hold { netns, at_once });
    }

    /// True when the runtime's stop of this sandbox may be answered without waiting for
    /// plexusd's teardown (module docs): its namespace is held, and everything plexus made
    /// there is released through it. False for an unknown sandbox.
    pub fn stop_at_once(&self, sandbox_id: &SandboxId) -> bool {
        self.inner
            .held
            .lock()
            .get(sandbox_id)
            .is_some_and(|h| h.at_once)
    }

    /// How many pod namespaces are held open (one file descriptor each).
    pub fn held_netns(&self) -> usize {
        self.inner.held.len()
    }
}

/// The netns path an exec'd plugin is given for `rec`'s pod, reached through `pod`: the
/// recorded path while it is there; once the runtime has removed it (a stop answered at
/// once, `pod` opened on the held netns), `/proc/<plexusd>/fd/<n>` of `pod`'s descriptor,
/// which opens the same namespace for the plugin (a child of plexusd) while `pod` lives.
pub(crate) fn plugin_netns(rec: &SandboxRecord, pod: &Handle) -> PathBuf {
    if rec.netns.as_os_str().is_empty() || std::fs::symlink_metadata(&rec.netns).is_ok() {
        return rec.netns.clone();
    }
    let fd = pod.netns().as_fd().as_raw_fd();
    PathBuf::from(format!("/proc/{}/fd/{fd}", std::process::id()))
}

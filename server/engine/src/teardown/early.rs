//! The early answer to NRI StopPodSandbox ([`LinkDeletion::AfterMark`]).
//!
//! containerd waits for the NRI StopPodSandbox answer before its own CNI DEL, so whatever
//! plexus does before answering is added to every pod's stop (`docs/teardown.md`). So when
//! every attachment plexus removes at teardown is a native link that goes with the netns,
//! the teardown answers once the record is marked `tearing_down` (the mark file) and the
//! pod's netns is held open, and removes the addresses, then releases the leases, in the
//! background, under a reaper registered before the answer. The background work first waits
//! (up to `EngineConfig::links_grace`) for the runtime to remove the netns path, the end of
//! its own network teardown: run beside containerd's CNI DEL, it made the pod's
//! StopPodSandbox slower on a busy 2-core node (paths bench, answered at once: 1.8 ms more
//! than primary only, 1000 pods; 0.9 ms when it waits, 400 pods).
//!
//! - Held open, the netns cannot be destroyed under the addresses' removal, and no lease is
//!   released while a link still holds its address (a netns whose path is gone may keep its
//!   links for a moment). If the addresses cannot be removed, the leases stay until the
//!   sweep finds the netns gone.
//! - From the answer on the sandbox is pending: another teardown of it answers at once, it
//!   is not listed, and a new setup of the same id waits for the reaper, as after any
//!   deferred teardown (`reap.rs`).
//! - A crash after the answer leaves the marked record, which recovery tears down.
//!
//! The runtime sees only the answer: containerd logs an NRI StopPodSandbox failure and goes
//! on, so an error after the answer loses nothing it would have acted on. It is logged, and
//! the record is kept for the sweep.

use super::{TeardownReport, quick};
use crate::engine::Engine;
use crate::error::{Result, chain};
use crate::observe::Call;
use crate::reap::LinkDeletion;
use crate::state::SandboxRecord;

impl Engine {
    /// Marks `rec`'s teardown and answers, releasing in the background (module docs); a
    /// teardown this does not fit (nothing to remove, a link that must come back, a DHCP
    /// lease, a netns already gone) runs as [`LinkDeletion::AfterAnswer`] does.
    pub(super) async fn teardown_early(
        &self,
        mut rec: SandboxRecord,
        call: Call,
    ) -> Result<TeardownReport> {
        let removable = rec.attachments.iter().any(|a| a.released_at_teardown());
        let way = removable.then(|| self.way_in(&rec, LinkDeletion::AfterAnswer));
        let netns = match way {
            Some(quick::Way::Job(netns)) => netns,
            way => {
                return self
                    .teardown_record_in(rec, call, LinkDeletion::AfterAnswer, way, None)
                    .await;
            }
        };
        if rec.mark_for_teardown() {
            self.inner.store.mark(&rec.sandbox_id)?;
        }
        let report = TeardownReport {
            known: true,
            removed: rec
                .attachments
                .iter()
                .rev()
                .filter(|a| a.released_at_teardown())
                .map(|a| a.interface.to_string())
                .collect(),
            ..Default::default()
        };
        let id = rec.sandbox_id.clone();
        self.spawn_reaper(&id, |engine, reaper| async move {
            let (id, token) = (rec.sandbox_id.clone(), reaper.token);
            // Off the runtime's own network teardown (module docs); the netns is held.
            engine.netns_removed(&rec.netns).await;
            let way = Some(quick::Way::Job(netns));
            let done = engine
                .teardown_record_in(rec, call, LinkDeletion::AfterAnswer, way, Some(reaper))
                .await;
            if let Err(e) = done {
                tracing::warn!(sandbox.id = %id, error = %chain(&e),
                    "releasing a stopped pod's addresses and leases after the answer failed; \
                     the record is kept for the sweep and recovery");
                let _lock = engine.lock(&id).await;
                engine.inner.reaping.finish(&id, token);
            }
        });
        Ok(report)
    }
}

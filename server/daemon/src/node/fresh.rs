//! When each sandbox's setup or hot-plug last started or finished, and whether one is in
//! flight, so a Reconcile never tears down a sandbox set up after its live list was taken.
//!
//! The runtime's live list is a snapshot: a pod whose SetupPod arrives (or finishes) after
//! the Reconcile request arrived is not in it although it is alive. Reconcile therefore
//! re-checks every stale sandbox under its lock and keeps those touched since its arrival
//! (and those with a setup waiting or running). In memory only: after a restart nothing is
//! in flight and every record predates any Reconcile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
struct Mark {
    in_flight: usize,
    last: Instant,
}

/// Setup/attach activity per sandbox.
#[derive(Debug, Default, Clone)]
pub(super) struct SetupMarks(Arc<Mutex<HashMap<String, Mark>>>);

/// Held while one setup or attach of a sandbox waits or runs; marks its end when dropped.
#[derive(Debug)]
pub(super) struct InFlight {
    marks: SetupMarks,
    sandbox_id: String,
}

impl SetupMarks {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Mark>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks a setup or attach of `sandbox_id` as started now, until the guard is dropped.
    pub(super) fn begin(&self, sandbox_id: &str) -> InFlight {
        let now = Instant::now();
        let mut map = self.map();
        let mark = map.entry(sandbox_id.to_owned()).or_insert(Mark {
            in_flight: 0,
            last: now,
        });
        mark.in_flight += 1;
        mark.last = now;
        InFlight {
            marks: self.clone(),
            sandbox_id: sandbox_id.to_owned(),
        }
    }

    /// Why a sandbox must be kept by a Reconcile that arrived at `since`: a setup or attach
    /// is waiting or running, or one started or finished after `since`. `None`: it may go.
    pub(super) fn busy_since(&self, sandbox_id: &str, since: Instant) -> Option<&'static str> {
        let map = self.map();
        let mark = map.get(sandbox_id)?;
        if mark.in_flight > 0 {
            Some("a setup or attach is in flight")
        } else if mark.last > since {
            Some("set up after the reconcile request arrived")
        } else {
            None
        }
    }

    /// Forgets a torn-down sandbox unless something for it is in flight.
    pub(super) fn forget(&self, sandbox_id: &str) {
        let mut map = self.map();
        if map.get(sandbox_id).is_some_and(|m| m.in_flight == 0) {
            map.remove(sandbox_id);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut map = self.marks.map();
        if let Some(mark) = map.get_mut(&self.sandbox_id) {
            mark.in_flight = mark.in_flight.saturating_sub(1);
            mark.last = Instant::now();
        }
    }
}

//! Sandboxes plexusd has finished with at StopPodSandbox. containerd sends
//! RemovePodSandbox after it; a second `TeardownPod` then finds nothing to do and only
//! costs the pod's removal a round trip to plexusd, so the plugin answers it at once.
//!
//! Only a Stop that plexusd answered with success counts: after a failed or timed-out one,
//! Remove asks plexusd again. A stopped sandbox is never started again (the kubelet makes a
//! new sandbox with a new id), so nothing can be set up for it between the two events.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// How many stopped sandboxes are remembered. A forgotten one costs only the call its
/// Remove would have saved; a node runs far fewer pods than this between a Stop and its
/// Remove.
pub const REMEMBERED: usize = 4096;

/// A bounded set of sandbox ids, oldest forgotten first.
#[derive(Debug, Default)]
pub struct Stopped {
    ids: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl Stopped {
    /// Notes that plexusd tore `id` down at its Stop.
    pub fn insert(&self, id: &str) {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        let (set, order) = &mut *ids;
        if !set.insert(id.to_owned()) {
            return;
        }
        order.push_back(id.to_owned());
        while order.len() > REMEMBERED {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
    }

    /// True, once, when `id`'s Stop was torn down by plexusd; forgets it.
    pub fn take(&self, id: &str) -> bool {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        let (set, order) = &mut *ids;
        if !set.remove(id) {
            return false;
        }
        order.retain(|o| o != id);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_taken_once_and_the_oldest_is_forgotten_first() {
        let s = Stopped::default();
        s.insert("a");
        s.insert("a");
        assert!(s.take("a"));
        assert!(!s.take("a"), "taken once");
        assert!(!s.take("never"));
        for i in 0..=REMEMBERED {
            s.insert(&format!("sb{i}"));
        }
        assert!(!s.take("sb0"), "the oldest is forgotten past the bound");
        assert!(s.take("sb1") && s.take(&format!("sb{REMEMBERED}")));
        let ids = s.ids.lock().unwrap();
        assert_eq!((ids.0.len(), ids.1.len()), (REMEMBERED - 2, REMEMBERED - 2));
    }
}

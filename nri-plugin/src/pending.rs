//! Pods whose network setup went on after plexusd answered their RunPodSandbox
//! (`SetupPodResponse.finishing`): their containers are held back at NRI CreateContainer
//! until a SetupPod says the networks are up. Kept in memory for the plugin's lifetime,
//! across runtime sessions, and bounded: past [`CAP`] pods the oldest is forgotten with a
//! warning (each is normally cleared within seconds, by its first container or its Stop).

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// Pods remembered at most.
pub const CAP: usize = 4096;

/// The set of sandbox ids whose setup is still finishing.
#[derive(Debug, Default)]
pub struct Pending {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    order: VecDeque<String>,
    ids: HashSet<String>,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Plain values: a panicked holder cannot leave them half-updated.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remembers `id` as finishing.
    pub fn insert(&self, id: &str) {
        let mut inner = self.lock();
        if !inner.ids.insert(id.to_owned()) {
            return;
        }
        inner.order.push_back(id.to_owned());
        while inner.order.len() > CAP {
            if let Some(old) = inner.order.pop_front()
                && inner.ids.remove(&old)
            {
                tracing::warn!(sandbox = %old, cap = CAP,
                    "too many pods with a setup finishing; forgetting the oldest, whose \
                     containers are no longer held back");
            }
        }
    }

    /// Whether `id`'s setup is still finishing.
    pub fn contains(&self, id: &str) -> bool {
        self.lock().ids.contains(id)
    }

    /// Forgets `id` (its setup is done, or the pod stopped).
    pub fn remove(&self, id: &str) {
        let mut inner = self.lock();
        if inner.ids.remove(id) {
            inner.order.retain(|o| o != id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_kept_until_removed_and_the_oldest_goes_past_the_cap() {
        let p = Pending::default();
        p.insert("a");
        p.insert("a");
        assert!(p.contains("a"));
        p.remove("a");
        assert!(!p.contains("a"));
        for i in 0..=CAP {
            p.insert(&i.to_string());
        }
        assert!(!p.contains("0"), "the oldest is forgotten");
        assert!(p.contains("1") && p.contains(&CAP.to_string()));
        assert_eq!(p.lock().order.len(), CAP);
    }
}

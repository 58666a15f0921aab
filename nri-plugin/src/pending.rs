//! Pods whose network setup went on after plexusd answered their RunPodSandbox
//! (`SetupPodResponse.finishing`): their containers are held back at NRI CreateContainer
//! until a SetupPod says the networks are up. Each pod is kept as its RunPodSandbox
//! carried it, so that SetupPod names the same netns and annotations whatever a
//! CreateContainer carries. Kept in memory for the plugin's lifetime, across runtime
//! sessions, and bounded: past [`CAP`] pods the oldest is forgotten with a warning (each is
//! normally cleared within seconds, by its first container or its Stop).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use plexus_proto::nri::PodSandbox;

/// Pods remembered at most.
pub const CAP: usize = 4096;

/// The pods whose setup is still finishing, by sandbox id.
#[derive(Debug, Default)]
pub struct Pending {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    order: VecDeque<String>,
    pods: HashMap<String, PodSandbox>,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Plain values: a panicked holder cannot leave them half-updated.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remembers `pod` as finishing.
    pub fn insert(&self, pod: &PodSandbox) {
        let mut inner = self.lock();
        if inner.pods.insert(pod.id.clone(), pod.clone()).is_some() {
            return;
        }
        inner.order.push_back(pod.id.clone());
        while inner.order.len() > CAP {
            if let Some(old) = inner.order.pop_front()
                && inner.pods.remove(&old).is_some()
            {
                tracing::warn!(sandbox = %old, cap = CAP,
                    "too many pods with a setup finishing; forgetting the oldest, whose \
                     containers are no longer held back");
            }
        }
    }

    /// The pod `id` as its RunPodSandbox carried it, while its setup is finishing.
    pub fn get(&self, id: &str) -> Option<PodSandbox> {
        self.lock().pods.get(id).cloned()
    }

    /// Forgets `id` (its setup is done, or the pod stopped).
    pub fn remove(&self, id: &str) {
        let mut inner = self.lock();
        if inner.pods.remove(id).is_some() {
            inner.order.retain(|o| o != id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_are_kept_until_removed_and_the_oldest_goes_past_the_cap() {
        let pod = |id: &str| PodSandbox {
            id: id.into(),
            name: format!("pod-{id}"),
            ..Default::default()
        };
        let p = Pending::default();
        p.insert(&pod("a"));
        p.insert(&pod("a"));
        assert_eq!(p.get("a").map(|a| a.name), Some("pod-a".to_owned()));
        p.remove("a");
        assert!(p.get("a").is_none());
        assert!(p.lock().order.is_empty());
        for i in 0..=CAP {
            p.insert(&pod(&i.to_string()));
        }
        assert!(p.get("0").is_none(), "the oldest is forgotten");
        assert!(p.get("1").is_some() && p.get(&CAP.to_string()).is_some());
        assert_eq!(p.lock().order.len(), CAP);
    }
}

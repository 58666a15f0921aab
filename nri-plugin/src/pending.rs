//! What plexus-nri remembers about pods between their events, in memory for the plugin's
//! lifetime, across runtime sessions, and bounded: past [`CAP`] pods the oldest is
//! forgotten ([`Remembered`]).
//!
//! - [`Pending`]: pods whose network setup went on after plexusd answered their
//!   RunPodSandbox (`SetupPodResponse.finishing`): their containers are held back at NRI
//!   CreateContainer until a SetupPod says the networks are up. Each pod is kept as its
//!   RunPodSandbox carried it, so that SetupPod names the same netns and annotations
//!   whatever a CreateContainer carries. Each is normally cleared within seconds, by its
//!   first container or its Stop; forgetting one is warned about (its containers are no
//!   longer held back).
//! - [`AtOnce`]: pods whose StopPodSandbox plexusd said may be answered before its
//!   teardown (`SetupPodResponse.stop_at_once`), kept until their Stop. Forgetting one
//!   only makes its Stop wait for plexusd, as every Stop did before.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use plexus_proto::nri::PodSandbox;

/// Pods remembered at most.
pub const CAP: usize = 4096;

/// The pods whose setup is still finishing, by sandbox id.
pub type Pending = Remembered<PodSandbox>;

/// The pods whose Stop is answered at once, by sandbox id.
pub type AtOnce = Remembered<()>;

/// Up to [`CAP`] values by sandbox id; past it the oldest is forgotten, with `warning`
/// logged when there is one.
#[derive(Debug)]
pub struct Remembered<V> {
    inner: Mutex<Inner<V>>,
    warning: Option<&'static str>,
}

#[derive(Debug)]
struct Inner<V> {
    order: VecDeque<String>,
    pods: HashMap<String, V>,
}

impl Default for Pending {
    fn default() -> Self {
        Remembered::new(Some(
            "too many pods with a setup finishing; forgetting the oldest, whose containers \
             are no longer held back",
        ))
    }
}

impl Default for AtOnce {
    fn default() -> Self {
        Remembered::new(None)
    }
}

impl<V: Clone> Remembered<V> {
    fn new(warning: Option<&'static str>) -> Self {
        Remembered {
            inner: Mutex::new(Inner {
                order: VecDeque::new(),
                pods: HashMap::new(),
            }),
            warning,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<V>> {
        // Plain values: a panicked holder cannot leave them half-updated.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remembers `value` for sandbox `id`.
    pub fn insert(&self, id: &str, value: V) {
        let mut inner = self.lock();
        if inner.pods.insert(id.to_owned(), value).is_some() {
            return;
        }
        inner.order.push_back(id.to_owned());
        while inner.order.len() > CAP {
            if let Some(old) = inner.order.pop_front()
                && inner.pods.remove(&old).is_some()
                && let Some(warning) = self.warning
            {
                tracing::warn!(sandbox = %old, cap = CAP, "{warning}");
            }
        }
    }

    /// What is remembered for sandbox `id`.
    pub fn get(&self, id: &str) -> Option<V> {
        self.lock().pods.get(id).cloned()
    }

    /// Forgets `id`; what was remembered for it.
    pub fn remove(&self, id: &str) -> Option<V> {
        let mut inner = self.lock();
        let value = inner.pods.remove(id);
        if value.is_some() {
            inner.order.retain(|o| o != id);
        }
        value
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
        p.insert("a", pod("a"));
        p.insert("a", pod("a"));
        assert_eq!(p.get("a").map(|a| a.name), Some("pod-a".to_owned()));
        assert!(p.remove("a").is_some());
        assert!(p.get("a").is_none() && p.remove("a").is_none());
        assert!(p.lock().order.is_empty());
        for i in 0..=CAP {
            p.insert(&i.to_string(), pod(&i.to_string()));
        }
        assert!(p.get("0").is_none(), "the oldest is forgotten");
        assert!(p.get("1").is_some() && p.get(&CAP.to_string()).is_some());
        assert_eq!(p.lock().order.len(), CAP);
    }

    #[test]
    fn stops_at_once_are_kept_until_taken() {
        let s = AtOnce::default();
        s.insert("a", ());
        assert_eq!(s.remove("a"), Some(()));
        assert_eq!(s.remove("a"), None, "taken once");
        for i in 0..=CAP {
            s.insert(&i.to_string(), ());
        }
        assert_eq!(s.get("0"), None, "the oldest is forgotten, silently");
        assert_eq!(s.lock().pods.len(), CAP);
    }
}

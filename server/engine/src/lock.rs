//! The one per-sandbox lock: every change to a sandbox (setup, hot-plug, teardown, recovery)
//! runs while its [`SandboxLock`] is held, so two callers can never interleave record writes
//! or link changes for one pod.
//!
//! There is one lock map per [`crate::Engine`]. A caller that must wait for the sandbox
//! before taking anything else (plexusd takes its parallelism slot only once the sandbox is
//! its own) locks first with [`crate::Engine::lock`] and hands the guard to the `*_locked`
//! operations; the plain operations lock for themselves. A map entry lives only while
//! someone holds or waits for it, so the map stays as small as the work in flight, and a
//! waiter that gives up (its future dropped at a deadline) leaves nothing behind.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use plexus_core::id::SandboxId;
use tokio::sync::OwnedMutexGuard;

type Map = Arc<Mutex<HashMap<SandboxId, Arc<tokio::sync::Mutex<()>>>>>;

/// Per-sandbox async mutexes, created on demand and forgotten when unused.
#[derive(Debug, Default, Clone)]
pub struct SandboxLocks {
    map: Map,
}

/// The exclusive right to change one sandbox; released (and its entry forgotten when nobody
/// else waits) on drop.
#[derive(Debug)]
pub struct SandboxLock {
    id: SandboxId,
    guard: Option<OwnedMutexGuard<()>>,
    map: Map,
}

impl SandboxLocks {
    /// An empty lock map (an engine has its own; tests of other layers may make one).
    pub fn new() -> SandboxLocks {
        SandboxLocks::default()
    }

    /// Waits until `id` is free and takes it. Bound the wait with a timeout around this
    /// future: dropping it while waiting is clean.
    pub async fn lock(&self, id: &SandboxId) -> SandboxLock {
        let mutex = Arc::clone(self.entries().entry(id.clone()).or_default());
        // The guard exists before the wait, so a dropped wait still forgets the entry.
        let mut lock = SandboxLock {
            id: id.clone(),
            guard: None,
            map: Arc::clone(&self.map),
        };
        lock.guard = Some(mutex.lock_owned().await);
        lock
    }

    /// Sandboxes held or waited for right now.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// True when no sandbox is held or waited for.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Callers holding or waiting for `id` right now (0 when it is free).
    pub fn users(&self, id: &SandboxId) -> usize {
        // The map's own reference is not a user.
        self.entries()
            .get(id)
            .map_or(0, |m| Arc::strong_count(m) - 1)
    }

    /// Whether `lock` was taken from this map.
    pub fn issued(&self, lock: &SandboxLock) -> bool {
        Arc::ptr_eq(&self.map, &lock.map) && lock.guard.is_some()
    }

    fn entries(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<SandboxId, Arc<tokio::sync::Mutex<()>>>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SandboxLock {
    /// The sandbox this lock is for.
    pub fn sandbox_id(&self) -> &SandboxId {
        &self.id
    }
}

impl Drop for SandboxLock {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        self.guard = None;
        // Only the map holds the mutex now (no holder, no waiter): forget it. A waiter
        // holds a clone, so its entry stays.
        if map.get(&self.id).is_some_and(|m| Arc::strong_count(m) == 1) {
            map.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn id(s: &str) -> SandboxId {
        SandboxId::new(s).unwrap()
    }

    #[tokio::test]
    async fn one_holder_per_sandbox_and_entries_are_forgotten() {
        let locks = SandboxLocks::new();
        let held = locks.lock(&id("sb1")).await;
        let other = locks.lock(&id("sb2")).await;
        assert_eq!(locks.len(), 2);
        // A wait given up at its deadline leaves the entry to its holder only.
        let gave_up = tokio::time::timeout(Duration::from_millis(10), locks.lock(&id("sb1"))).await;
        assert!(gave_up.is_err(), "sb1 is held");
        drop(other);
        assert_eq!(locks.len(), 1);
        let waiter = tokio::spawn({
            let locks = locks.clone();
            async move { locks.lock(&id("sb1")).await.sandbox_id().to_string() }
        });
        while locks.users(&id("sb1")) < 2 {
            tokio::task::yield_now().await;
        }
        assert!(!waiter.is_finished(), "the waiter waits for the holder");
        drop(held);
        assert_eq!(waiter.await.unwrap(), "sb1");
        assert!(locks.is_empty());
    }

    #[tokio::test]
    async fn a_dropped_wait_on_a_released_sandbox_leaves_no_entry() {
        let locks = SandboxLocks::new();
        let held = locks.lock(&id("sb1")).await;
        let sb1 = id("sb1");
        let wait = tokio::time::timeout(Duration::from_millis(10), locks.lock(&sb1));
        assert!(wait.await.is_err());
        drop(held);
        assert!(locks.is_empty());
    }

    #[tokio::test]
    async fn a_lock_knows_its_map() {
        let a = SandboxLocks::new();
        let b = SandboxLocks::new();
        let lock = a.lock(&id("sb1")).await;
        assert!(a.issued(&lock));
        assert!(!b.issued(&lock));
    }
}

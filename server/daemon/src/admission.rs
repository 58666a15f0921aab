//! Admission control: bounded parallelism, a bounded queue, and one-at-a-time per sandbox.
//!
//! Under a burst of pod starts, Multus's daemon spawned unbounded work and was OOM-killed
//! (multus-cni #1346). Here at most `max_parallel` mutating requests run; up to `max_queued`
//! more wait; anything beyond is refused at once with `RESOURCE_EXHAUSTED`, so memory stays
//! bounded. Independently, work on one sandbox is serialised by a per-sandbox async mutex
//! whose entry is removed as soon as nobody holds or waits for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};

/// Limits on concurrent mutating requests.
#[derive(Debug)]
pub struct Admission {
    running: Arc<Semaphore>,
    queued: AtomicUsize,
    max_parallel: usize,
    max_queued: usize,
}

/// A slot to run one request; released on drop.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl Admission {
    /// At most `max_parallel` running (at least 1) and `max_queued` waiting.
    pub fn new(max_parallel: usize, max_queued: usize) -> Self {
        let max_parallel = max_parallel.max(1);
        Self {
            running: Arc::new(Semaphore::new(max_parallel)),
            queued: AtomicUsize::new(0),
            max_parallel,
            max_queued,
        }
    }

    /// Requests waiting for a slot right now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Requests running right now.
    pub fn running(&self) -> usize {
        self.max_parallel - self.running.available_permits()
    }

    /// Takes a slot, waiting in the queue if needed (until `deadline`), or refuses when the
    /// queue is full. `operation` names the request for the deadline message.
    pub async fn enter(&self, operation: &str, deadline: Option<Instant>) -> Result<Slot> {
        if let Ok(permit) = Arc::clone(&self.running).try_acquire_owned() {
            return Ok(Slot { _permit: permit });
        }
        let position = self.queued.fetch_add(1, Ordering::AcqRel);
        let _leave = QueueTicket(&self.queued);
        if position >= self.max_queued {
            return Err(Error::QueueFull {
                max_parallel: self.max_parallel,
                max_queued: self.max_queued,
            });
        }
        let acquire = Arc::clone(&self.running).acquire_owned();
        let permit = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline.into(), acquire)
                .await
                .map_err(|_| Error::DeadlineExceeded {
                    operation: operation.to_owned(),
                    undone: "nothing was done (the request was still queued)".to_owned(),
                })?,
            None => acquire.await,
        };
        // The semaphore is never closed.
        let permit = permit.map_err(|e| Error::Worker {
            operation: operation.to_owned(),
            message: e.to_string(),
        })?;
        Ok(Slot { _permit: permit })
    }
}

struct QueueTicket<'a>(&'a AtomicUsize);

impl Drop for QueueTicket<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Per-sandbox async mutexes, created on demand and dropped when unused.
#[derive(Debug, Default)]
pub struct SandboxLocks {
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

/// Exclusive right to work on one sandbox; released (and the entry cleaned up) on drop.
#[derive(Debug)]
pub struct SandboxGuard {
    id: String,
    guard: Option<OwnedMutexGuard<()>>,
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl SandboxLocks {
    /// Waits for exclusive access to `sandbox_id` (until `deadline`).
    pub async fn lock(&self, sandbox_id: &str, deadline: Option<Instant>) -> Result<SandboxGuard> {
        let mutex = {
            let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(map.entry(sandbox_id.to_owned()).or_default())
        };
        // Build the guard first so a timeout below still cleans the entry up.
        let mut sandbox = SandboxGuard {
            id: sandbox_id.to_owned(),
            guard: None,
            locks: Arc::clone(&self.locks),
        };
        let acquire = mutex.lock_owned();
        let guard = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline.into(), acquire)
                .await
                .map_err(|_| Error::DeadlineExceeded {
                    operation: format!("waiting for other work on sandbox {sandbox_id}"),
                    undone: "nothing was done".to_owned(),
                })?,
            None => acquire.await,
        };
        sandbox.guard = Some(guard);
        Ok(sandbox)
    }

    /// Number of sandboxes with a lock entry (held or awaited).
    pub fn len(&self) -> usize {
        self.locks.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when no sandbox is locked or awaited.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for SandboxGuard {
    fn drop(&mut self) {
        let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        self.guard = None;
        // Only the map holds the mutex now (no holder, no waiter): forget it.
        if map.get(&self.id).is_some_and(|m| Arc::strong_count(m) == 1) {
            map.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn queue_overflow_is_refused_and_slots_are_returned() {
        let admission = Arc::new(Admission::new(1, 1));
        let first = admission.enter("a", None).await.unwrap();
        let waiting = {
            let admission = Arc::clone(&admission);
            tokio::spawn(async move { admission.enter("b", None).await.map(|_| ()) })
        };
        while admission.queued() == 0 {
            tokio::task::yield_now().await;
        }
        let refused = admission.enter("c", None).await.unwrap_err();
        assert!(matches!(
            refused,
            Error::QueueFull {
                max_parallel: 1,
                max_queued: 1
            }
        ));
        assert_eq!(admission.queued(), 1);
        drop(first);
        waiting.await.unwrap().unwrap();
        assert_eq!(admission.queued(), 0);
        assert_eq!(admission.running(), 0);
    }

    #[tokio::test]
    async fn queued_request_times_out_with_nothing_done() {
        let admission = Admission::new(1, 4);
        let _held = admission.enter("a", None).await.unwrap();
        let deadline = Instant::now() + Duration::from_millis(20);
        let err = admission.enter("b", Some(deadline)).await.unwrap_err();
        assert!(matches!(err, Error::DeadlineExceeded { .. }), "{err}");
        assert_eq!(admission.queued(), 0);
    }

    #[tokio::test]
    async fn sandbox_lock_serialises_and_cleans_up() {
        let locks = Arc::new(SandboxLocks::default());
        let held = locks.lock("sb1", None).await.unwrap();
        let other = locks.lock("sb2", None).await.unwrap();
        let deadline = Instant::now() + Duration::from_millis(20);
        let err = locks.lock("sb1", Some(deadline)).await.unwrap_err();
        assert!(matches!(err, Error::DeadlineExceeded { .. }));
        assert_eq!(locks.len(), 2);
        drop(other);
        assert_eq!(locks.len(), 1);
        let waiter = {
            let locks = Arc::clone(&locks);
            tokio::spawn(async move { locks.lock("sb1", None).await.map(drop) })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished());
        drop(held);
        waiter.await.unwrap().unwrap();
        assert!(locks.is_empty());
    }
}

//! Admission control: bounded parallelism and a bounded queue.
//!
//! Under a burst of pod starts, Multus's daemon spawned unbounded work and was OOM-killed
//! (multus-cni #1346). Here at most `max_parallel` mutating requests run; up to `max_queued`
//! more wait; anything beyond is refused at once with `RESOURCE_EXHAUSTED`, so memory stays
//! bounded. A request takes its slot only once it holds its sandbox's lock (the engine's,
//! `plexus_engine::lock`), so one waiting for a busy sandbox holds no slot.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
}

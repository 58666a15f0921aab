//! Inside plexusd, one host-local allocation or release at a time per lease directory, in
//! arrival order, before the directory's `flock`.
//!
//! The flock is what plexusd shares with the reference plugin, but it is no queue: a
//! release wakes every waiter and they race for it. In a burst of 200 pods on one network
//! that is up to 200 blocked threads woken per allocation, and an unlucky one can lose the
//! race for longer than the NRI deadline (seen: 1–2 of 200 pods failed at 1.5 s while
//! plexus's answer p99 was 0.1–0.3 s). A fair async mutex per directory queues plexusd's
//! own callers, so at most one of them waits for the flock, and a waiting one holds no
//! blocking-pool thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use tokio::sync::OwnedMutexGuard;

type Queue = tokio::sync::Mutex<()>;

/// The queue of each directory someone holds or waits for a turn of.
static QUEUES: LazyLock<Mutex<HashMap<PathBuf, Weak<Queue>>>> = LazyLock::new(Default::default);

/// Waits for a turn at `dir` (first come, first served among plexusd's callers); it lasts
/// as long as the guard. Directories no one holds or waits for any more are forgotten.
pub(crate) async fn turn(dir: &Path) -> OwnedMutexGuard<()> {
    let queue = {
        let mut queues = QUEUES.lock().unwrap_or_else(|e| e.into_inner());
        match queues.get(dir).and_then(Weak::upgrade) {
            Some(queue) => queue,
            None => {
                queues.retain(|_, q| q.strong_count() > 0);
                let queue = Arc::new(Queue::new(()));
                queues.insert(dir.to_path_buf(), Arc::downgrade(&queue));
                queue
            }
        }
    };
    queue.lock_owned().await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn known(dir: &Path) -> bool {
        QUEUES
            .lock()
            .unwrap()
            .get(dir)
            .is_some_and(|q| q.strong_count() > 0)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn turns_at_one_directory_go_in_arrival_order_and_others_do_not_wait() {
        let dir = Path::new("/turns-test/a");
        let held = turn(dir).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for i in 0..5 {
            let order = Arc::clone(&order);
            waiters.push(tokio::spawn(async move {
                let _turn = turn(Path::new("/turns-test/a")).await;
                order.lock().unwrap().push(i);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }));
            // Each waiter queued before the next one starts.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Another directory's turn is free while this one is held.
        let other = tokio::time::timeout(Duration::from_secs(5), turn(Path::new("/turns-test/b")))
            .await
            .expect("a turn at another directory waited");
        drop(other);
        assert!(
            order.lock().unwrap().is_empty(),
            "a turn was given while held"
        );
        drop(held);
        for w in waiters {
            w.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
        // Nobody holds or waits: forgotten once another directory is asked for.
        let _c = turn(Path::new("/turns-test/c")).await;
        assert!(!known(dir));
        assert!(!known(Path::new("/turns-test/b")));
        assert!(known(Path::new("/turns-test/c")));
    }
}

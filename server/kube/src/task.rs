//! Background tasks owned by a cache or queue: spawned on the current tokio runtime and
//! aborted when their owner is dropped, so no watch outlives what it feeds.

use std::future::Future;

/// Tasks aborted on drop.
#[derive(Debug, Default)]
pub(crate) struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Tasks {
    /// Spawns `fut` on the current runtime.
    pub(crate) fn spawn(&mut self, fut: impl Future<Output = ()> + Send + 'static) {
        self.0.push(tokio::spawn(fut));
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

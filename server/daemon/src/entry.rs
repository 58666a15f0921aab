//! Which entry point a piece of work came through (the NRI plugin's RPCs, the CNI shim,
//! the node API, the hot-plug controller, the sweep), carried as a task-local so metrics
//! label requests and attachment steps by their real caller without threading it through
//! every call. [`Node::run`](crate::node::Node) re-scopes it into the task it spawns, so the
//! engine's observer sees it too.

use std::future::Future;

pub use plexus_telemetry::Path;

tokio::task_local! {
    static ENTRY: Path;
    static MEASURED: ();
}

/// Runs `work` as coming through `path`.
pub async fn scope<F: Future>(path: Path, work: F) -> F::Output {
    ENTRY.scope(path, work).await
}

/// The entry point of the current task, if one was set.
pub fn current() -> Option<Path> {
    ENTRY.try_with(|p| *p).ok()
}

/// Runs `work` marked as measured (nested [`Node`](crate::node::Node) calls do not count
/// the same request twice).
pub(crate) async fn measuring<F: Future>(work: F) -> F::Output {
    MEASURED.scope((), work).await
}

/// Whether an enclosing call already measures this request.
pub(crate) fn measured() -> bool {
    MEASURED.try_with(|()| ()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_entry_point_is_seen_inside_its_scope_only() {
        assert_eq!(current(), None);
        let inner = scope(Path::Cni, async { current() }).await;
        assert_eq!(inner, Some(Path::Cni));
        assert!(!measured());
        assert!(measuring(async { measured() }).await);
    }
}

//! The state directory's fsync after a *done* write, off the caller's path.
//!
//! A done write (`Store::save_done`) replaces a record whose previous version, an intent
//! written durably in the same operation, already names everything recovery and teardown
//! act on: the attachments, their interfaces, their delegate configs. The done version adds
//! results (addresses, MACs) and the phase. Its temp file is fsynced before the rename, as
//! every record is, so no reader and no power loss ever sees it torn. Only the directory's
//! fsync, which makes the rename itself survive a power loss, runs after the answer:
//!
//! - a crash of plexusd loses nothing: the rename is in the kernel before the answer;
//! - a power loss before this fsync leaves the intent version or the done version, both
//!   whole. Either way the sandbox is gone after the reboot (its netns with it), and
//!   recovery and teardown undo an intent attachment as they tear down a done one. Leases
//!   follow `ipam::durable`: one the durable record does not name belongs to a setup
//!   recovery undoes.
//!
//! One runner at a time syncs the directory, on the runtime's blocking pool: requests made
//! while it syncs are served together by its next fsync, so a burst of setups costs a few
//! directory fsyncs, not one each.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

static DEFERRED: AtomicU64 = AtomicU64::new(0);

/// How long [`DeferredDirSync::flush`] waits for a runner before syncing itself.
const FLUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Directory fsyncs this process has made after a done write's answer (included in
/// [`super::fsyncs`]; counted once an fsync succeeded).
pub fn deferred_fsyncs() -> u64 {
    DEFERRED.load(Ordering::SeqCst)
}

/// Deferred fsyncs of one directory; see the module docs.
#[derive(Debug)]
pub(crate) struct DeferredDirSync(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    state: Mutex<State>,
    /// Signalled when `synced` moves or a runner ends.
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Requests so far; each follows a rename that needs the directory synced.
    requested: u64,
    /// Every request up to this one has had an fsync start after it and succeed.
    synced: u64,
    /// A runner is queued or syncing.
    running: bool,
    /// Successful fsyncs of this directory (tests).
    syncs: u64,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a request has no fsync that started after it yet.
    fn owed(&self) -> bool {
        let state = self.state();
        state.synced < state.requested
    }

    /// One fsync covering every request made before it starts; false when it failed.
    fn sync_once(&self) -> bool {
        let target = self.state().requested;
        match super::sync_dir(&self.dir) {
            Ok(()) => {
                DEFERRED.fetch_add(1, Ordering::SeqCst);
                let mut state = self.state();
                state.synced = state.synced.max(target);
                state.syncs += 1;
                self.changed.notify_all();
                true
            }
            // The next record write fsyncs the directory again; until then a power loss
            // may bring back intent versions (see the module docs).
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e,
                    "fsync of the state directory after a done write failed");
                false
            }
        }
    }
}

/// The queued runner: syncs until no request is left unserved. Dropped without running (a
/// runtime shutting down drops queued blocking jobs), it syncs once in its drop instead, so
/// no request is left behind and the next one starts a runner again.
struct Runner(Option<Arc<Inner>>);

impl Runner {
    fn run(mut self) {
        let inner = self.0.take().expect("a runner runs once");
        loop {
            {
                let mut state = inner.state();
                if state.synced >= state.requested {
                    state.running = false;
                    inner.changed.notify_all();
                    return;
                }
            }
            // A failed fsync ends the runner: the next request or record write retries.
            if !inner.sync_once() {
                inner.state().running = false;
                inner.changed.notify_all();
                return;
            }
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        if let Some(inner) = self.0.take() {
            if inner.owed() {
                inner.sync_once();
            }
            inner.state().running = false;
            inner.changed.notify_all();
        }
    }
}

impl DeferredDirSync {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self(Arc::new(Inner {
            dir,
            state: Mutex::default(),
            changed: Condvar::new(),
        }))
    }

    /// Asks for an fsync of the directory after every rename made in it before this call:
    /// on the runtime's blocking pool (joining a runner already there), or at once when
    /// there is no runtime.
    pub(crate) fn request(&self) {
        {
            let mut state = self.0.state();
            state.requested += 1;
            if state.running {
                return;
            }
            state.running = true;
        }
        let runner = Runner(Some(Arc::clone(&self.0)));
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || runner.run())),
            Err(_) => runner.run(),
        }
    }

    /// Makes every rename requested so far durable before returning: waits for a runner at
    /// work, and syncs here only when an fsync is still owed and no runner is there (for a
    /// clean exit, and for tests and benchmarks that count fsyncs).
    pub(crate) fn flush(&self) {
        {
            let mut state = self.0.state();
            let target = state.requested;
            // Bounded, so a runner that never reports back cannot hang an exit.
            let until = std::time::Instant::now() + FLUSH_WAIT;
            while state.running && state.synced < target {
                let left = until.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                state = match self.0.changed.wait_timeout(state, left) {
                    Ok((state, _)) => state,
                    Err(e) => e.into_inner().0,
                };
            }
            if state.synced >= target {
                return;
            }
        }
        self.0.sync_once();
    }

    /// Successful fsyncs of this directory so far (tests).
    #[cfg(test)]
    pub(crate) fn syncs(&self) -> u64 {
        self.0.state().syncs
    }

    /// Marks a runner as running without starting one (tests of the coalescing).
    #[cfg(test)]
    pub(crate) fn pretend_running(&self) {
        self.0.state().running = true;
    }

    /// (requested, synced) (tests).
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (u64, u64) {
        let state = self.0.state();
        (state.requested, state.synced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !ok() {
            assert!(std::time::Instant::now() < until, "{what}");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    #[test]
    fn without_a_runtime_the_sync_runs_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let sync = DeferredDirSync::new(dir.path().to_path_buf());
        sync.request();
        assert_eq!(sync.syncs(), 1);
        assert_eq!(sync.counts(), (1, 1));
        // Nothing owed: a flush adds no fsync.
        sync.flush();
        assert_eq!(sync.syncs(), 1);
    }

    #[test]
    fn requests_while_a_runner_is_busy_wait_for_it_and_start_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let sync = DeferredDirSync::new(dir.path().to_path_buf());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        sync.pretend_running();
        rt.block_on(async {
            for _ in 0..5 {
                sync.request();
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(sync.syncs(), 0, "a second runner was started");
        assert_eq!(sync.counts(), (5, 0));
        // The (pretended) runner goes without syncing: a flush owes them one fsync.
        sync.0.state().running = false;
        sync.flush();
        assert_eq!((sync.syncs(), sync.counts()), (1, (5, 5)));
    }

    #[test]
    fn on_a_runtime_every_request_is_served_and_many_share_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let sync = DeferredDirSync::new(dir.path().to_path_buf());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        rt.block_on(async {
            for _ in 0..200 {
                sync.request();
            }
        });
        wait_until("not every request was served", || {
            let (requested, synced) = sync.counts();
            synced == requested
        });
        assert_eq!(sync.counts(), (200, 200));
        let syncs = sync.syncs();
        assert!((1..200).contains(&syncs), "{syncs} fsyncs for 200 requests");
    }

    #[test]
    fn a_flush_waits_for_the_runner_at_work_instead_of_syncing_again() {
        let dir = tempfile::tempdir().unwrap();
        let sync = Arc::new(DeferredDirSync::new(dir.path().to_path_buf()));
        sync.pretend_running();
        sync.0.state().requested = 2;
        let flusher = {
            let sync = Arc::clone(&sync);
            std::thread::spawn(move || sync.flush())
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !flusher.is_finished(),
            "the flush did not wait for the runner"
        );
        // The runner's fsync serves the flush: no second one.
        assert!(sync.0.sync_once());
        flusher.join().unwrap();
        assert_eq!((sync.syncs(), sync.counts()), (1, (2, 2)));
    }

    #[test]
    fn a_runner_dropped_unrun_syncs_and_lets_the_next_request_start_one() {
        let dir = tempfile::tempdir().unwrap();
        let sync = DeferredDirSync::new(dir.path().to_path_buf());
        sync.pretend_running();
        sync.0.state().requested = 3;
        drop(Runner(Some(Arc::clone(&sync.0))));
        assert_eq!((sync.syncs(), sync.counts()), (1, (3, 3)));
        // Not left "running": a new request runs (here at once, no runtime).
        sync.request();
        assert_eq!((sync.syncs(), sync.counts()), (2, (4, 4)));
    }
}

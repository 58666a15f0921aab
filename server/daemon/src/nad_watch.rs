//! Keeps the NAD directory's in-memory index current: an inotify watch on the directory
//! triggers [`DirSource::refresh`] (on the blocking pool), so lookups on the pod-setup path
//! are map reads and never list the directory (50k NAD files took ~300 ms per listing).
//!
//! Every change in the directory (create, write, delete, rename, attribute change, and the
//! `..data` symlink swap of a ConfigMap mount) leads to one refresh; a burst of events is
//! coalesced into one. A directory that is missing (or removed while watched) is looked
//! for again every [`RETRY`], and refreshed when it appears. This module must not read
//! NADs itself; the source owns the index.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use plexus_core::nad::DirSource;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

/// How often a directory that cannot be watched (missing) is looked for again.
pub const RETRY: Duration = Duration::from_secs(2);

/// The running watcher; stops when dropped.
#[derive(Debug)]
pub struct Watcher {
    task: tokio::task::JoinHandle<()>,
    refreshed: watch::Receiver<u64>,
}

impl Watcher {
    /// Counts refreshes done by the watcher; changes after each one (tests wait on it).
    pub fn refreshed(&self) -> watch::Receiver<u64> {
        self.refreshed.clone()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts watching `source`'s directory on the current runtime. The first refresh runs at
/// once, so the index is loaded before the first pod when possible.
pub fn spawn(source: Arc<DirSource>) -> Watcher {
    let (tx, refreshed) = watch::channel(0);
    let task = tokio::spawn(run(source, tx));
    Watcher { task, refreshed }
}

/// An inotify instance for tokio's reactor.
struct Fd(Inotify);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

const CHANGES: AddWatchFlags = AddWatchFlags::IN_CREATE
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_CLOSE_WRITE)
    .union(AddWatchFlags::IN_MODIFY)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_ATTRIB)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF)
    .union(AddWatchFlags::IN_ONLYDIR);

/// The watch is gone (directory removed or renamed): watch again from the start.
const GONE: AddWatchFlags = AddWatchFlags::IN_IGNORED
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF);

async fn refresh(source: &Arc<DirSource>, done: &watch::Sender<u64>) {
    let source = Arc::clone(source);
    let result = tokio::task::spawn_blocking(move || source.refresh()).await;
    match result {
        // The source keeps and logs the problem; lookups report it.
        Ok(Ok(())) | Ok(Err(_)) => {}
        Err(e) => tracing::warn!(error = %e, "refreshing the network directory did not finish"),
    }
    done.send_modify(|n| *n += 1);
}

fn open(dir: &Path) -> std::io::Result<AsyncFd<Fd>> {
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
    inotify.add_watch(dir, CHANGES)?;
    // SAFETY: `Fd` owns the inotify descriptor and always returns that same open fd; it is
    // closed only when the `AsyncFd` (its owner) is dropped.
    let registered = unsafe { AsyncFd::register_with_interest(Fd(inotify), Interest::READABLE) };
    Ok(registered?)
}

async fn run(source: Arc<DirSource>, done: watch::Sender<u64>) {
    let dir = source.dir().to_path_buf();
    let mut warned = false;
    loop {
        let fd = match open(&dir) {
            Ok(fd) => fd,
            Err(e) => {
                if !warned {
                    tracing::warn!(dir = %dir.display(), error = %e,
                        "cannot watch the network directory; looking for it again every {RETRY:?}");
                    warned = true;
                }
                refresh(&source, &done).await;
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        warned = false;
        // Changes before the watch existed are picked up here.
        refresh(&source, &done).await;
        loop {
            let Ok(mut ready) = fd.readable().await else {
                break;
            };
            let mut gone = false;
            let mut any = false;
            // Drain everything queued: one refresh for a burst.
            loop {
                match ready.get_inner().0.read_events() {
                    Ok(events) => {
                        any |= !events.is_empty();
                        gone |= events.iter().any(|e| e.mask.intersects(GONE));
                    }
                    Err(nix::errno::Errno::EAGAIN) => {
                        ready.clear_ready();
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(dir = %dir.display(), error = %e, "reading network directory events");
                        gone = true;
                        break;
                    }
                }
            }
            if any || gone {
                refresh(&source, &done).await;
            }
            if gone {
                break;
            }
        }
    }
}

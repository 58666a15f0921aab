//! Plugin processes die with the daemon.
//!
//! A plugin runs in its own process group (so a deadline can kill everything it started),
//! which also means nothing kills it when plexusd is SIGKILLed: a plugin left mid-ADD
//! would race the DEL that recovery runs after the restart. So every plugin asks the
//! kernel, before exec, for SIGKILL when its parent dies (`PR_SET_PDEATHSIG`), then checks
//! that the parent has not died already (between fork and that call).
//!
//! The kernel's "parent" is the *thread* that forked, not the process: the signal is sent
//! when that thread exits. Threads that poll plexusd's futures can exit while a plugin runs
//! (an idle blocking-pool thread, a worker that handed its core away in `block_in_place`,
//! the thread of a short-lived runtime), so plugins are never forked from them: every
//! spawn is handed to one dedicated spawner thread that is started on first use and
//! never exits (it waits for requests for the life of the process). The signal therefore
//! fires exactly when the process dies. The cost is one channel hop per plugin exec.
//!
//! Not covered: a set-user-ID or file-capability plugin binary (the kernel clears the
//! setting on such an exec), and processes a plugin itself starts (they are killed with
//! the plugin's group on a deadline or cancellation, not on a daemon crash).

use std::io;
use std::sync::Mutex;
use std::sync::mpsc;

use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// One spawn handed to the spawner thread, with the runtime the child's pipes and exit
/// status are registered with.
struct Request {
    cmd: Command,
    runtime: tokio::runtime::Handle,
    reply: oneshot::Sender<io::Result<Child>>,
}

/// Makes the child SIGKILLed when this process dies (see the module docs).
pub(crate) fn die_with_daemon(cmd: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe calls (prctl, getppid) on a value captured before the fork; the
    // error it may build is a raw OS error (no allocation).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The daemon died before the call above: the signal will never come.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Spawns `cmd` from the spawner thread, registered with the current tokio runtime.
/// If the caller stops waiting, the child is dropped there (and killed when the command
/// asked for `kill_on_drop`).
pub(crate) async fn spawn(cmd: Command) -> io::Result<Child> {
    let (reply, answer) = oneshot::channel();
    let req = Request {
        cmd,
        runtime: tokio::runtime::Handle::current(),
        reply,
    };
    spawner()?
        .send(req)
        .map_err(|_| io::Error::other("the plugin spawner thread is gone"))?;
    answer
        .await
        .map_err(|_| io::Error::other("the plugin spawner thread is gone"))?
}

/// The spawner thread's queue, starting the thread on first use.
fn spawner() -> io::Result<mpsc::Sender<Request>> {
    static SPAWNER: Mutex<Option<mpsc::Sender<Request>>> = Mutex::new(None);
    let mut slot = SPAWNER.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(tx) = slot.as_ref() {
        return Ok(tx.clone());
    }
    let (tx, rx) = mpsc::channel::<Request>();
    std::thread::Builder::new()
        .name("plexus-cni-spawn".into())
        .spawn(move || {
            // `tx` lives in the static, so this loop (and the thread) never ends.
            for mut req in rx {
                let _runtime = req.runtime.enter();
                // A panic (e.g. a runtime without the process driver) fails this spawn,
                // not every later one.
                let child =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| req.cmd.spawn()))
                        .unwrap_or_else(|_| Err(io::Error::other("spawning the plugin panicked")));
                // A caller that gave up drops the reply: the child is dropped here.
                let _ = req.reply.send(child);
            }
        })?;
    *slot = Some(tx.clone());
    Ok(tx)
}

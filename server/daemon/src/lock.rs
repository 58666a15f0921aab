//! One plexusd per state directory: an exclusive `flock(2)` on `<stateDir>/plexusd.lock`,
//! taken before anything else touches the directory (temp-file sweep, recovery, the socket)
//! and held until the process ends. A second plexusd started on the same state directory —
//! a rolling update with surge, an operator's manual start — either waits for the holder to
//! exit (`lockWait`, `--lock-wait`) or exits naming the holder's pid; it never repairs,
//! releases or removes anything the running one made.
//!
//! The kernel drops the lock when the holder's last descriptor of the file closes, so a
//! SIGKILLed holder releases it; the file is opened close-on-exec so CNI plugins plexusd
//! runs never inherit it (an orphaned plugin must not keep the lock).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};

/// Name of the lock file inside the state directory.
pub const LOCK_FILE: &str = "plexusd.lock";

/// Bytes of the lock file read for the holder's pid.
const MAX_PID_TEXT: u64 = 32;

/// How often a waiting plexusd tries the lock again.
const RETRY: Duration = Duration::from_millis(100);

/// The held state-directory lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct StateLock {
    _file: Flock<File>,
    path: PathBuf,
}

impl StateLock {
    /// Takes the lock on `state_dir` (created mode 0700 when missing), waiting up to `wait`
    /// for a running holder to exit; `Duration::ZERO` does not wait. Writes this process's
    /// pid into the lock file once held.
    pub async fn acquire(state_dir: &Path, wait: Duration) -> Result<StateLock> {
        let path = state_dir.join(LOCK_FILE);
        let deadline = tokio::time::Instant::now() + wait;
        let mut told = false;
        loop {
            match Self::try_acquire(state_dir)? {
                Ok(lock) => return Ok(lock),
                Err(holder) if tokio::time::Instant::now() >= deadline => {
                    return Err(Error::StateLocked {
                        dir: state_dir.to_path_buf(),
                        holder,
                        waited: wait,
                    });
                }
                Err(holder) => {
                    if !told {
                        tracing::warn!(lock = %path.display(), holder = ?holder, wait = ?wait,
                            "another plexusd holds the state directory; waiting for it to exit");
                        told = true;
                    }
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// One attempt: `Ok(Ok(lock))` when taken, `Ok(Err(holder pid))` when another process
    /// holds it (`None`: it has not written its pid yet), `Err` when the file cannot be
    /// opened or locked at all.
    pub fn try_acquire(state_dir: &Path) -> Result<Result<StateLock, Option<u32>>> {
        let path = state_dir.join(LOCK_FILE);
        let failed = |error: std::io::Error| Error::LockState {
            path: path.clone(),
            error,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(failed)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&path)
            .map_err(failed)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut held) => {
                let pid = std::process::id();
                held.set_len(0)
                    .and_then(|()| held.rewind())
                    .and_then(|()| writeln!(held, "{pid}"))
                    .map_err(failed)?;
                Ok(Ok(StateLock { _file: held, path }))
            }
            Err((file, Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                // Best effort (the holder may be between truncate and write), and bounded:
                // a pid is at most 10 digits.
                let _ = file.take(MAX_PID_TEXT).read_to_string(&mut text);
                Ok(Err(text.trim().parse().ok()))
            }
            Err((_, errno)) => Err(failed(std::io::Error::from(errno))),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_holder_is_refused_with_the_first_ones_pid_until_it_drops() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = StateLock::acquire(&state, Duration::ZERO).await.unwrap();
        let text = std::fs::read_to_string(first.path()).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
        // flock locks belong to the open file description: a second open in the same
        // process conflicts like another process would.
        let err = StateLock::acquire(&state, Duration::ZERO)
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        assert!(message.contains("--lock-wait"), "{message}");
        drop(first);
        StateLock::acquire(&state, Duration::ZERO).await.unwrap();
    }

    #[tokio::test]
    async fn a_waiter_takes_over_when_the_holder_drops() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateLock::acquire(dir.path(), Duration::ZERO)
            .await
            .unwrap();
        let state = dir.path().to_path_buf();
        let waiter =
            tokio::spawn(async move { StateLock::acquire(&state, Duration::from_secs(60)).await });
        // Let the waiter make its first attempt: it cannot finish while the lock is held.
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(first);
        let second = waiter.await.unwrap().unwrap();
        assert_eq!(
            std::fs::read_to_string(second.path()).unwrap(),
            format!("{}\n", std::process::id())
        );
    }
}

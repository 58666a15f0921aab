//! The reference `dhcp` IPAM plugin's daemon, run by plexusd for exec'd NADs with
//! `"ipam": {"type": "dhcp"}` (the native path has its own client, see
//! [`crate::ipam::dhcp`]). The plugin binary talks to `dhcp daemon` over a Unix socket
//! (`/run/cni/dhcp.sock` unless the NAD's `daemonSocketPath` says otherwise); the daemon
//! enters the pod's netns itself and keeps the lease renewed.
//!
//! [`supervise`] starts `<bin> daemon -socketpath <socket>` unless something already
//! answers on the socket, restarts it when it exits, and kills it when the task is
//! dropped (`kill_on_drop`) or plexusd dies (`PR_SET_PDEATHSIG`, as for plugins).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::delegate::spawn::{die_with_daemon, spawn};
use crate::error::{Error, Result};

/// How long a started daemon has to create its socket.
pub const READY_WITHIN: Duration = Duration::from_secs(10);
/// Pause before restarting a daemon that exited.
const RESTART_AFTER: Duration = Duration::from_secs(5);

/// A running `dhcp daemon`, killed on drop.
#[derive(Debug)]
pub struct DhcpDaemon {
    child: Child,
    socket: PathBuf,
}

/// Finds the `dhcp` plugin binary in `bin_dirs`.
pub fn find_binary(bin_dirs: &[PathBuf]) -> Option<PathBuf> {
    bin_dirs
        .iter()
        .map(|d| d.join("dhcp"))
        .find(|p| p.is_file())
}

fn answers(socket: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(socket).is_ok()
}

impl DhcpDaemon {
    /// Starts `bin daemon -socketpath socket` and waits until the socket answers.
    /// `Ok(None)` when something already answers there (a user-run daemon is left alone).
    pub async fn start(bin: &Path, socket: &Path) -> Result<Option<DhcpDaemon>> {
        let fail = |reason: String| Error::DhcpDaemon {
            binary: bin.to_path_buf(),
            socket: socket.to_path_buf(),
            reason,
        };
        if !socket.is_absolute() {
            return Err(fail("the socket path must be absolute".into()));
        }
        if answers(socket) {
            return Ok(None);
        }
        // A socket file nobody answers on is left from a dead daemon.
        match std::fs::remove_file(socket) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(format!("removing the stale socket: {e}"))),
        }
        if let Some(dir) = socket.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| fail(format!("creating {}: {e}", dir.display())))?;
        }
        let mut cmd = Command::new(bin);
        cmd.arg("daemon")
            .arg("-socketpath")
            .arg(socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        die_with_daemon(&mut cmd);
        let mut child = spawn(cmd).await.map_err(|e| fail(format!("spawn: {e}")))?;
        let until = tokio::time::Instant::now() + READY_WITHIN;
        while !answers(socket) {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(fail(format!("exited before serving its socket: {status}")));
            }
            if tokio::time::Instant::now() >= until {
                return Err(fail(format!("no socket within {READY_WITHIN:?}")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Some(DhcpDaemon {
            child,
            socket: socket.to_path_buf(),
        }))
    }

    /// The socket it serves.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits until the daemon exits.
    pub async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.child.wait().await
    }
}

/// Runs the daemon from `bin_dirs` on `socket` for as long as the returned future is
/// polled, restarting it when it exits; returns at once when there is no `dhcp` binary.
pub async fn supervise(bin_dirs: Vec<PathBuf>, socket: PathBuf) {
    let Some(bin) = find_binary(&bin_dirs) else {
        tracing::warn!(dirs = ?bin_dirs, "no dhcp plugin binary: exec'd dhcp IPAM needs its own daemon");
        return;
    };
    loop {
        match DhcpDaemon::start(&bin, &socket).await {
            Ok(Some(mut d)) => {
                tracing::info!(pid = ?d.pid(), socket = %socket.display(), "dhcp daemon started");
                let status = d.wait().await;
                tracing::warn!(?status, "dhcp daemon exited; restarting");
            }
            Ok(None) => {
                tracing::info!(socket = %socket.display(), "a dhcp daemon already serves the socket");
            }
            Err(e) => tracing::warn!(error = %e, "dhcp daemon"),
        }
        tokio::time::sleep(RESTART_AFTER).await;
    }
}

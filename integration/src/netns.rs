//! Named network namespaces the tests create (`ip netns add`), with unique names (pid and
//! a counter) and a [`TestNetns`] guard that deletes the namespace, and with it every link
//! inside, when dropped. Also removes pod namespaces a crashed containerd left behind.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::Result;
use crate::process::{run, run_in_netns};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A process-unique small number for names (links, bridges, subnets).
pub fn next_id() -> u32 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// Where `ip netns` keeps its bind mounts.
pub const NETNS_DIR: &str = "/var/run/netns";

/// A network namespace made for a test; deleted on drop.
#[derive(Debug)]
pub struct TestNetns {
    name: String,
    path: PathBuf,
    detached: bool,
}

impl TestNetns {
    /// Creates `<prefix>-<pid>-<n>` with its loopback up.
    pub fn create(prefix: &str) -> Result<Self> {
        let name = format!("{prefix}-{}-{}", std::process::id(), next_id());
        run("ip", ["netns", "add", &name])?;
        let ns = Self {
            path: Path::new(NETNS_DIR).join(&name),
            name,
            detached: false,
        };
        ns.exec("ip", ["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name (for `ip netns exec`-style commands in messages).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind-mount path (`/var/run/netns/<name>`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs a command inside the namespace; returns its standard output.
    pub fn exec<I, S>(&self, program: &str, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        run_in_netns(&self.path, program, args)
    }

    /// Leaves the namespace in place when the guard is dropped (the demo's `--keep`).
    pub fn detach(&mut self) {
        self.detached = true;
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        if !self.detached {
            delete_named(&self.name);
        }
    }
}

/// Removes a namespace bind mount (e.g. a pod netns a killed containerd left behind).
pub fn remove_netns_path(path: &Path) {
    if path.exists() {
        let _ = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(path);
    }
}

/// Deletes the named namespace (`ip netns del`); an absent one is not an error.
pub fn delete_named(name: &str) {
    let _ = run("ip", ["netns", "del", name]);
}

//! Helpers for privileged tests (feature `test-util` or `cfg(test)`).
//!
//! - [`require_privileged`]: the gate every privileged test calls first. It returns
//!   `false` (the test returns early, silently) only when not root and CI did not ask for
//!   privileged tests; when `PLEXUS_REQUIRE_PRIVILEGED` is set it panics instead.
//! - [`TestNetns`]: a uniquely named netns (`plexus-t-<pid>-<n>`) deleted on drop.
//! - [`kernel_skip`]: records a named skip for a link kind the kernel lacks (ipvlan,
//!   802.1q), for the Makefile to print and count. Use it for nothing else.

pub mod udhcpd;

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};

use rtnetlink::LinkVeth;

use crate::error::Result;
use crate::handle::Handle;
use crate::link::Link;
use crate::netns::{self, Netns};

/// Env var CI sets (to `1`) to make privileged tests mandatory.
pub const REQUIRE_PRIVILEGED_ENV: &str = "PLEXUS_REQUIRE_PRIVILEGED";
/// Env var naming the file [`kernel_skip`] appends to.
pub const SKIP_LOG_ENV: &str = "PLEXUS_SKIP_LOG";

/// Whether a privileged test can run. `false` means "return early" and is only possible
/// without root and without `PLEXUS_REQUIRE_PRIVILEGED`; with the variable set and no
/// root this panics.
pub fn require_privileged() -> bool {
    let required = std::env::var(REQUIRE_PRIVILEGED_ENV)
        .map(|v| !v.is_empty() && v != "0")
        .unwrap_or(false);
    let root = nix::unistd::geteuid().is_root();
    if !root && required {
        panic!(
            "{REQUIRE_PRIVILEGED_ENV} is set but this test is not running as root: \
             privileged netns tests need root (CAP_SYS_ADMIN and CAP_NET_ADMIN)"
        );
    }
    root
}

/// Records that `test` could not run because the kernel lacks a link kind: appends
/// `<test>: <reason>` to the file named by `PLEXUS_SKIP_LOG` (when set).
pub fn kernel_skip(test: &str, reason: &str) {
    let Ok(path) = std::env::var(SKIP_LOG_ENV) else {
        return;
    };
    if path.is_empty() {
        return;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {SKIP_LOG_ENV} file {path}: {e}"));
    writeln!(f, "{test}: {reason}").unwrap_or_else(|e| panic!("write {path}: {e}"));
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique short name `<prefix><pid><n>` for links and namespaces made by tests.
/// Keep `prefix` at most 4 characters so link names stay within IFNAMSIZ (15).
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id() % 100_000;
    format!("{prefix}{pid}x{n}")
}

/// A named test netns `/var/run/netns/plexus-t-<pid>-<n>`, deleted on drop.
#[derive(Debug)]
pub struct TestNetns {
    name: String,
    netns: Netns,
}

impl TestNetns {
    /// Creates a fresh netns (panics on failure: tests call it after
    /// [`require_privileged`]). Its loopback is brought up.
    pub async fn new() -> TestNetns {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("plexus-t-{}-{n}", std::process::id());
        let netns = netns::create_named(&name)
            .unwrap_or_else(|e| panic!("create test netns {name}: {e:?}"));
        let t = TestNetns { name, netns };
        let h = t.handle().await;
        let lo = h.find_link("lo").await.expect("find lo");
        h.set_up(&lo).await.expect("lo up");
        t
    }

    /// The netns name (under `/var/run/netns`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The open namespace.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// The namespace path.
    pub fn path(&self) -> std::path::PathBuf {
        self.netns.path().to_path_buf()
    }

    /// A new handle on this netns.
    pub async fn handle(&self) -> Handle {
        Handle::open(self.netns.try_clone().expect("clone netns fd"))
            .await
            .expect("open handle in test netns")
    }

    /// Creates an up veth pair `a` <-> `b` inside this netns and returns `a` (a test
    /// uplink for macvlan/ipvlan/vlan or a bridge port). Packets stay in this netns.
    pub async fn veth_pair(&self, a: &str, b: &str) -> Result<Link> {
        let h = self.handle().await;
        h.create_link("veth", a, LinkVeth::new(a, b).build())
            .await?;
        let pb = h.find_link(b).await?;
        h.set_up(&pb).await?;
        let pa = h.find_link(a).await?;
        h.set_up(&pa).await?;
        h.find_link(a).await
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        if let Err(e) = netns::delete_named(&self.name) {
            eprintln!("cleanup of test netns {} failed: {e}", self.name);
        }
    }
}

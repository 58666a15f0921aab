//! Helpers for privileged tests (feature `test-util` or `cfg(test)`).
//!
//! - [`require_privileged`] and [`unavailable`]: the one gate (`plexus_testkit::gate`),
//!   re-exported so netlink-based tests need one import.
//! - [`TestNetns`]: a uniquely named netns (`plexus-t-<pid>-<n>`) deleted on drop.
//! - [`kernel_lacks`] / [`skip_if_kernel_lacks`]: whether the kernel has a link kind or
//!   feature, decided once per process by creating it in a scratch netns ([`probe`]), and the
//!   named, counted, allowlisted skip that follows. A driver error is never a skip.

pub mod udhcpd;

use std::sync::atomic::{AtomicU32, Ordering};

use rtnetlink::LinkVeth;

use crate::error::Result;
use crate::handle::Handle;
use crate::link::Link;
use crate::netns::{self, Netns};

pub use plexus_testkit::gate::{REQUIRE_PRIVILEGED_ENV, require_privileged, unavailable};
pub use plexus_testkit::skip::{KernelFeature, SKIP_LOG_ENV};

mod probe;
pub use probe::{kernel_lacks, skip_if_kernel_lacks};

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

/// Asserts that `peeked` (from [`Handle::peek_link`] or a driver's return value, read by
/// ioctl) agrees with `full`, the kernel's netlink answer for the same link, in every field
/// an ioctl reads.
pub fn assert_peek_agrees(peeked: &Link, full: &Link) {
    let fields = |l: &Link| (l.index, l.name.clone(), l.mtu, l.mac, l.up, l.promisc);
    assert_eq!(fields(peeked), fields(full), "ioctl read vs RTM_GETLINK");
}

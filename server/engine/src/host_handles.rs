//! The host netns's netlink handles, taken in turn.
//!
//! The kernel handles a route request in the thread that sends it, waiting there for the
//! rtnl lock, and one handle's connection sends its requests one after another. With a
//! single host handle, every pod's host-side requests (a macvlan's creation, a veth's host
//! end put on its bridge, the reaper's look-ups) would queue behind one another before
//! each even joins the kernel's queue for the lock; a few connections let them wait there
//! side by side.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use plexus_netlink::Handle;
use tokio::sync::OnceCell;

use crate::error::{Error, Result};

/// How many connections to the host netns.
const CONNECTIONS: usize = 4;

/// The host netns's handles, opened on first use.
#[derive(Debug, Default)]
pub(crate) struct HostHandles {
    handles: OnceCell<Vec<Handle>>,
    next: AtomicUsize,
}

impl HostHandles {
    /// The next handle on the host netns (`path`, or this process's own).
    pub(crate) async fn get(&self, path: Option<&Path>) -> Result<&Handle> {
        let handles = self
            .handles
            .get_or_try_init(|| async {
                let mut handles = Vec::with_capacity(CONNECTIONS);
                for _ in 0..CONNECTIONS {
                    let handle = match path {
                        Some(p) => Handle::open_path(p).await,
                        None => Handle::current().await,
                    };
                    handles.push(handle.map_err(|source| Error::Netlink {
                        op: "open the host netns".into(),
                        source: Box::new(source),
                    })?);
                }
                Ok::<_, Error>(handles)
            })
            .await?;
        let i = self.next.fetch_add(1, Ordering::Relaxed) % handles.len();
        Ok(&handles[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_netlink::test_util::{TestNetns, require_privileged};

    #[tokio::test]
    async fn the_host_handles_are_taken_in_turn_and_all_act_on_the_host() {
        if !require_privileged() {
            return;
        }
        let ns = TestNetns::new().await;
        let hosts = HostHandles::default();
        let mut taken = Vec::new();
        for _ in 0..2 * CONNECTIONS {
            taken.push(hosts.get(Some(&ns.path())).await.unwrap());
        }
        for (i, h) in taken.iter().enumerate() {
            assert!(std::ptr::eq(*h, taken[i % CONNECTIONS]), "turn {i}");
            assert_eq!(
                h.netns().inode().unwrap(),
                ns.handle().await.netns().inode().unwrap()
            );
        }
        let distinct = (1..CONNECTIONS).all(|i| !std::ptr::eq(taken[0], taken[i]));
        assert!(distinct, "{CONNECTIONS} connections, each its own");
    }
}

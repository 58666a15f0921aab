//! How a teardown reaches the pod's netns before it answers.
//!
//! A runtime's teardown of a pod whose links all go with its netns (native virtual links
//! with known addresses, no DHCP lease) needs no rtnetlink handle on the netns: one job
//! inside it removes every address plexus gave them (`native::remove_addresses`), while
//! the mark is made. That removal may come first: a crash before the mark leaves the record
//! as it was, whose next teardown finds the addresses gone. Any other teardown opens a
//! handle on the netns (a netlink socket made inside it) while the record is written.

use plexus_netlink::Netns;

use super::open_pod;
use crate::engine::Engine;
use crate::reap::LinkDeletion;
use crate::state::{Driver, SandboxRecord};

/// The way into the pod's netns.
pub(super) enum Way {
    /// One job inside this netns removes the addresses.
    Job(Netns),
    /// The netns is gone: nothing in it is left to remove.
    Gone,
    /// A handle on the netns, opened while the record is written.
    Handle,
}

impl Way {
    /// The pod's netns handle, for [`Way::Handle`] (`None` when the netns is gone).
    pub(super) async fn handle(&self, rec: &SandboxRecord) -> Option<plexus_netlink::Handle> {
        match self {
            Way::Handle => open_pod(&rec.netns).await,
            Way::Job(_) | Way::Gone => None,
        }
    }
}

impl Engine {
    /// Which [`Way`] the teardown of `rec` takes.
    pub(super) fn way_in(&self, rec: &SandboxRecord, links: LinkDeletion) -> Way {
        let dhcp = crate::ipam::dhcp::LeaseStore::new(&self.inner.cfg.dhcp_lease_dir);
        let eligible = links != LinkDeletion::BeforeAnswer
            && !rec.netns.as_os_str().is_empty()
            && !crate::ipam::dhcp::holds_sandbox(&dhcp, rec.sandbox_id.as_str())
            && rec
                .attachments
                .iter()
                .filter(|a| a.released_at_teardown())
                .all(|a| {
                    a.driver == Driver::Native
                        && crate::native::deferrable(&a.native, a.result.as_ref())
                });
        if !eligible {
            return Way::Handle;
        }
        match Netns::open(&rec.netns) {
            Ok(netns) => Way::Job(netns),
            Err(e) if e.errno() == Some(libc::ENOENT) => Way::Gone,
            // Anything else (EMFILE, EACCES) is not "gone": the handle's way reports it.
            Err(_) => Way::Handle,
        }
    }
}

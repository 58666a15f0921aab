//! How a teardown reaches the pod's netns before it answers.
//!
//! A runtime's teardown of a pod whose links all go with its netns (native virtual links
//! with known addresses, no DHCP lease) needs no rtnetlink handle on the netns: one job
//! inside it removes every address plexus gave them (`native::remove_addresses`), while
//! the mark is made. That removal may come first: a crash before the mark leaves the record
//! as it was, whose next teardown finds the addresses gone. Any other teardown opens a
//! handle on the netns (a netlink socket made inside it) while the record is written.
//! Either way goes in through the netns held since the setup when there is one.

use plexus_netlink::Netns;

use super::open_pod;
use crate::engine::Engine;
use crate::reap::LinkDeletion;
use crate::state::SandboxRecord;

/// The way into the pod's netns.
pub(super) enum Way {
    /// One job inside this netns removes the addresses.
    Job(Netns),
    /// The netns is gone: nothing in it is left to remove.
    Gone,
    /// A handle on the netns, opened while the record is written: on the held netns
    /// (`held.rs`) when there is one, else by the recorded path.
    Handle(Option<Netns>),
}

impl Way {
    /// The pod's netns handle, for [`Way::Handle`] (`None` when the netns is gone).
    pub(super) async fn handle(&self, rec: &SandboxRecord) -> Option<plexus_netlink::Handle> {
        match self {
            Way::Handle(_) => self.open(rec).await,
            Way::Job(_) | Way::Gone => None,
        }
    }

    /// A handle on the netns this way reaches (`None` when it is gone).
    pub(super) async fn open(&self, rec: &SandboxRecord) -> Option<plexus_netlink::Handle> {
        let held = match self {
            Way::Job(netns) | Way::Handle(Some(netns)) => netns,
            Way::Handle(None) => return open_pod(&rec.netns).await,
            Way::Gone => return None,
        };
        let opened = match held.try_clone() {
            Ok(netns) => plexus_netlink::Handle::open(netns).await,
            Err(e) => Err(e),
        };
        opened
            .inspect_err(|e| {
                tracing::info!(netns = %rec.netns.display(), error = %e,
                    "held pod netns not available");
            })
            .ok()
    }
}

impl Engine {
    /// Which [`Way`] the teardown of `rec` takes. Takes the netns held since the setup
    /// (`held.rs`), so the teardown reaches the pod's netns even once its path is gone.
    pub(super) fn way_in(&self, rec: &SandboxRecord, links: LinkDeletion) -> Way {
        let held = self.inner.held.take(&rec.sandbox_id);
        if links == LinkDeletion::BeforeAnswer || !self.releasable_in_netns(rec) {
            return Way::Handle(held);
        }
        if let Some(netns) = held {
            return Way::Job(netns);
        }
        match Netns::open(&rec.netns) {
            Ok(netns) => Way::Job(netns),
            Err(e) if e.errno() == Some(libc::ENOENT) => Way::Gone,
            // Anything else (EMFILE, EACCES) is not "gone": the handle's way reports it.
            Err(_) => Way::Handle(None),
        }
    }
}

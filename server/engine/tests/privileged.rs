//! Privileged engine tests in real network namespaces with the reference CNI plugins:
//! native macvlan, the exec path with a conflist chain, rollback, teardown twice,
//! teardown after a restart without the NAD, corrupt records, the netns held from setup to
//! teardown.

mod common;

use common::{Fixture, attachment, ifn, plan, sid, slow_plugin, wait_gone, wait_written};
use plexus_engine::{DelegationMode, Driver, SetupError};
use plexus_netlink::test_util::require_privileged;

#[path = "privileged/deferred.rs"]
mod deferred;
#[path = "privileged/early.rs"]
mod early;
#[path = "privileged/held.rs"]
mod held;
#[path = "privileged/setup.rs"]
mod setup;
#[path = "privileged/teardown.rs"]
mod teardown;

//! plexus-netlink: network namespaces, an rtnetlink [`Handle`] bound to one netns, the
//! native link drivers (macvlan, ipvlan, bridge+veth, host-device, vlan), link groups for
//! fast teardown, and [`inspect`] snapshots of a netns for comparisons and status.
//!
//! This crate owns every namespace switch of plexus ([`netns`] is the only place that may
//! call `setns`). It knows nothing about Kubernetes, CNI configs or IPAM: the engine turns
//! a plan into calls on this API.

mod dump;
pub mod error;
pub mod handle;
pub mod inspect;
pub mod link;
pub mod mac;
pub mod netns;
pub mod sysctl;

#[cfg(any(test, feature = "test-util"))]
pub mod test_util;

pub use error::{Error, Result};
pub use handle::{Address, Handle, LinkChange, OnExists, Route, RouteSpec};
pub use link::Link;
pub use mac::MacAddr;
pub use netns::Netns;

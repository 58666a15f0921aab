//! plexus-netlink: network namespaces, an rtnetlink [`Handle`] bound to one netns, the
//! native link drivers (macvlan, ipvlan, bridge+veth, host-device, vlan), link groups for
//! fast teardown, and [`inspect`] snapshots of a netns for comparisons and status.
//!
//! This crate owns every namespace switch of plexus ([`netns`] is the only place that may
//! call `setns`). It knows nothing about Kubernetes, CNI configs or IPAM: the engine turns
//! a plan into calls on this API.
//!
//! Typical use from the engine (inside a tokio runtime):
//!
//! ```no_run
//! # async fn f() -> plexus_netlink::Result<()> {
//! use plexus_netlink::Handle;
//! use plexus_netlink::link::{macvlan, MacvlanMode, MacvlanSpec, PodLink, DEFAULT_LINK_GROUP};
//!
//! let host = Handle::current().await?;
//! let pod = Handle::open_path("/var/run/netns/pod1").await?;
//! let spec = MacvlanSpec {
//!     master: Some("eth0".into()),
//!     master_in_pod: false,
//!     mode: MacvlanMode::Bridge,
//!     link: PodLink::new("net1"),
//!     layer3: true,
//! };
//! let link = macvlan::add(&host, &pod, &spec).await?;
//! pod.add_address(&link, "10.1.0.5/24".parse().unwrap()).await?;
//! // Teardown of everything plexus created in the pod, in one request:
//! pod.delete_group(DEFAULT_LINK_GROUP).await?;
//! # Ok(()) }
//! ```

mod dump;
pub mod error;
pub mod handle;
pub mod inspect;
pub mod link;
pub mod mac;
pub mod netns;
pub mod sysctl;
pub mod unaddress;

#[cfg(any(test, feature = "test-util"))]
pub mod test_util;

pub use error::{Error, Result};
pub use handle::{Address, Handle, LinkChange, OnExists, Route, RouteSpec};
pub use link::Link;
pub use mac::MacAddr;
pub use netns::{Netns, NetnsId};

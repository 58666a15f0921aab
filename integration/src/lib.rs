//! End-to-end harness of plexus: a private containerd 1.7 with CRI and NRI, a minimal CRI
//! client, a pause image built from a static busybox, pods created through CRI, and (in
//! [`plexus`]) plexusd and plexus-nri started against that containerd.
//!
//! Everything it creates is private to one run (run dir, network namespaces, links with
//! unique names) and removed by `Drop` guards, also when a test fails. It never touches
//! the system containerd or `/etc/cni/net.d`.

pub mod bench;
pub mod cleanup;
pub mod containerd;
pub mod cri;
pub mod daemonset;
pub mod demo;
pub mod env;
pub mod error;
pub mod image;
pub mod nad;
pub mod netns;
pub mod plexus;
pub mod pod;
pub mod privileged;
pub mod process;
pub mod release_image;
pub mod rtnl_probe;
pub mod stats;
pub mod traffic;

pub use containerd::{Containerd, Options};
pub use env::Env;
pub use error::{Error, Result};
pub use nad::Nad;
pub use plexus::Plexus;
pub use pod::{Pod, PodSpec};
pub use privileged::require_privileged;

//! plexus-core: the domain model of plexus, free of I/O.
//!
//! It owns what decides *what* a pod gets — annotation parsing, NAD interpretation,
//! resolution into an ordered [`plan::Plan`], the CNI data model and version
//! conversion, network-status rendering and the explain rendering. Everything here is
//! a pure function over plain data, except two readers of files: the NAD directory
//! source (`networks.d/` manifests) and the CNI config directory lookup of `netconf`
//! (spec-less NADs, file-based cluster/default networks). It must not exec, touch
//! netlink, namespaces, sockets or the Kubernetes API.
//!
//! Resolution API in short: build a [`Config`], a [`NadSource`] ([`DirSource`] over
//! `networks.d/`, [`MemorySource`], or the daemon's Kubernetes cache), then call
//! [`resolve()`] for a pod being created or [`resolve_one`] for a hot-plug selection;
//! once the pod's device-plugin allocation is known, [`assign_devices`] hands device
//! ids to the networks that name a resource;
//! render either outcome with [`explain()`] (a Pod manifest is read with
//! [`pod_from_manifest`]). Errors carry a stable [`Error::kind`].

pub mod annotation;
pub mod charset;
pub mod cni;
pub mod config;
pub mod deadline;
pub mod duration;
pub mod error;
pub mod explain;
pub mod id;
pub mod nad;
pub mod nesting;
pub mod netconf;
pub mod plan;
pub mod pod;
pub mod resolve;
pub mod status;
pub mod yaml;

pub use annotation::{Annotations, Selection};
pub use config::{Config, PrimaryMode};
pub use error::{Error, Result};
pub use explain::{Explanation, explain, pod_from_manifest};
pub use id::{InterfaceName, NetworkName, SandboxId};
pub use nad::{DirSource, MemorySource, Nad, NadSource};
pub use plan::{Origin, Plan, PlannedAttachment};
pub use pod::PodIdentity;
pub use resolve::{DeviceAssignment, assign_devices, resolve, resolve_one};

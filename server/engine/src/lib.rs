//! plexus-engine: puts a pod's planned attachments into its network namespace and takes
//! them out again exactly once.
//!
//! It owns CNI delegate execution (`delegate`), the in-process native drivers and IPAM,
//! and the crash-safe per-sandbox state. It executes a [`plexus_core::plan::Plan`]; it
//! never decides what a pod gets (that is `plexus_core::resolve`).
//!
//! Entry point: [`Engine`] (`open`, `recover`, `setup`, `setup_with_deadline`, `attach`,
//! `detach`, `teardown`, `sandboxes`, `sandbox`). Each attachment runs natively when
//! [`native::classify`] understands every key of its config (macvlan, ipvlan, bridge+veth,
//! host-device, vlan with static/host-local IPAM) and the node's [`DelegationMode`] and the
//! NAD's `force_exec` allow it; otherwise through the CNI plugin binaries ([`exec::Exec`],
//! implemented over [`delegate`] by [`delegate_exec::DelegateExec`]). Every step is
//! recorded in [`state`] before (intent) and after (done), so teardown after any crash
//! removes exactly what was made. Crash points for tests: [`crash`].

pub mod config;
pub mod crash;
pub mod delegate;
pub mod delegate_exec;
mod engine;
pub mod error;
pub mod exec;
pub mod ipam;
pub mod native;
mod route;
pub mod state;
mod teardown;

pub use config::{DelegationMode, EngineConfig};
pub use engine::{Engine, SandboxSpec};
pub use error::{Error, Result, SetupError};
pub use state::{AttachmentRecord, Driver, Phase, SandboxRecord};
pub use teardown::{RecoveryReport, TeardownReport};

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
//!
//! # Observability
//!
//! The engine makes `tracing` spans with plexus-telemetry's names and fields (it does not
//! depend on that crate): below the caller's current span, one `attachment` span per
//! attachment made or removed, and below it one `delegate` span per CNI plugin execution
//! (or one `native` span for the in-process driver). Names and fields: [`observe`]. Call
//! the engine inside the RPC span (`.instrument(span)`, or `.in_current_span()` on a
//! spawned task) and the spans nest under it.
//!
//! Metrics go through an [`Observer`] set with [`Engine::set_observer`]: it is told once
//! per attachment made ([`Op::Setup`]) and once per attachment removed ([`Op::Teardown`]),
//! with the engine call ([`Call`]), the driver, the step's own duration and its
//! [`Outcome`] (failure reasons are the fixed set [`error::REASONS`]). The default observer
//! does nothing. plexusd bridges it to `plexus_telemetry::Metrics` like this:
//!
//! ```ignore
//! struct EngineMetrics(plexus_telemetry::Metrics);
//!
//! impl plexus_engine::Observer for EngineMetrics {
//!     fn attachment_done(&self, e: &plexus_engine::AttachmentEvent<'_>) {
//!         use plexus_telemetry::{Driver, Path};
//!         let path = if e.call.is_hot_plug() { Path::Api } else { Path::Nri };
//!         let driver = match e.driver {
//!             plexus_engine::Driver::Native => Driver::Native,
//!             _ => Driver::Exec,
//!         };
//!         match e.op {
//!             plexus_engine::Op::Setup => self.0.observe_setup(path, driver, e.elapsed),
//!             plexus_engine::Op::Teardown => self.0.observe_teardown(path, driver, e.elapsed),
//!         }
//!     }
//! }
//!
//! engine.set_observer(std::sync::Arc::new(EngineMetrics(metrics.clone())));
//! ```

mod attach;
pub mod config;
pub mod crash;
pub mod delegate;
pub mod delegate_exec;
pub mod dhcp_daemon;
mod engine;
pub mod error;
pub mod exec;
mod held;
mod host_handles;
pub mod ipam;
pub mod lock;
pub mod native;
pub mod observe;
mod pod_netns;
mod primary;
mod reap;
mod route;
mod setup;
pub mod state;
mod teardown;
mod temp_files;
mod undo;

pub use config::{DelegationMode, EngineConfig};
pub use engine::{Engine, SandboxSpec};
pub use error::{Error, Result, SetupError};
pub use lock::{SandboxLock, SandboxLocks};
pub use observe::{AttachmentEvent, Call, NoObserver, Observer, Op, Outcome};
pub use reap::LinkDeletion;
pub use setup::SetupDone;
pub use state::{AttachmentRecord, Driver, Phase, SandboxRecord};
pub use teardown::{RecoveryReport, TeardownReport};

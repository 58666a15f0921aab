//! plexus-testkit: the support every plexus test crate shares, and nothing else.
//!
//! - [`gate`]: the one privileged-test gate. `PLEXUS_REQUIRE_PRIVILEGED` is read here and
//!   only here; a test that needs root, a reference plugin or a tool asks
//!   [`gate::require_privileged`] or [`gate::unavailable`] and either runs, fails (when CI
//!   requires it) or skips with a printed reason (when nobody asked for it).
//! - [`skip`]: the kernel-feature skips (ipvlan, 802.1q vlan, bridge vlan filtering) as a
//!   closed set, the skip log the Makefile counts, and the allowlist of skips expected on
//!   the machine (`.ci/expected-skips`): an unexpected skip fails the test.
//!
//! - [`rng`]: a small seeded generator, for tests and benchmarks that draw at random.
//!
//! Probing the kernel needs netlink and lives next to it, in
//! `plexus_netlink::test_util::kernel_lacks`. This crate has no I/O but reading the
//! environment, the allowlist file and appending to the skip log.

pub mod error;
pub mod gate;
pub mod rng;
pub mod skip;

pub use error::{Error, Result};

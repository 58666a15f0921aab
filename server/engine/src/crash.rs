//! Named crash points for the crash-matrix test: when `PLEXUS_CRASH_AT` names a point,
//! the process aborts there (no unwinding, no destructors, like a kill -9). The variable is
//! read once; an unset variable costs one atomic load per point.
//!
//! Only with the cargo feature `crash-hooks` (which the engine's and the daemon's tests
//! turn on through their dev-dependencies); without it, as in `make image` and any other
//! build of the binaries, [`point`] compiles to nothing and the variable is never read.

/// The environment variable naming the crash point.
pub const ENV: &str = "PLEXUS_CRASH_AT";

/// Whether this build honours `PLEXUS_CRASH_AT` (the `crash-hooks` feature).
pub fn enabled() -> bool {
    cfg!(feature = "crash-hooks")
}

#[cfg(feature = "crash-hooks")]
fn target() -> Option<&'static str> {
    use std::sync::OnceLock;
    static TARGET: OnceLock<Option<String>> = OnceLock::new();
    TARGET
        .get_or_init(|| std::env::var(ENV).ok().filter(|s| !s.is_empty()))
        .as_deref()
}

/// Aborts the process when `PLEXUS_CRASH_AT` equals the point `<scope>.<index>.<step>`.
#[cfg(feature = "crash-hooks")]
pub(crate) fn point(scope: &str, index: usize, step: &str) {
    if let Some(t) = target()
        && t == format!("{scope}.{index}.{step}")
    {
        eprintln!("plexus-engine: crash point {t} reached, aborting");
        std::process::abort();
    }
}

/// Without `crash-hooks`: nothing (release builds carry no abort hook).
#[cfg(not(feature = "crash-hooks"))]
#[inline(always)]
pub(crate) fn point(_scope: &str, _index: usize, _step: &str) {}

/// Every crash point a two-step native attachment passes, in order (for the matrix test).
pub const SETUP_STEPS_NATIVE: &[&str] = &["intent", "link", "ipam", "addr", "routes", "done"];
/// Every crash point an exec attachment passes, in order.
pub const SETUP_STEPS_EXEC: &[&str] = &["intent", "exec", "routes", "done"];
/// Crash points of teardown, per attachment.
pub const TEARDOWN_STEPS: &[&str] = &["removing", "undone"];
/// Crash points of the link deletion after a runtime's teardown answered (`reap.rs`),
/// once per sandbox (index 0): before the links are deleted, and after.
pub const REAP_STEPS: &[&str] = &["deleting", "deleted"];
/// Crash points of detach (hot-unplug), at the detached attachment's index.
pub const DETACH_STEPS: &[&str] = &["removing", "undone"];

//! Named crash points for the crash-matrix test: when `PLEXUS_CRASH_AT` names a point,
//! the process aborts there (no unwinding, no destructors, like a kill -9). The variable is
//! read once; an unset variable costs one atomic load per point.

use std::sync::OnceLock;

/// The environment variable naming the crash point.
pub const ENV: &str = "PLEXUS_CRASH_AT";

fn target() -> Option<&'static str> {
    static TARGET: OnceLock<Option<String>> = OnceLock::new();
    TARGET
        .get_or_init(|| std::env::var(ENV).ok().filter(|s| !s.is_empty()))
        .as_deref()
}

/// Aborts the process when `PLEXUS_CRASH_AT` equals the point `<scope>.<index>.<step>`.
pub(crate) fn point(scope: &str, index: usize, step: &str) {
    if let Some(t) = target()
        && t == format!("{scope}.{index}.{step}")
    {
        eprintln!("plexus-engine: crash point {t} reached, aborting");
        std::process::abort();
    }
}

/// Every crash point a two-step native attachment passes, in order (for the matrix test).
pub const SETUP_STEPS_NATIVE: &[&str] = &["intent", "link", "ipam", "addr", "routes", "done"];
/// Every crash point an exec attachment passes, in order.
pub const SETUP_STEPS_EXEC: &[&str] = &["intent", "exec", "routes", "done"];
/// Crash points of teardown, per attachment.
pub const TEARDOWN_STEPS: &[&str] = &["removing", "undone"];
/// Crash points of detach (hot-unplug), at the detached attachment's index.
pub const DETACH_STEPS: &[&str] = &["removing", "undone"];

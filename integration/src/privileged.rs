//! The guard every end-to-end test starts with: the one privileged-test gate of
//! `plexus_testkit::gate`. When privileged tests are required (`PLEXUS_REQUIRE_PRIVILEGED`
//! `1` or `true`, as CI sets it) a test that cannot run fails loudly; otherwise a non-root
//! run prints why it skipped and returns early. Any other value of the variable fails.

pub use plexus_testkit::gate::{require_privileged, unavailable};

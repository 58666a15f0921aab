//! The guard every end-to-end test starts with. With `PLEXUS_REQUIRE_PRIVILEGED=1` a test
//! that cannot run (not root) fails loudly; without it, a non-root run returns early
//! silently. Never prints "skip".

/// Whether the test may run; panics when it cannot but `PLEXUS_REQUIRE_PRIVILEGED=1`.
pub fn require_privileged() -> bool {
    let root = nix::unistd::geteuid().is_root();
    if root {
        return true;
    }
    if std::env::var("PLEXUS_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
        panic!(
            "PLEXUS_REQUIRE_PRIVILEGED=1 but this test is not running as root: \
             it needs root for containerd and network namespaces"
        );
    }
    false
}

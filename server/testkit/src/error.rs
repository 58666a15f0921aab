//! Errors of the test support: a gate or allowlist value that is not understood, and a
//! skip the machine's allowlist does not expect.

/// What went wrong reading the test environment.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `PLEXUS_REQUIRE_PRIVILEGED` has a value that is neither "required" nor "optional".
    #[error(
        "{env}={value:?} is not understood; accepted: unset, empty, `0` or `false` (privileged \
         tests are optional and skip with a reason) and `1` or `true` (they are required and fail \
         when they cannot run)"
    )]
    InvalidRequirement {
        /// The variable read.
        env: &'static str,
        /// Its value.
        value: String,
    },
    /// An allowlist entry names no known kernel feature.
    #[error("{origin}: unknown kernel feature {name:?}; accepted: {accepted}")]
    UnknownFeature {
        /// Where the allowlist came from (file path or variable name).
        origin: String,
        /// The entry.
        name: String,
        /// The accepted names, comma separated.
        accepted: String,
    },
    /// The allowlist file could not be read.
    #[error("read the expected-skips allowlist {path}: {source}")]
    ReadAllowlist {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A test skipped for a kernel feature the machine's allowlist does not expect.
    #[error(
        "test {test} would skip because the kernel lacks {feature}, but the expected skips for \
         this machine ({origin}) are [{expected}]: either the kernel lost a feature or the test \
         is broken; add `{feature}` to the allowlist only if this machine really lacks it"
    )]
    UnexpectedSkip {
        /// The test.
        test: String,
        /// The missing feature.
        feature: &'static str,
        /// Where the allowlist came from.
        origin: String,
        /// The expected features, comma separated.
        expected: String,
    },
}

/// Result with the test-support [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

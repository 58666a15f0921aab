//! The one privileged-test gate.
//!
//! `PLEXUS_REQUIRE_PRIVILEGED` says whether the privileged tests (network namespaces,
//! reference CNI plugins, containerd, chart tools) are **required**:
//!
//! | value                         | [`Requirement`]  | a test that cannot run          |
//! |-------------------------------|------------------|---------------------------------|
//! | unset, empty, `0`, `false`    | `Optional`       | prints `skipped: <reason>`, passes |
//! | `1`, `true`                   | `Required`       | fails, naming what is missing   |
//! | anything else                 | –                | fails, naming the accepted values |
//!
//! CI (`.ci/run`, the Makefile) sets `1`. Nothing else in the repository reads the variable.

use crate::error::{Error, Result};

/// The variable CI sets (to `1`) to make privileged tests mandatory.
pub const REQUIRE_PRIVILEGED_ENV: &str = "PLEXUS_REQUIRE_PRIVILEGED";

/// Whether tests that need privileges or external tools must run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// They run when they can and skip, with a printed reason, when they cannot.
    Optional,
    /// They must run: a test that cannot fails.
    Required,
}

/// Parses a value of [`REQUIRE_PRIVILEGED_ENV`] (`None` when unset).
pub fn parse(value: Option<&str>) -> Result<Requirement> {
    match value.map(str::trim) {
        None | Some("" | "0" | "false") => Ok(Requirement::Optional),
        Some("1" | "true") => Ok(Requirement::Required),
        Some(other) => Err(Error::InvalidRequirement {
            env: REQUIRE_PRIVILEGED_ENV,
            value: other.to_owned(),
        }),
    }
}

/// The requirement of this run, from the environment. Panics (failing the test) on a value
/// that is not understood: a typo must not silently turn the suite into skips.
pub fn requirement() -> Requirement {
    let value = std::env::var_os(REQUIRE_PRIVILEGED_ENV).map(|v| v.to_string_lossy().into_owned());
    parse(value.as_deref()).unwrap_or_else(|e| panic!("{e}"))
}

/// What a test that cannot do its work does under `requirement`: `Err` (the test fails)
/// when required, `Ok` with the line to print when optional.
pub fn decide(requirement: Requirement, reason: &str) -> Result<String, String> {
    match requirement {
        Requirement::Required => Err(format!(
            "{REQUIRE_PRIVILEGED_ENV} requires this test to run, but it cannot: {reason}"
        )),
        Requirement::Optional => Ok(format!(
            "skipped: {reason} (set {REQUIRE_PRIVILEGED_ENV}=1 to make this a failure)"
        )),
    }
}

/// The test cannot do its work because of `reason` (no root, a missing plugin or tool).
/// Panics when the run requires privileged tests; otherwise prints the skip and returns
/// `false`, so callers write `if !gate::unavailable(..) { return; }` or just `return`.
pub fn unavailable(reason: &str) -> bool {
    match decide(requirement(), reason) {
        Err(msg) => panic!("{msg}"),
        Ok(line) => {
            say(&line);
            false
        }
    }
}

/// Whether a privileged test can run: `true` as root. Without root it fails the test when
/// required and otherwise prints the skip and returns `false` (the test returns early).
/// An invalid variable fails the test even as root.
pub fn require_privileged() -> bool {
    let requirement = requirement();
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    match decide(
        requirement,
        "not running as root; privileged tests need CAP_SYS_ADMIN and CAP_NET_ADMIN",
    ) {
        Err(msg) => panic!("{msg}"),
        Ok(line) => {
            say(&line);
            false
        }
    }
}

/// Writes `line` to the process's stderr directly: the test harness captures `eprintln!`
/// of passing tests, and a skip must be seen.
pub(crate) fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_empty_zero_and_false_make_privileged_tests_optional() {
        for v in [None, Some(""), Some("0"), Some("false"), Some(" 0 ")] {
            assert_eq!(parse(v).unwrap(), Requirement::Optional, "{v:?}");
        }
    }

    #[test]
    fn one_and_true_make_them_required() {
        for v in ["1", "true", "true\n"] {
            assert_eq!(parse(Some(v)).unwrap(), Requirement::Required, "{v:?}");
        }
    }

    #[test]
    fn any_other_value_is_refused_naming_the_accepted_ones() {
        for v in ["yes", "2", "TRUE", "on", "-1", "0x1"] {
            let err = parse(Some(v)).unwrap_err().to_string();
            assert!(err.contains(REQUIRE_PRIVILEGED_ENV), "{err}");
            assert!(err.contains(&format!("{v:?}")), "{err}");
            assert!(err.contains("`1` or `true`"), "{err}");
            assert!(err.contains("`0` or `false`"), "{err}");
        }
    }

    #[test]
    fn a_required_run_fails_and_an_optional_one_prints_the_reason() {
        let err = decide(Requirement::Required, "no macvlan plugin").unwrap_err();
        assert!(err.contains("no macvlan plugin"), "{err}");
        let line = decide(Requirement::Optional, "no macvlan plugin").unwrap();
        assert!(line.starts_with("skipped: no macvlan plugin"), "{line}");
    }
}

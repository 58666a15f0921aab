//! Kernel-feature skips: the only skips a privileged test may take when it runs as root.
//!
//! A test may skip only because the kernel lacks a [`KernelFeature`], and only after a probe
//! said so (`plexus_netlink::test_util::kernel_lacks`, which creates the link kind once in a
//! scratch netns). The skip is printed, appended to the skip log the Makefile counts
//! (`PLEXUS_SKIP_LOG`) and checked against the machine's [`Allowlist`] of expected skips:
//! an unexpected one fails the test, so a kernel that loses a feature, or a broken probe,
//! shows up as a red CI run instead of a quietly growing skip count.
//!
//! The allowlist is `PLEXUS_EXPECTED_SKIPS` (feature names separated by commas) when set,
//! else, when privileged tests are required, the repository's `.ci/expected-skips` (one
//! name a line, `#` comments). When neither applies every skip is allowed and printed.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::gate::{self, Requirement};

/// Env var naming the file skips are appended to (`<test>: kernel lacks <feature>`).
pub const SKIP_LOG_ENV: &str = "PLEXUS_SKIP_LOG";
/// Env var with the expected skips of this machine, comma separated (overrides the file).
pub const EXPECTED_SKIPS_ENV: &str = "PLEXUS_EXPECTED_SKIPS";

/// A kernel feature some machines lack and whose tests may therefore skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KernelFeature {
    /// The `ipvlan` link kind (CONFIG_IPVLAN).
    Ipvlan,
    /// The 802.1q `vlan` link kind (CONFIG_VLAN_8021Q).
    Vlan,
    /// Bridge `vlan_filtering` (CONFIG_BRIDGE_VLAN_FILTERING).
    BridgeVlanFiltering,
}

impl KernelFeature {
    /// Every feature, in allowlist order.
    pub const ALL: [KernelFeature; 3] = [
        KernelFeature::Ipvlan,
        KernelFeature::Vlan,
        KernelFeature::BridgeVlanFiltering,
    ];

    /// The name used in the allowlist and the skip log.
    pub fn name(self) -> &'static str {
        match self {
            KernelFeature::Ipvlan => "ipvlan",
            KernelFeature::Vlan => "vlan",
            KernelFeature::BridgeVlanFiltering => "bridge-vlan-filtering",
        }
    }

    /// The feature called `name`, if any.
    pub fn from_name(name: &str) -> Option<KernelFeature> {
        KernelFeature::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl fmt::Display for KernelFeature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The skips expected on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowlist {
    origin: String,
    features: BTreeSet<KernelFeature>,
}

impl Allowlist {
    /// Parses `text`: feature names separated by newlines or commas; `#` starts a comment.
    /// `origin` names where the text came from, for errors.
    pub fn parse(origin: &str, text: &str) -> Result<Allowlist> {
        let mut features = BTreeSet::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            for name in line.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let feature =
                    KernelFeature::from_name(name).ok_or_else(|| Error::UnknownFeature {
                        origin: origin.to_owned(),
                        name: name.to_owned(),
                        accepted: KernelFeature::ALL.map(KernelFeature::name).join(", "),
                    })?;
                features.insert(feature);
            }
        }
        Ok(Allowlist {
            origin: origin.to_owned(),
            features,
        })
    }

    /// Reads the allowlist file at `path`.
    pub fn read(path: &Path) -> Result<Allowlist> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadAllowlist {
            path: path.display().to_string(),
            source,
        })?;
        Allowlist::parse(&path.display().to_string(), &text)
    }

    /// The repository's allowlist file, `.ci/expected-skips`.
    pub fn default_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/expected-skips")
    }

    /// The allowlist that applies to this run: `value` of [`EXPECTED_SKIPS_ENV`] when set,
    /// else the default file when privileged tests are required, else none.
    pub fn select(value: Option<&str>, requirement: Requirement) -> Result<Option<Allowlist>> {
        match (value, requirement) {
            (Some(v), _) => Allowlist::parse(EXPECTED_SKIPS_ENV, v).map(Some),
            (None, Requirement::Required) => Allowlist::read(&Allowlist::default_path()).map(Some),
            (None, Requirement::Optional) => Ok(None),
        }
    }

    /// `Ok` when `test` may skip for lacking `feature`.
    pub fn check(&self, test: &str, feature: KernelFeature) -> Result<()> {
        if self.features.contains(&feature) {
            return Ok(());
        }
        Err(Error::UnexpectedSkip {
            test: test.to_owned(),
            feature: feature.name(),
            origin: self.origin.clone(),
            expected: self
                .features
                .iter()
                .map(|f| f.name())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

/// Records that `test` skips because the probe found the kernel without `feature`: fails
/// the test when the machine's allowlist does not expect it, else prints the skip and
/// appends it to the skip log. Call it only with a probe's answer, never on an error.
pub fn record_kernel_skip(test: &str, feature: KernelFeature) {
    let env = std::env::var(EXPECTED_SKIPS_ENV).ok();
    let allowlist =
        Allowlist::select(env.as_deref(), gate::requirement()).unwrap_or_else(|e| panic!("{e}"));
    if let Some(allowlist) = allowlist {
        allowlist
            .check(test, feature)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    gate::say(&format!("skipped: {test}: kernel lacks {feature}"));
    let Some(path) = std::env::var_os(SKIP_LOG_ENV).filter(|p| !p.is_empty()) else {
        return;
    };
    let path = PathBuf::from(path);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {SKIP_LOG_ENV} file {}: {e}", path.display()));
    writeln!(f, "{test}: kernel lacks {feature}")
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_reads_lines_commas_and_comments() {
        let a = Allowlist::parse(
            "f",
            "# this machine\nipvlan  # no module\n\nvlan, bridge-vlan-filtering\n",
        )
        .unwrap();
        assert_eq!(a.features, KernelFeature::ALL.into_iter().collect());
    }

    #[test]
    fn an_unknown_feature_is_refused_naming_the_accepted_ones() {
        let err = Allowlist::parse("PLEXUS_EXPECTED_SKIPS", "ipvlan,vxlan")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"vxlan\""), "{err}");
        assert!(err.contains("ipvlan, vlan, bridge-vlan-filtering"), "{err}");
    }

    #[test]
    fn an_unexpected_skip_fails_and_an_expected_one_passes() {
        let a = Allowlist::parse("PLEXUS_EXPECTED_SKIPS", "ipvlan").unwrap();
        a.check("t", KernelFeature::Ipvlan).unwrap();
        let err = a
            .check("vlan_test", KernelFeature::Vlan)
            .unwrap_err()
            .to_string();
        assert!(err.contains("vlan_test"), "{err}");
        assert!(err.contains("[ipvlan]"), "{err}");
        let none = Allowlist::parse("x", "").unwrap();
        assert!(none.check("t", KernelFeature::Ipvlan).is_err());
    }

    #[test]
    fn the_variable_wins_then_the_file_applies_only_when_required() {
        let a = Allowlist::select(Some("vlan"), Requirement::Optional)
            .unwrap()
            .unwrap();
        assert_eq!(a.features, [KernelFeature::Vlan].into_iter().collect());
        assert_eq!(
            Allowlist::select(None, Requirement::Optional).unwrap(),
            None
        );
        let file = Allowlist::select(None, Requirement::Required)
            .unwrap()
            .unwrap();
        assert_eq!(file, Allowlist::read(&Allowlist::default_path()).unwrap());
    }

    #[test]
    fn the_repository_allowlist_parses() {
        Allowlist::read(&Allowlist::default_path()).unwrap();
    }
}

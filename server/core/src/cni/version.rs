//! CNI spec versions: the list this code implements, parsing and comparison with libcni's
//! rules, reading a config's `cniVersion`, and the VERSION command's result object.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use super::Error;

/// Every spec version plexus reads and writes, oldest first.
pub const SUPPORTED: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// The newest spec version.
pub const CURRENT: &str = "1.1.0";

/// The version libcni assumes when a config or result carries none.
pub const IMPLICIT: &str = "0.1.0";

/// The three numbers of a version, parsed like libcni's `version.ParseVersion`:
/// one to three dot-separated decimal parts, missing parts are 0.
pub fn parse(version: &str) -> Result<(u64, u64, u64), Error> {
    let invalid = || Error::InvalidVersion {
        version: version.to_owned(),
    };
    let parts: Vec<&str> = version.split('.').collect();
    if parts.len() > 3 {
        return Err(invalid());
    }
    let mut nums = [0u64; 3];
    for (slot, part) in nums.iter_mut().zip(&parts) {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        *slot = part.parse().map_err(|_| invalid())?;
    }
    Ok((nums[0], nums[1], nums[2]))
}

/// Compares two versions numerically.
pub fn compare(a: &str, b: &str) -> Result<Ordering, Error> {
    Ok(parse(a)?.cmp(&parse(b)?))
}

/// `a >= b`, numerically.
pub fn at_least(a: &str, b: &str) -> Result<bool, Error> {
    Ok(compare(a, b)? != Ordering::Less)
}

/// True when `version` is one of [`SUPPORTED`] (exact text).
pub fn is_supported(version: &str) -> bool {
    SUPPORTED.contains(&version)
}

/// The highest of `candidates` that this code supports (libcni ≥ 1.2 `cniVersions`).
pub fn highest_supported<'a>(candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .filter(|v| is_supported(v))
        .max_by(|a, b| compare(a, b).unwrap_or(Ordering::Equal))
}

/// The `cniVersion` of a network config (conf or conflist), `"0.1.0"` when absent or
/// empty (libcni `ConfigDecoder`).
pub fn of_config(config: &[u8]) -> Result<String, Error> {
    let value: serde_json::Value =
        serde_json::from_slice(config).map_err(|e| Error::ParseConfig {
            reason: e.to_string(),
        })?;
    let Some(object) = value.as_object() else {
        return Err(Error::ParseConfig {
            reason: "the config is not a JSON object".to_owned(),
        });
    };
    match object.get("cniVersion") {
        None | Some(serde_json::Value::Null) => Ok(IMPLICIT.to_owned()),
        Some(serde_json::Value::String(s)) if s.is_empty() => Ok(IMPLICIT.to_owned()),
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(Error::ParseConfig {
            reason: format!("cniVersion must be a string, got {other}"),
        }),
    }
}

/// The result of the VERSION command: which spec versions a plugin implements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// The version of this output (the version of the request).
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// Versions the plugin implements.
    #[serde(rename = "supportedVersions", default)]
    pub supported_versions: Vec<String>,
}

impl VersionInfo {
    /// What plexus itself answers to VERSION, labelled with the request's version.
    pub fn plexus(request_version: &str) -> Self {
        Self {
            cni_version: request_version.to_owned(),
            supported_versions: SUPPORTED.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    /// What libcni assumes for a plugin that answers `unknown CNI_COMMAND: VERSION`.
    pub fn legacy() -> Self {
        Self {
            cni_version: IMPLICIT.to_owned(),
            supported_versions: vec![IMPLICIT.to_owned()],
        }
    }

    /// Parses a VERSION answer with libcni's `PluginDecoder` rules: `cniVersion` is
    /// required; a 0.2.0 answer without `supportedVersions` means 0.1.0 and 0.2.0.
    pub fn parse(stdout: &[u8]) -> Result<Self, Error> {
        let mut info: VersionInfo =
            serde_json::from_slice(stdout).map_err(|e| Error::ParseVersionInfo {
                reason: e.to_string(),
            })?;
        if info.cni_version.is_empty() {
            return Err(Error::ParseVersionInfo {
                reason: "missing field cniVersion".to_owned(),
            });
        }
        if info.supported_versions.is_empty() {
            if info.cni_version != "0.2.0" {
                return Err(Error::ParseVersionInfo {
                    reason: "missing field supportedVersions".to_owned(),
                });
            }
            info.supported_versions = vec!["0.1.0".to_owned(), "0.2.0".to_owned()];
        }
        Ok(info)
    }

    /// True when the plugin implements `version`.
    pub fn supports(&self, version: &str) -> bool {
        self.supported_versions.iter().any(|v| v == version)
    }

    /// Compact JSON text, as a plugin prints it.
    pub fn render(&self) -> String {
        super::json::marshal(self).unwrap_or_default()
    }
}

//! The CNI shim path's keys: `cni.install` / `cni.binDir` / `cni.shimBinary`, and the Multus
//! generator keys that mean the same here (`cniConfigDir`, `multusAutoconfigDir`,
//! `multusConfigFile`, `readinessindicatorfile`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// Whether plexusd installs itself as the runtime's CNI network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Install {
    /// Write `00-plexus.conflist` wrapping the primary and install `plexus-cni`.
    Auto,
    /// Touch nothing in the runtime's CNI dirs (the NRI path).
    #[default]
    Off,
}

/// `cni:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawCni {
    install: Option<Install>,
    conf_dir: Option<PathBuf>,
    primary_dir: Option<PathBuf>,
    bin_dir: Option<PathBuf>,
    shim_binary: Option<PathBuf>,
    readiness_indicator_file: Option<PathBuf>,
}

/// The Multus names, as written at the top level.
#[derive(Debug, Default)]
pub(super) struct MultusKeys {
    /// `cniConfigDir`.
    pub cni_config_dir: Option<PathBuf>,
    /// `multusAutoconfigDir`.
    pub multus_autoconfig_dir: Option<PathBuf>,
    /// `multusConfigFile`.
    pub multus_config_file: Option<String>,
    /// `readinessindicatorfile`.
    pub readiness_indicator_file: Option<PathBuf>,
}

/// The CNI shim path's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniConfig {
    /// `cni.install` (`multusConfigFile: auto` means `auto`).
    pub install: Install,
    /// The runtime's CNI conf dir, where `00-plexus.conflist` goes (`cni.confDir`,
    /// `cniConfigDir`; default `/etc/cni/net.d`).
    pub conf_dir: PathBuf,
    /// Where the primary config is looked for (`cni.primaryDir`, `multusAutoconfigDir`;
    /// default the conf dir).
    pub primary_dir: PathBuf,
    /// Where `plexus-cni` is installed (`cni.binDir`; default the first `cniBinDirs`).
    pub bin_dir: PathBuf,
    /// The `plexus-cni` binary to install (`cni.shimBinary`; default beside plexusd).
    pub shim_binary: Option<PathBuf>,
    /// Multus's `readinessindicatorfile`: ADD fails (code 11) while it is missing.
    pub readiness_file: Option<PathBuf>,
}

fn invalid(key: &'static str, message: impl Into<String>) -> Error {
    Error::ConfigValue {
        key,
        message: message.into(),
    }
}

fn either<T>(
    a: Option<T>,
    a_key: &'static str,
    b: Option<T>,
    b_key: &'static str,
) -> Result<Option<T>> {
    match (a, b) {
        (Some(_), Some(_)) => Err(invalid(
            a_key,
            format!("set either {a_key} or {b_key}, not both"),
        )),
        (a, b) => Ok(a.or(b)),
    }
}

pub(super) fn validate(
    raw: Option<RawCni>,
    multus: MultusKeys,
    base: &Path,
    bin_dirs: &[PathBuf],
) -> Result<CniConfig> {
    let raw = raw.unwrap_or_default();
    let path = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
    let from_file = match multus.multus_config_file.as_deref() {
        None => None,
        Some("auto") => Some(Install::Auto),
        Some(other) => {
            return Err(invalid(
                "multusConfigFile",
                format!(
                    "{other:?}: plexus generates its config from the primary; accepted: auto (or cni.install: auto|off)"
                ),
            ));
        }
    };
    let install =
        either(raw.install, "cni.install", from_file, "multusConfigFile")?.unwrap_or_default();
    let conf_dir = either(
        raw.conf_dir,
        "cni.confDir",
        multus.cni_config_dir,
        "cniConfigDir",
    )?
    .map(path)
    .unwrap_or_else(|| PathBuf::from("/etc/cni/net.d"));
    let primary_dir = either(
        raw.primary_dir,
        "cni.primaryDir",
        multus.multus_autoconfig_dir,
        "multusAutoconfigDir",
    )?
    .map(path)
    .unwrap_or_else(|| conf_dir.clone());
    let readiness_file = either(
        raw.readiness_indicator_file,
        "cni.readinessIndicatorFile",
        multus.readiness_indicator_file,
        "readinessindicatorfile",
    )?
    .filter(|p| !p.as_os_str().is_empty());
    if let Some(p) = &readiness_file
        && !p.is_absolute()
    {
        return Err(invalid(
            "readinessindicatorfile",
            format!("{} is relative; write an absolute path", p.display()),
        ));
    }
    let bin_dir = raw
        .bin_dir
        .map(path)
        .or_else(|| bin_dirs.first().cloned())
        .unwrap_or_else(|| PathBuf::from("/opt/cni/bin"));
    Ok(CniConfig {
        install,
        conf_dir,
        primary_dir,
        bin_dir,
        shim_binary: raw.shim_binary.map(path),
        readiness_file,
    })
}

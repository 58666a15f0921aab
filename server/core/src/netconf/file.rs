//! CNI config files on disk: the config directory searched by network name for
//! spec-less NADs (F20) and cluster/default networks given by name or path (F28).
//!
//! Like libcni, `.conflist` files are chains and `.conf`/`.json` files single plugins,
//! visited in file-name order. Unlike Multus, an unparseable file does not abort the
//! search for a later one: it is skipped with a warning, and only the file whose
//! `name` matches must be valid.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{MAX_CONFIG_BYTES, NetConf};
use crate::error::{Error, Result};
use crate::plan::ConfigForm;

const EXTENSIONS: [&str; 3] = ["conf", "conflist", "json"];

fn form_of(path: &Path) -> ConfigForm {
    if path.extension().is_some_and(|e| e == "conflist") {
        ConfigForm::Conflist
    } else {
        ConfigForm::Conf
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    let io = |cause| Error::ReadNetworkConfig {
        path: path.to_path_buf(),
        cause,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_CONFIG_BYTES as u64 {
        return Err(Error::InvalidNetworkConfig {
            network: path.display().to_string(),
            reason: format!("file is {len} bytes, more than the {MAX_CONFIG_BYTES} accepted"),
        });
    }
    std::fs::read(path).map_err(io)
}

/// Config files of `dir` (`.conf`, `.conflist`, `.json`), sorted by name.
fn config_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let io = |cause| Error::ReadNetworkConfig {
        path: dir.to_path_buf(),
        cause,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let wanted = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e));
        if wanted && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Loads one config file; the extension decides conf or conflist (libcni). Messages
/// name the file.
pub fn load_file(path: &Path) -> Result<NetConf> {
    let bytes = read(path)?;
    NetConf::parse_as(
        &path.display().to_string(),
        &bytes,
        None,
        Some(form_of(path)),
    )
}

/// Loads `path` given as clusterNetwork/defaultNetworks: a file, or a directory whose
/// first config file (by name) is used (F28).
pub fn load_path(path: &Path) -> Result<(PathBuf, NetConf)> {
    let meta = std::fs::metadata(path).map_err(|cause| Error::ReadNetworkConfig {
        path: path.to_path_buf(),
        cause,
    })?;
    if meta.is_dir() {
        let first =
            config_files(path)?
                .into_iter()
                .next()
                .ok_or_else(|| Error::InvalidNetworkConfig {
                    network: path.display().to_string(),
                    reason: "the directory holds no .conf, .conflist or .json file".to_string(),
                })?;
        let conf = load_file(&first)?;
        return Ok((first, conf));
    }
    Ok((path.to_path_buf(), load_file(path)?))
}

/// Finds the config whose `name` is `name` in `dir` (F20), for the network shown as
/// `network`. Files that cannot be read or parsed are skipped with a warning.
pub fn find_by_name(dir: &Path, name: &str, network: &str) -> Result<(PathBuf, NetConf)> {
    for path in config_files(dir)? {
        let bytes = match read(&path) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "skipping CNI config file");
                continue;
            }
        };
        let found = match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => v.get("name").and_then(Value::as_str) == Some(name),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "skipping unparseable CNI config file");
                continue;
            }
        };
        if found {
            let shown = format!("{network} (file {})", path.display());
            let conf = NetConf::parse_as(&shown, &bytes, None, Some(form_of(&path)))?;
            return Ok((path, conf));
        }
    }
    Err(Error::NetworkConfigFileNotFound {
        network: network.to_string(),
        name: name.to_string(),
        dir: dir.to_path_buf(),
    })
}

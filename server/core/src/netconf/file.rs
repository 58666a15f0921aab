//! CNI config files on disk: the config directory searched by network name for
//! spec-less NADs (F20) and cluster/default networks given by name or path (F28),
//! including the subdirectory chain of a `.conflist` file given as a path (F35).
//!
//! Like libcni, `.conflist` files are chains and `.conf`/`.json` files single plugins,
//! visited in file-name order; a missing directory holds no configs. Unlike Multus, an
//! unparseable file does not abort the search for a later one, and only the file whose
//! `name` matches must be valid; but when no file matches, the files that could not be
//! read or parsed are named in the error (one of them may be the config wanted).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

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

/// Config files of `dir` (`.conf`, `.conflist`, `.json`), sorted by name; none when
/// `dir` does not exist (libcni `ConfFiles`).
fn config_files(dir: &Path) -> Result<Vec<PathBuf>> {
    files_with(dir, &EXTENSIONS)
}

/// Regular files of `dir` whose extension is one of `extensions`, sorted by name.
fn files_with(dir: &Path, extensions: &[&str]) -> Result<Vec<PathBuf>> {
    let io = |cause| Error::ReadNetworkConfig {
        path: dir.to_path_buf(),
        cause,
    };
    let mut files = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(io(e)),
    };
    for entry in entries {
        let path = entry.map_err(io)?.path();
        let wanted = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| extensions.contains(&e));
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

/// Loads `path` given as clusterNetwork/defaultNetworks (F28): a directory's first
/// config file (by name), a `.conflist` file with its subdirectory chain (F35), or a
/// single-plugin file.
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
    if !meta.is_file() {
        return Err(Error::InvalidNetworkConfig {
            network: path.display().to_string(),
            reason: "CNI configuration path is not a regular file; accepted: a config file or a directory holding one".to_string(),
        });
    }
    if form_of(path) == ConfigForm::Conflist {
        return Ok((path.to_path_buf(), load_chain(path)?));
    }
    Ok((path.to_path_buf(), load_file(path)?))
}

/// At most three problems, then how many more.
fn summary(problems: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut text = problems[..problems.len().min(SHOWN)].join("; ");
    if problems.len() > SHOWN {
        text.push_str(&format!("; and {} more", problems.len() - SHOWN));
    }
    text
}

/// F35: a conflist file plus the plugins of `<its dir>/<name>/*.conf` (sorted), appended
/// to its inline `plugins`, unless it sets `"loadOnlyInlinedPlugins": true`.
fn load_chain(path: &Path) -> Result<NetConf> {
    let shown = path.display().to_string();
    let invalid = |reason: String| Error::InvalidNetworkConfig {
        network: shown.clone(),
        reason,
    };
    let as_conflist =
        |bytes: &[u8]| NetConf::parse_as(&shown, bytes, None, Some(ConfigForm::Conflist));
    let bytes = read(path)?;
    let Ok(Value::Object(mut value)) = serde_json::from_slice::<Value>(&bytes) else {
        return as_conflist(&bytes);
    };
    // libcni readBool: a boolean, or the string "true"/"false" in any case.
    let inline_only = match value.get("loadOnlyInlinedPlugins") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
        Some(_) => {
            return Err(invalid(
                "\"loadOnlyInlinedPlugins\" must be true or false".to_string(),
            ));
        }
    };
    if inline_only {
        if value.contains_key("plugins") {
            return as_conflist(&bytes);
        }
        return Err(invalid(
            "`loadOnlyInlinedPlugins` is true, and no 'plugins' key; accepted: an inline \"plugins\" list, or loadOnlyInlinedPlugins false to load <dir>/<name>/*.conf".to_string(),
        ));
    }
    let name = value
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !crate::charset::is_cni_name(name) {
        return Err(invalid(format!(
            "invalid network config name: {name:?}; a conflist given as a path needs a \"name\" matching ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$ (it names the subdirectory of extra plugins), or \"loadOnlyInlinedPlugins\": true"
        )));
    }
    let subdir = path.parent().unwrap_or(Path::new(".")).join(name);
    let extra = subdirectory_plugins(&subdir)?;
    let inline_unusable = value
        .get("plugins")
        .is_some_and(|p| p.as_array().is_none_or(Vec::is_empty));
    if inline_unusable {
        // Not a list, or libcni's "no plugins in list": NetConf says what is wrong.
        return as_conflist(&bytes);
    }
    if extra.is_empty() {
        if !value.contains_key("plugins") {
            return Err(invalid(format!(
                "no plugin configs found: neither an inline \"plugins\" list nor .conf files in {}",
                subdir.display()
            )));
        }
        return as_conflist(&bytes);
    }
    if let Value::Array(plugins) = value
        .entry("plugins")
        .or_insert_with(|| Value::Array(Vec::new()))
    {
        plugins.extend(extra.into_iter().map(Value::Object));
    }
    let merged =
        serde_json::to_vec(&Value::Object(value)).expect("a JSON object always serialises");
    as_conflist(&merged)
}

/// The plugin objects of `dir/*.conf` in name order; none when `dir` does not exist.
fn subdirectory_plugins(dir: &Path) -> Result<Vec<Map<String, Value>>> {
    let mut plugins = Vec::new();
    for path in files_with(dir, &["conf"])? {
        let bytes = read(&path)?;
        let invalid = |reason: String| Error::InvalidNetworkConfig {
            network: path.display().to_string(),
            reason,
        };
        let plugin =
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(plugin)) => plugin,
                Ok(_) => return Err(invalid(
                    "error parsing configuration: a chained plugin file must hold one JSON object"
                        .to_string(),
                )),
                Err(e) => return Err(invalid(format!("error parsing configuration: {e}"))),
            };
        match plugin.get("type") {
            Some(Value::String(t)) if !t.is_empty() => plugins.push(plugin),
            _ => {
                return Err(invalid(
                    "error parsing configuration: missing 'type'; accepted: one plugin object with a \"type\"".to_string(),
                ));
            }
        }
    }
    Ok(plugins)
}

/// Finds the config whose `name` is `name` in `dir` (F20), for the network shown as
/// `network`. Files that cannot be read or parsed do not stop the search; when nothing
/// matches they are named in the error.
pub fn find_by_name(dir: &Path, name: &str, network: &str) -> Result<(PathBuf, NetConf)> {
    let files = config_files(dir)?;
    if files.is_empty() {
        return Err(Error::NoNetworkConfigs {
            network: network.to_string(),
            dir: dir.to_path_buf(),
        });
    }
    let mut unusable = Vec::new();
    for path in files {
        let bytes = match read(&path) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot use CNI config file");
                unusable.push(e.to_string());
                continue;
            }
        };
        let found = match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => v.get("name").and_then(Value::as_str) == Some(name),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot parse CNI config file");
                unusable.push(format!("{}: not JSON: {e}", path.display()));
                continue;
            }
        };
        if found {
            let shown = format!("{network} (file {})", path.display());
            let conf = NetConf::parse_as(&shown, &bytes, None, Some(form_of(&path)))?;
            return Ok((path, conf));
        }
    }
    if !unusable.is_empty() {
        return Err(Error::UnusableNetworkConfigs {
            network: network.to_string(),
            name: name.to_string(),
            dir: dir.to_path_buf(),
            problems: summary(&unusable),
        });
    }
    Err(Error::NetworkConfigFileNotFound {
        network: network.to_string(),
        name: name.to_string(),
        dir: dir.to_path_buf(),
    })
}

//! From a NAD's `spec.config` (or an on-disk CNI config) to the delegate config a
//! network runs with: name injection (F18), conf vs conflist (F19), spec-less NADs
//! resolved from the config directory by name (F20), `cni-args` injection into
//! `args.cni` of every plugin (F14), display names (F21).
//!
//! A NAD's config is written by anyone allowed to create a NAD, so the plugin `type`
//! must be a bare name (it becomes a binary path under the CNI bin dir) and the size is
//! capped. Everything else in the config is foreign and passes through as JSON values
//! in their original key order; when nothing was injected the original bytes are kept
//! verbatim. The only I/O here is reading config files (F20, F28).

mod file;
#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

use crate::error::{Error, Result, shorten};
use crate::nad::Nad;
use crate::plan::{ConfigForm, DelegateConfig, NetworkSource};

pub use file::{find_by_name, load_file, load_path};

/// Largest network config accepted, in bytes.
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;
/// Longest plugin `type` accepted, in bytes.
pub const MAX_TYPE_BYTES: usize = 64;

/// A parsed delegate config, before it is frozen into a [`DelegateConfig`].
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// The config object, keys in their original order.
    pub value: Map<String, Value>,
    /// Single plugin or chain.
    pub form: ConfigForm,
    /// The config's `name` (after injection).
    pub name: String,
    /// The config's `cniVersion` (`""` when absent).
    pub cni_version: String,
    /// Plugin types in chain order.
    pub plugin_types: Vec<String>,
    /// The original bytes, kept while the value is unmodified.
    original: Option<Vec<u8>>,
}

impl NetConf {
    /// Parses config bytes for the network shown as `network` in messages. When the
    /// config has no (or an empty) `name`, `inject_name` is set (F18). The form is
    /// detected like Multus: a non-empty `type` is a conf, else a conflist (F19).
    pub fn parse(network: &str, bytes: &[u8], inject_name: Option<&str>) -> Result<NetConf> {
        Self::parse_as(network, bytes, inject_name, None)
    }

    /// Like [`NetConf::parse`], with the form forced (file extensions decide for files).
    pub(crate) fn parse_as(
        network: &str,
        bytes: &[u8],
        inject_name: Option<&str>,
        form: Option<ConfigForm>,
    ) -> Result<NetConf> {
        let invalid = |reason: String| Error::InvalidNetworkConfig {
            network: network.to_string(),
            reason,
        };
        if bytes.len() > MAX_CONFIG_BYTES {
            return Err(invalid(format!(
                "config is {} bytes, more than the {MAX_CONFIG_BYTES} accepted",
                bytes.len()
            )));
        }
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            invalid(format!(
                "failed to unmarshal config: {e}; accepted: a CNI config JSON object"
            ))
        })?;
        let Value::Object(mut value) = value else {
            return Err(invalid(
                "config must be a JSON object with \"type\" (a conf) or \"plugins\" (a conflist)"
                    .to_string(),
            ));
        };
        let mut original = Some(bytes.to_vec());
        let name = match value.get("name") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(invalid("\"name\" must be a string".to_string())),
        };
        let name = match inject_name {
            Some(injected) if name.is_empty() => {
                value.insert("name".to_string(), Value::String(injected.to_string()));
                original = None;
                injected.to_string()
            }
            _ => name,
        };
        let cni_version = match value.get("cniVersion") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(invalid("\"cniVersion\" must be a string".to_string())),
        };
        let top_type = match value.get("type") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(invalid("\"type\" must be a string".to_string())),
        };
        let form = form.unwrap_or(if top_type.is_empty() {
            ConfigForm::Conflist
        } else {
            ConfigForm::Conf
        });
        let plugin_types = match form {
            ConfigForm::Conf => {
                if top_type.is_empty() {
                    return Err(invalid(
                        "no 'type'; perhaps this is a .conflist? accepted: a conf with a plugin \"type\""
                            .to_string(),
                    ));
                }
                check_type(network, 0, &top_type)?;
                vec![top_type]
            }
            ConfigForm::Conflist => plugin_types(network, &value)?,
        };
        Ok(NetConf {
            value,
            form,
            name,
            cni_version,
            plugin_types,
            original,
        })
    }

    /// Merges `args` into `args.cni` of the conf, or of every plugin of a conflist
    /// (F14): missing `args`/`args.cni` objects are created, given keys overwrite
    /// existing ones. An empty `args` changes nothing.
    pub fn inject_cni_args(&mut self, network: &str, args: &Map<String, Value>) -> Result<()> {
        if args.is_empty() {
            return Ok(());
        }
        self.original = None;
        match self.form {
            ConfigForm::Conf => merge_args(network, &mut self.value, args),
            ConfigForm::Conflist => {
                let Some(Value::Array(plugins)) = self.value.get_mut("plugins") else {
                    return Ok(());
                };
                for plugin in plugins {
                    if let Value::Object(plugin) = plugin {
                        merge_args(network, plugin, args)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Freezes the config: the original bytes when unmodified, else the re-serialised
    /// object (key order preserved).
    pub fn into_delegate(self) -> DelegateConfig {
        let bytes = match self.original {
            Some(bytes) => bytes,
            None => serde_json::to_vec(&Value::Object(self.value))
                .expect("a JSON object always serialises"),
        };
        DelegateConfig {
            form: self.form,
            name: self.name,
            cni_version: self.cni_version,
            plugin_types: self.plugin_types,
            bytes,
        }
    }
}

fn merge_args(
    network: &str,
    target: &mut Map<String, Value>,
    args: &Map<String, Value>,
) -> Result<()> {
    let invalid = |what: &str| Error::InvalidNetworkConfig {
        network: network.to_string(),
        reason: format!("{what} must be an object to receive cni-args"),
    };
    let outer = target
        .entry("args")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(outer) = outer else {
        return Err(invalid("\"args\""));
    };
    let cni = outer
        .entry("cni")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(cni) = cni else {
        return Err(invalid("\"args.cni\""));
    };
    for (k, v) in args {
        cni.insert(k.clone(), v.clone());
    }
    Ok(())
}

fn plugin_types(network: &str, value: &Map<String, Value>) -> Result<Vec<String>> {
    let invalid = |reason: String| Error::InvalidNetworkConfig {
        network: network.to_string(),
        reason,
    };
    let plugins = match value.get("plugins") {
        None | Some(Value::Null) => {
            return Err(invalid(
                "delegate must have the 'type' or 'plugin' field; accepted: a conf with \"type\" or a conflist with a non-empty \"plugins\" list"
                    .to_string(),
            ));
        }
        Some(Value::Array(p)) if p.is_empty() => {
            return Err(invalid(
                "the 'plugins' list is empty; a conflist needs at least one plugin".to_string(),
            ));
        }
        Some(Value::Array(p)) => p,
        Some(_) => {
            return Err(invalid(
                "\"plugins\" must be a list of plugin objects".to_string(),
            ));
        }
    };
    let mut types = Vec::with_capacity(plugins.len());
    for (i, plugin) in plugins.iter().enumerate() {
        let t = match plugin.get("type") {
            Some(Value::String(t)) if !t.is_empty() => t.clone(),
            _ => {
                return Err(invalid(format!(
                    "a plugin delegate must have the 'type' field (plugin {i} has none)"
                )));
            }
        };
        check_type(network, i, &t)?;
        types.push(t);
    }
    Ok(types)
}

/// Checks that a plugin `type` is a bare binary name.
pub fn check_type(network: &str, plugin_index: usize, plugin_type: &str) -> Result<()> {
    let Some(reason) = plugin_type_problem(plugin_type) else {
        return Ok(());
    };
    Err(Error::InvalidPluginType {
        network: network.to_string(),
        plugin_index,
        plugin_type: shorten(plugin_type, 80),
        reason: reason.to_string(),
    })
}

/// What is wrong with a plugin `type`, if anything: the one rule every part of plexus
/// applies before a type becomes a file name in the plugin directories (not empty, at
/// most [`MAX_TYPE_BYTES`], no path, only letters, digits, `.`, `_`, `-`, starting with a
/// letter or digit).
pub fn plugin_type_problem(plugin_type: &str) -> Option<&'static str> {
    if plugin_type.is_empty() {
        Some("it is empty")
    } else if plugin_type.len() > MAX_TYPE_BYTES {
        Some("it is longer than 64 bytes")
    } else if plugin_type.contains('/') {
        Some("it contains '/' (a path)")
    } else if plugin_type.contains("..") {
        Some("it contains '..'")
    } else if !crate::charset::is_cni_name(plugin_type) {
        Some(
            "it contains characters outside letters, digits, '.', '_' and '-', or does not start with a letter or digit",
        )
    } else {
        None
    }
}

/// Resolves a NAD into its delegate config and source (F18–F21): `spec.config` when
/// present, else the config named like the NAD in `conf_dir`. The config `name` is
/// injected from the NAD name when missing.
pub fn from_nad(nad: &Nad, conf_dir: &std::path::Path) -> Result<(NetConf, NetworkSource)> {
    let network = nad.key();
    if nad.config.trim().is_empty() {
        let (path, conf) = find_by_name(conf_dir, &nad.name, &network)?;
        let source = NetworkSource::NadFile {
            namespace: nad.namespace.clone(),
            name: nad.name.clone(),
            path: path.display().to_string(),
        };
        return Ok((conf, source));
    }
    let conf = NetConf::parse(&network, nad.config.as_bytes(), Some(&nad.name))?;
    let source = NetworkSource::Nad {
        namespace: nad.namespace.clone(),
        name: nad.name.clone(),
    };
    Ok((conf, source))
}

//! The delegate's config as libcni sees it: a conf or conflist read into a list of plugin
//! objects, and the per-plugin stdin built from it (libcni `buildOneConfig`,
//! `injectRuntimeConfig`): `name` and `cniVersion` of the list, `prevResult`, and a
//! `runtimeConfig` of only the capabilities the plugin declares. Every other key of a
//! plugin object passes through untouched, in its original order.

use plexus_core::cni::{self, version};
use plexus_core::id::NetworkName;
use plexus_core::plan::{ConfigForm, DelegateConfig, RuntimeConfig};
use serde_json::{Map, Value};

use super::error::{Error, Result};

/// Longest plugin type accepted (the core rule's limit).
pub const MAX_PLUGIN_TYPE_LEN: usize = plexus_core::netconf::MAX_TYPE_BYTES;

/// A conf or conflist, read.
#[derive(Debug, Clone)]
pub struct NetworkList {
    /// Network name (libcni's rule: it names cache files and lease directories).
    pub name: NetworkName,
    /// The version every plugin runs with.
    pub cni_version: String,
    /// `disableCheck`.
    pub disable_check: bool,
    /// `disableGC`.
    pub disable_gc: bool,
    /// Plugin objects in chain order, each with a validated `type`.
    pub plugins: Vec<PluginConf>,
}

/// One plugin object of a list.
#[derive(Debug, Clone)]
pub struct PluginConf {
    /// The plugin `type` (a validated bare name).
    pub plugin_type: String,
    /// The object as written.
    pub object: Map<String, Value>,
}

/// Checks that a plugin `type` is a bare file name, by the one rule of
/// [`plexus_core::netconf::plugin_type_problem`] (the resolver applies the same).
pub fn validate_plugin_type(plugin: &str) -> Result<()> {
    match plexus_core::netconf::plugin_type_problem(plugin) {
        Some(reason) => Err(Error::InvalidPluginType {
            plugin: plugin.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

fn invalid(network: &str, reason: impl Into<String>) -> Error {
    Error::InvalidConfig {
        network: network.to_owned(),
        reason: reason.into(),
    }
}

fn plugin_conf(network: &str, object: Map<String, Value>) -> Result<PluginConf> {
    let plugin_type = match object.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(_) => return Err(invalid(network, "plugin \"type\" must be a string")),
        None => return Err(invalid(network, "a plugin has no \"type\"")),
    };
    validate_plugin_type(&plugin_type)?;
    Ok(PluginConf {
        plugin_type,
        object,
    })
}

impl NetworkList {
    /// Reads the delegate config bytes. The version is the highest supported entry of
    /// `cniVersions` when present (libcni ≥ 1.2), else `cniVersion` (`0.1.0` when absent).
    pub fn parse(config: &DelegateConfig) -> Result<NetworkList> {
        let label = config.name.as_str();
        let value: Value = serde_json::from_slice(&config.bytes)
            .map_err(|e| invalid(label, format!("not JSON: {e}")))?;
        let Value::Object(mut top) = value else {
            return Err(invalid(label, "the config is not a JSON object"));
        };
        let name = match top.get("name") {
            Some(Value::String(n)) if !n.is_empty() => n.clone(),
            _ if !config.name.is_empty() => config.name.clone(),
            _ => return Err(invalid(label, "the config has no \"name\"")),
        };
        let name = NetworkName::new(name.as_str()).map_err(|e| invalid(&name, e.to_string()))?;
        let mut cni_version =
            version::of_config(&config.bytes).map_err(|e| invalid(&name, e.to_string()))?;
        if let Some(Value::Array(list)) = top.get("cniVersions") {
            let candidates = list.iter().filter_map(Value::as_str);
            if let Some(best) = version::highest_supported(candidates) {
                cni_version = best.to_owned();
            }
        }
        let flag = |top: &Map<String, Value>, key: &str| {
            top.get(key).and_then(Value::as_bool).unwrap_or(false)
        };
        let (disable_check, disable_gc) = (flag(&top, "disableCheck"), flag(&top, "disableGC"));
        let plugins = match config.form {
            ConfigForm::Conf => vec![plugin_conf(&name, top)?],
            ConfigForm::Conflist => {
                let Some(Value::Array(list)) = top.remove("plugins") else {
                    return Err(invalid(&name, "a conflist needs a \"plugins\" list"));
                };
                if list.is_empty() {
                    return Err(invalid(&name, "the \"plugins\" list is empty"));
                }
                list.into_iter()
                    .map(|p| match p {
                        Value::Object(o) => plugin_conf(&name, o),
                        _ => Err(invalid(&name, "a \"plugins\" entry is not an object")),
                    })
                    .collect::<Result<_>>()?
            }
        };
        Ok(NetworkList {
            name,
            cni_version,
            disable_check,
            disable_gc,
            plugins,
        })
    }
}

impl NetworkList {
    /// Gives every host-local `ipam` section without a `dataDir` the lease root
    /// `data_dir` (when set), and checks the `dataDir`s written in the config (absolute,
    /// no `..`): the plugin runs as root and creates files there.
    pub fn set_ipam_data_dir(&mut self, data_dir: Option<&std::path::Path>) -> Result<()> {
        for plugin in &mut self.plugins {
            let Some(Value::Object(ipam)) = plugin.object.get_mut("ipam") else {
                continue;
            };
            if ipam.get("type").and_then(Value::as_str) != Some("host-local") {
                continue;
            }
            match ipam.get("dataDir") {
                None => {}
                Some(Value::String(dir)) if dir.is_empty() => {}
                Some(Value::String(dir)) => {
                    crate::ipam::check_data_dir(std::path::Path::new(dir))
                        .map_err(|reason| invalid(&self.name, reason))?;
                    continue;
                }
                Some(_) => {
                    return Err(invalid(
                        &self.name,
                        "ipam.dataDir must be a string holding an absolute path",
                    ));
                }
            }
            if let Some(dir) = data_dir {
                ipam.insert("dataDir".into(), dir.to_string_lossy().into_owned().into());
            }
        }
        Ok(())
    }
}

impl PluginConf {
    /// The stdin for one invocation: the plugin object with the list's `name` and
    /// `cniVersion`, `prevResult` when given, and `runtimeConfig` = the capability args
    /// this plugin declares `true` (replacing any `runtimeConfig` it had), when non-empty.
    pub fn stdin(
        &self,
        list: &NetworkList,
        prev_result: Option<&Value>,
        capability_args: &Map<String, Value>,
    ) -> Vec<u8> {
        let mut object = self.object.clone();
        object.insert("name".into(), list.name.to_string().into());
        object.insert("cniVersion".into(), list.cni_version.clone().into());
        if let Some(prev) = prev_result {
            object.insert("prevResult".into(), prev.clone());
        }
        let runtime_config: Map<String, Value> = self
            .declared_capabilities()
            .filter_map(|cap| {
                capability_args
                    .get(cap)
                    .map(|v| (cap.to_owned(), v.clone()))
            })
            .collect();
        if !runtime_config.is_empty() {
            object.insert("runtimeConfig".into(), Value::Object(runtime_config));
        }
        serde_json::to_vec(&Value::Object(object)).unwrap_or_default()
    }

    /// Capabilities the plugin declares `true`, in its order.
    pub fn declared_capabilities(&self) -> impl Iterator<Item = &str> {
        self.object
            .get("capabilities")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter(|(_, on)| on.as_bool() == Some(true))
            .map(|(cap, _)| cap.as_str())
    }
}

/// Lower-cases the first letter of every key of `value`'s objects (one level, and of
/// objects inside arrays): containerd's Go structs without JSON tags arrive as
/// `HostPort`, `IngressRate`, `Servers`; the conventions say `hostPort`, ….
fn lower_first_keys(value: &mut Value) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(lower_first_keys),
        Value::Object(map) => {
            let old = std::mem::take(map);
            for (k, mut v) in old {
                if v.is_array() {
                    lower_first_keys(&mut v);
                }
                let mut chars = k.chars();
                let key = match chars.next() {
                    Some(c) => c.to_lowercase().chain(chars).collect(),
                    None => k,
                };
                map.insert(key, v);
            }
        }
        _ => {}
    }
}

/// The capability args one invocation offers: the runtime's own (normalised:
/// containerd's capitalised keys of `portMappings`, `bandwidth`, `dns` and `ipRanges`
/// become the conventional camelCase), then the attachment's requests, which win.
pub fn capability_args(
    runtime: Option<&Map<String, Value>>,
    requested: &RuntimeConfig,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in runtime.into_iter().flatten() {
        let mut value = value.clone();
        if matches!(
            key.as_str(),
            "portMappings" | "bandwidth" | "dns" | "ipRanges"
        ) {
            lower_first_keys(&mut value);
        }
        out.insert(key.clone(), value);
    }
    if let Ok(Value::Object(requested)) = serde_json::to_value(requested) {
        out.extend(requested);
    }
    out
}

/// The prevResult JSON for a plugin: `result` converted to the list's version.
pub fn prev_result_value(list: &NetworkList, result: &cni::Result) -> Result<Value> {
    result
        .to_value(&list.cni_version)
        .map_err(|error| Error::ConvertPrevResult {
            network: list.name.to_string(),
            version: list.cni_version.clone(),
            error,
        })
}

#[cfg(test)]
mod data_dir_tests {
    use std::path::Path;

    use super::*;

    fn list(json: Value) -> NetworkList {
        let form = if json.get("plugins").is_some() {
            ConfigForm::Conflist
        } else {
            ConfigForm::Conf
        };
        NetworkList::parse(&DelegateConfig {
            form,
            name: "n".into(),
            cni_version: "1.0.0".into(),
            plugin_types: Vec::new(),
            bytes: serde_json::to_vec(&json).unwrap(),
        })
        .unwrap()
    }

    #[test]
    fn host_local_gets_the_engine_lease_root_unless_it_has_one() {
        let mut l = list(
            serde_json::json!({"cniVersion": "1.0.0", "name": "n", "plugins": [
                {"type": "bridge", "ipam": {"type": "host-local", "subnet": "10.0.0.0/24"}},
                {"type": "macvlan", "ipam": {"type": "host-local", "dataDir": "/srv/leases"}},
                {"type": "ptp", "ipam": {"type": "static"}},
                {"type": "tuning"}
            ]}),
        );
        l.set_ipam_data_dir(Some(Path::new("/var/lib/plexus/ipam")))
            .unwrap();
        let dirs: Vec<Option<&str>> = l
            .plugins
            .iter()
            .map(|p| p.object.get("ipam").and_then(|i| i["dataDir"].as_str()))
            .collect();
        assert_eq!(
            dirs,
            [
                Some("/var/lib/plexus/ipam"),
                Some("/srv/leases"),
                None,
                None
            ]
        );
        // The plugin sees it on stdin.
        let stdin: Value =
            serde_json::from_slice(&l.plugins[0].stdin(&l, None, &Map::new())).unwrap();
        assert_eq!(stdin["ipam"]["dataDir"], "/var/lib/plexus/ipam");
    }

    #[test]
    fn a_config_data_dir_must_be_absolute_without_dot_dot() {
        for (dir, why) in [
            (serde_json::json!("leases"), "not an absolute path"),
            (serde_json::json!("/a/../etc"), "contains '..'"),
            (serde_json::json!(7), "must be a string"),
        ] {
            let mut l = list(
                serde_json::json!({"cniVersion": "1.0.0", "name": "n", "type": "bridge",
                "ipam": {"type": "host-local", "dataDir": dir}}),
            );
            let e = l.set_ipam_data_dir(None).unwrap_err().to_string();
            assert!(e.contains("ipam.dataDir") && e.contains(why), "{e}");
        }
    }
}

//! The resolver's domain configuration: which cluster and default networks a pod gets,
//! where NADs of the node's own networks live, namespace rules and who executes the
//! cluster network.
//!
//! This is not the daemon's file format (that belongs to `plexusd`, which maps its
//! YAML into [`Config`]); it holds only what resolution needs and does no I/O.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::netconf::NetConf;

/// Who sets up the pod's cluster network (its `eth0`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrimaryMode {
    /// The container runtime's own CNI (NRI path): `eth0` already exists when plexus
    /// runs. The primary stays in the plan as index 0, marked `runtime_managed`.
    #[default]
    Runtime,
    /// plexus executes the cluster network itself (CNI shim path, like Multus thick).
    Plexus,
}

/// Resolution settings, with Multus's defaults (§1.2c of the behaviour reference).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// `clusterNetwork`: a NAD name in `multus_namespace`, a CNI config `name` in
    /// `conf_dir`, or a path (containing `/`) to a config file or directory (F28).
    pub cluster_network: Option<String>,
    /// `defaultNetworks`: networks every pod outside `system_namespaces` gets (F29).
    /// Ignored in `delegates` mode (no `cluster_network`, non-empty `delegates`), like
    /// Multus; in runtime mode they also apply without a `cluster_network`.
    pub default_networks: Vec<String>,
    /// `delegates`: inline CNI configs (conf or conflist objects) used when
    /// `cluster_network` is unset (F27). The first is the cluster network; the others
    /// follow it for every pod (system namespaces included). Ignored when
    /// `cluster_network` is set, like Multus.
    pub delegates: Vec<serde_json::Value>,
    /// Namespace of clusterNetwork/defaultNetworks NADs and default of the
    /// default-network annotation (F33).
    pub multus_namespace: String,
    /// Namespaces whose pods get no `default_networks` (F32).
    pub system_namespaces: Vec<String>,
    /// Forbid annotation references to other namespaces (F31).
    pub namespace_isolation: bool,
    /// Namespaces any pod may refer to when isolation is on (F31). Replaces the
    /// default, so list `default` explicitly when wanted.
    pub global_namespaces: Vec<String>,
    /// Directory of CNI configs for spec-less NADs and named cluster/default networks (F20).
    pub conf_dir: PathBuf,
    /// Who executes the cluster network.
    pub primary_mode: PrimaryMode,
    /// Interface name of the primary (the runtime's `CNI_IFNAME`).
    pub primary_interface: crate::id::InterfaceName,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cluster_network: None,
            default_networks: Vec::new(),
            delegates: Vec::new(),
            multus_namespace: "kube-system".to_string(),
            system_namespaces: vec!["kube-system".to_string()],
            namespace_isolation: false,
            global_namespaces: vec!["default".to_string()],
            conf_dir: PathBuf::from("/etc/cni/multus/net.d"),
            primary_mode: PrimaryMode::Runtime,
            primary_interface: crate::id::InterfaceName::eth0(),
        }
    }
}

impl Config {
    /// Parses Multus's `globalNamespaces` string (comma-separated, trimmed, empty parts
    /// dropped) into the list form.
    pub fn parse_global_namespaces(value: &str) -> Vec<String> {
        value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Checks the settings once (at daemon start) so that a bad value fails there
    /// instead of on every pod.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field: &'static str, reason: String| Error::InvalidConfig { field, reason };
        let namespaces = std::iter::once(("multusNamespace", &self.multus_namespace))
            .chain(
                self.system_namespaces
                    .iter()
                    .map(|n| ("systemNamespaces", n)),
            )
            .chain(
                self.global_namespaces
                    .iter()
                    .map(|n| ("globalNamespaces", n)),
            );
        for (field, ns) in namespaces {
            let ok = !ns.is_empty()
                && ns.len() <= 63
                && ns
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !ns.starts_with('-')
                && !ns.ends_with('-');
            if !ok {
                return Err(invalid(
                    field,
                    format!(
                        "{ns:?} is not a Kubernetes namespace name (lower case alphanumerics and '-', at most 63 bytes)"
                    ),
                ));
            }
        }
        let networks = self
            .cluster_network
            .iter()
            .map(|n| ("clusterNetwork", n))
            .chain(self.default_networks.iter().map(|n| ("defaultNetworks", n)));
        for (field, value) in networks {
            if value.trim().is_empty() {
                return Err(invalid(
                    field,
                    "empty value; accepted: a NAD name in multusNamespace, a CNI config name in confDir, or a path".to_string(),
                ));
            }
        }
        if self.cluster_network.is_none() {
            for position in 0..self.delegates.len() {
                self.delegate(position)
                    .map_err(|e| invalid("delegates", e.to_string()))?;
            }
        }
        Ok(())
    }

    /// Parses entry `position` of `delegates` (F27). Like Multus, its own `name` is
    /// kept (none is injected); messages call it `delegates[<position>]`.
    pub fn delegate(&self, position: usize) -> Result<NetConf> {
        let shown = format!("delegates[{position}]");
        let value = self
            .delegates
            .get(position)
            .ok_or_else(|| Error::InvalidConfig {
                field: "delegates",
                reason: format!("{shown} does not exist"),
            })?;
        let bytes = serde_json::to_vec(value).expect("a JSON value always serialises");
        NetConf::parse(&shown, &bytes, None)
    }

    /// True when `namespace` is a system namespace (no default networks).
    pub fn is_system_namespace(&self, namespace: &str) -> bool {
        self.system_namespaces.iter().any(|n| n == namespace)
    }

    /// True when a pod in `pod_namespace` may use a network in `target_namespace`.
    pub fn may_reference(&self, pod_namespace: &str, target_namespace: &str) -> bool {
        !self.namespace_isolation
            || pod_namespace == target_namespace
            || self.global_namespaces.iter().any(|n| n == target_namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_multus() {
        let c = Config::default();
        assert_eq!(c.multus_namespace, "kube-system");
        assert_eq!(c.system_namespaces, ["kube-system"]);
        assert_eq!(c.global_namespaces, ["default"]);
        assert!(!c.namespace_isolation);
        assert_eq!(c.conf_dir, PathBuf::from("/etc/cni/multus/net.d"));
        assert_eq!(c.primary_mode, PrimaryMode::Runtime);
        assert_eq!(c.primary_interface, "eth0");
    }

    #[test]
    fn global_namespaces_string_is_split_and_trimmed() {
        assert_eq!(
            Config::parse_global_namespaces(" default, shared ,,infra"),
            ["default", "shared", "infra"]
        );
        assert!(Config::parse_global_namespaces("").is_empty());
    }

    #[test]
    fn isolation_allows_own_and_global_namespaces_only() {
        let mut c = Config::default();
        assert!(c.may_reference("a", "b"));
        c.namespace_isolation = true;
        assert!(c.may_reference("a", "a"));
        assert!(c.may_reference("a", "default"));
        assert!(!c.may_reference("a", "b"));
        c.global_namespaces = vec!["b".into()];
        assert!(!c.may_reference("a", "default"));
        assert!(c.may_reference("a", "b"));
    }

    #[test]
    fn validate_rejects_unusable_settings() {
        Config::default().validate().unwrap();
        let bad = [
            Config {
                multus_namespace: "Kube_System".into(),
                ..Config::default()
            },
            Config {
                global_namespaces: vec![String::new()],
                ..Config::default()
            },
            Config {
                system_namespaces: vec!["-x".into()],
                ..Config::default()
            },
            Config {
                cluster_network: Some(" ".into()),
                ..Config::default()
            },
            Config {
                default_networks: vec![String::new()],
                ..Config::default()
            },
        ];
        let fields: Vec<&str> = bad
            .iter()
            .map(|c| match c.validate().unwrap_err() {
                Error::InvalidConfig { field, .. } => field,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            fields,
            [
                "multusNamespace",
                "globalNamespaces",
                "systemNamespaces",
                "clusterNetwork",
                "defaultNetworks"
            ]
        );
    }

    #[test]
    fn delegates_are_checked_only_without_a_cluster_network() {
        let with = |delegates: serde_json::Value| Config {
            delegates: serde_json::from_value(delegates).unwrap(),
            primary_mode: PrimaryMode::Plexus,
            ..Config::default()
        };
        with(serde_json::json!([
            {"cniVersion": "1.0.0", "name": "cbr0", "type": "flannel"},
            {"name": "extra", "plugins": [{"type": "bridge"}, {"type": "tuning"}]}
        ]))
        .validate()
        .unwrap();
        let bad = with(serde_json::json!([{"type": "flannel"}, {"name": "x"}]));
        let e = bad.validate().unwrap_err();
        assert_eq!(
            e.to_string(),
            "resolver config delegates: network delegates[1]: delegate must have the 'type' or 'plugin' field; accepted: a conf with \"type\" or a conflist with a non-empty \"plugins\" list"
        );
        let e = with(serde_json::json!(["flannel"])).validate().unwrap_err();
        assert!(
            e.to_string()
                .contains("delegates[0]: config must be a JSON object"),
            "{e}"
        );
        let e = with(serde_json::json!([{"type": "../bin/sh"}]))
            .validate()
            .unwrap_err();
        assert!(
            e.to_string().contains("delegates[0]: plugin 0 has type"),
            "{e}"
        );
        // F27: with clusterNetwork set, delegates are ignored like Multus does.
        let ignored = Config {
            cluster_network: Some("cbr0".into()),
            ..bad
        };
        ignored.validate().unwrap();
        assert!(Config::default().delegate(0).is_err());
    }

    #[test]
    fn config_deserialises_camel_case_and_rejects_unknown_keys() {
        let c: Config = serde_json::from_str(
            r#"{"clusterNetwork":"cbr0","namespaceIsolation":true,"primaryMode":"plexus","delegates":[{"type":"ptp"}]}"#,
        )
        .unwrap();
        assert_eq!(c.cluster_network.as_deref(), Some("cbr0"));
        assert!(c.namespace_isolation);
        assert_eq!(c.primary_mode, PrimaryMode::Plexus);
        assert_eq!(c.multus_namespace, "kube-system");
        assert_eq!(c.delegates, [serde_json::json!({"type": "ptp"})]);
        assert!(serde_json::from_str::<Config>(r#"{"clusterNetwrk":"x"}"#).is_err());
    }
}

//! Test NetworkAttachmentDefinitions for plexusd's NAD directory, and the uplinks they
//! need. Every uplink and bridge lives in the test namespace that containerd and plexusd
//! run in, so no packet leaves namespaces the test made.
//!
//! A manifest is written as JSON, which is valid YAML, in the CRD's schema.

use std::path::Path;

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::netns::{TestNetns, next_id};

/// One NetworkAttachmentDefinition.
#[derive(Debug, Clone)]
pub struct Nad {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The CNI config (`spec.config`), a conf or a conflist.
    pub config: Value,
}

impl Nad {
    /// `namespace/name` with the CNI config `fields` plus its version and name.
    fn with(namespace: &str, name: &str, mut fields: Value) -> Self {
        fields["cniVersion"] = json!("1.0.0");
        fields["name"] = json!(name);
        Self {
            namespace: namespace.into(),
            name: name.into(),
            config: fields,
        }
    }

    /// The manifest, in the NAD CRD's schema (JSON, which YAML readers accept).
    pub fn manifest(&self) -> String {
        json!({
            "apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition",
            "metadata": { "name": self.name, "namespace": self.namespace },
            "spec": { "config": self.config.to_string() },
        })
        .to_string()
    }

    /// Writes the manifest as `<dir>/<namespace>-<name>.yaml`.
    pub fn write_to(&self, dir: &Path) -> Result<()> {
        let path = dir.join(format!("{}-{}.yaml", self.namespace, self.name));
        std::fs::write(&path, self.manifest()).map_err(Error::io("write", &path))
    }

    /// A macvlan (bridge mode) on `master` with host-local IPAM on `subnet`.
    pub fn macvlan(namespace: &str, name: &str, master: &str, subnet: &str, ipam: &Path) -> Self {
        Self::with(
            namespace,
            name,
            json!({
                "type": "macvlan",
                "master": master,
                "mode": "bridge",
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": subnet }]],
                    "dataDir": ipam,
                },
            }),
        )
    }

    /// A conflist: a macvlan (bridge mode) on `master` with host-local IPAM on `subnet`,
    /// then the plugin `next` (a chain plexus runs through the plugin binaries).
    pub fn macvlan_then(
        namespace: &str,
        name: &str,
        master: &str,
        subnet: &str,
        ipam: &Path,
        next: serde_json::Value,
    ) -> Self {
        Self::with(
            namespace,
            name,
            json!({
                "plugins": [
                    {"type": "macvlan", "master": master, "mode": "bridge",
                     "ipam": {"type": "host-local", "subnet": subnet, "dataDir": ipam}},
                    next
                ]
            }),
        )
    }

    /// A macvlan (bridge mode) on `master` whose addresses and MAC come from the pod's
    /// selection (`ips`, `mac`): static IPAM with the `ips` capability and a tuning
    /// plugin with the `mac` capability, as in Multus's documentation.
    pub fn macvlan_static(namespace: &str, name: &str, master: &str) -> Self {
        Self::with(
            namespace,
            name,
            json!({
                "plugins": [
                    {
                        "type": "macvlan",
                        "master": master,
                        "mode": "bridge",
                        "capabilities": { "ips": true },
                        "ipam": { "type": "static" },
                    },
                    { "type": "tuning", "capabilities": { "mac": true } },
                ],
            }),
        )
    }

    /// A Linux bridge `bridge` (created on demand in plexusd's namespace, no gateway)
    /// with host-local IPAM on `subnet`.
    pub fn bridge(namespace: &str, name: &str, bridge: &str, subnet: &str, ipam: &Path) -> Self {
        Self::with(
            namespace,
            name,
            json!({
                "type": "bridge",
                "bridge": bridge,
                "isGateway": false,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": subnet }]],
                    "dataDir": ipam,
                },
            }),
        )
    }

    /// A network whose delegate always fails: its plugin binary does not exist.
    pub fn failing(namespace: &str, name: &str) -> Self {
        Self::with(
            namespace,
            name,
            json!({
                "type": "plexus-e2e-no-such-plugin",
            }),
        )
    }
}

/// Creates a veth pair in `netns`, both ends up, and returns the name of the end that
/// serves as a macvlan master. Deleted with the namespace.
pub fn create_uplink(netns: &TestNetns) -> Result<String> {
    let id = next_id();
    let pid = std::process::id() % 100_000;
    let master = format!("pxu{pid}u{id}");
    let peer = format!("pxu{pid}p{id}");
    netns.exec(
        "ip",
        [
            "link", "add", &master, "type", "veth", "peer", "name", &peer,
        ],
    )?;
    netns.exec("ip", ["link", "set", &master, "up"])?;
    netns.exec("ip", ["link", "set", &peer, "up"])?;
    Ok(master)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_carries_the_config_as_a_string() {
        let nad = Nad::macvlan("default", "iot", "pxu1u0", "10.242.0.0/24", Path::new("/x"));
        let m: Value = serde_json::from_str(&nad.manifest()).unwrap();
        assert_eq!(m["kind"], "NetworkAttachmentDefinition");
        assert_eq!(m["metadata"]["namespace"], "default");
        let config: Value = serde_json::from_str(m["spec"]["config"].as_str().unwrap()).unwrap();
        assert_eq!(config["master"], "pxu1u0");
        assert_eq!(config["ipam"]["dataDir"], "/x");
    }

    #[test]
    fn static_macvlan_declares_ips_and_mac_capabilities() {
        let c = Nad::macvlan_static("default", "iot", "m").config;
        assert_eq!(c["plugins"][0]["capabilities"]["ips"], true);
        assert_eq!(c["plugins"][1]["capabilities"]["mac"], true);
    }
}

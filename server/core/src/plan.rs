//! The attachment plan: what resolution decided a pod gets, in execution order.
//!
//! Produced by `resolve`, consumed by the engine (which executes it) and by `explain`
//! (which renders it). Plain data, serialisable, so it can also be recorded in state.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::pod::PodIdentity;

/// The ordered list of attachments a pod gets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The pod the plan is for.
    pub pod: PodIdentity,
    /// Attachments in execution order (teardown runs in reverse). Index 0 is the
    /// cluster network (or the pod's default-network override) when one is configured.
    pub attachments: Vec<PlannedAttachment>,
}

/// Where an attachment came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// The configured cluster network (`clusterNetwork`, the pod's eth0).
    Cluster,
    /// The pod's `v1.multus-cni.io/default-network` override of the cluster network.
    DefaultOverride,
    /// One of the configured `defaultNetworks` (or, without a cluster network, an
    /// entry after the first of the configured `delegates`).
    Default,
    /// The pod's `k8s.v1.cni.cncf.io/networks` annotation.
    Annotation,
    /// Hot-plugged into a running pod through the node API.
    Hotplug,
}

impl Origin {
    /// The name used in explain output and the node API.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Cluster => "cluster",
            Origin::DefaultOverride => "default-override",
            Origin::Default => "default",
            Origin::Annotation => "annotation",
            Origin::Hotplug => "hotplug",
        }
    }
}

/// Where a network's CNI config came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum NetworkSource {
    /// A NetworkAttachmentDefinition `namespace/name` with a `spec.config`.
    Nad { namespace: String, name: String },
    /// A spec-less NAD whose config was found in the on-disk CNI config dir.
    NadFile {
        namespace: String,
        name: String,
        path: String,
    },
    /// A CNI config file named directly (e.g. clusterNetwork given as a path or name).
    File { path: String },
    /// An inline CNI config of the resolver config's `delegates` list (F27), by its
    /// 0-based position.
    Delegate { position: usize },
    /// The runtime's own CNI set this interface up (NRI path) and plexus was not told
    /// which config it used; the attachment's config is empty and never executed.
    Runtime,
}

/// The CNI config a delegate runs with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DelegateConfig {
    /// Single plugin (`.conf`) or chain (`.conflist`).
    pub form: ConfigForm,
    /// The network `name` inside the config (injected from the NAD name when missing).
    pub name: String,
    /// The config's `cniVersion` (`""` when absent).
    pub cni_version: String,
    /// The plugin `type`s in chain order (one for a conf). Each is a validated bare name.
    pub plugin_types: Vec<String>,
    /// The exact config bytes handed to the delegate (after name and cni-args injection).
    /// Serialised as the config text it is (a JSON string), not as an array of numbers
    /// (which made a 1 MiB config about 4 MiB in every record write); the array form of
    /// older records still reads.
    #[serde(with = "config_bytes")]
    pub bytes: Vec<u8>,
}

/// `DelegateConfig::bytes` as a string when it is UTF-8 (every JSON config is), else as
/// the byte array; both forms read.
mod config_bytes {
    use serde::de::{self, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(bytes) {
            Ok(text) => s.serialize_str(text),
            Err(_) => s.collect_seq(bytes),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Vec<u8>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("the config text or its bytes")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
                Ok(v.as_bytes().to_vec())
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Vec<u8>, E> {
                Ok(v.into_bytes())
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_any(Bytes)
    }
}

/// Single plugin or chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConfigForm {
    /// One plugin object with a top-level `type`.
    Conf,
    /// A `plugins` list.
    Conflist,
}

/// Per-attachment runtime requests (capability args), as Multus passes them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeConfig {
    /// Requested addresses (`ips`), CIDR or plain, as written in the annotation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    /// Requested MAC (`mac`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Port mappings (`portMappings`).
    #[serde(
        default,
        rename = "portMappings",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub port_mappings: Vec<PortMapping>,
    /// Bandwidth limits (`bandwidth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Bandwidth>,
    /// InfiniBand GUID (`infinibandGUID`).
    #[serde(
        default,
        rename = "infinibandGUID",
        skip_serializing_if = "Option::is_none"
    )]
    pub infiniband_guid: Option<String>,
    /// Device id (`deviceID`), from the selection element or a device-plugin lookup.
    #[serde(default, rename = "deviceID", skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
}

impl RuntimeConfig {
    /// True when nothing is requested.
    pub fn is_empty(&self) -> bool {
        *self == RuntimeConfig::default()
    }
}

/// One port mapping request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// Host port.
    #[serde(rename = "hostPort")]
    pub host_port: i32,
    /// Container port.
    #[serde(rename = "containerPort")]
    pub container_port: i32,
    /// `tcp`, `udp` or `sctp`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// Host IP to bind.
    #[serde(default, rename = "hostIP", skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

/// Bandwidth limit request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bandwidth {
    /// Ingress rate (bits per second).
    #[serde(rename = "ingressRate", default)]
    pub ingress_rate: u64,
    /// Ingress burst (bits).
    #[serde(rename = "ingressBurst", default)]
    pub ingress_burst: u64,
    /// Egress rate (bits per second).
    #[serde(rename = "egressRate", default)]
    pub egress_rate: u64,
    /// Egress burst (bits).
    #[serde(rename = "egressBurst", default)]
    pub egress_burst: u64,
}

/// What happens to default routes on an attachment's interface (Multus F15, with Q10 fixed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultRoutePlan {
    /// Gateways this attachment must install as default routes (at most one per family).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub install: Vec<IpAddr>,
    /// Remove IPv4 default routes the delegate installed on this interface.
    #[serde(default)]
    pub remove_v4: bool,
    /// Remove IPv6 default routes the delegate installed on this interface.
    #[serde(default)]
    pub remove_v6: bool,
}

impl DefaultRoutePlan {
    /// True when the plan changes nothing.
    pub fn is_noop(&self) -> bool {
        self.install.is_empty() && !self.remove_v4 && !self.remove_v6
    }
}

/// One network attachment of a pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedAttachment {
    /// Position in the full delegate list (0 = cluster network); `net<index>` naming.
    pub index: usize,
    /// Display name: `namespace/name` for NAD-derived networks, else the config `name`.
    pub network: String,
    /// Interface name inside the pod.
    pub interface: crate::id::InterfaceName,
    /// Why the pod gets this attachment.
    pub origin: Origin,
    /// True for the cluster network / default-network override (gets eth0, is `default` in
    /// network-status, receives the runtime's own runtimeConfig unchanged).
    pub primary: bool,
    /// Where the config came from.
    pub source: NetworkSource,
    /// The delegate's CNI config.
    pub config: DelegateConfig,
    /// Per-attachment capability args.
    #[serde(default, skip_serializing_if = "RuntimeConfig::is_empty")]
    pub runtime_config: RuntimeConfig,
    /// The `cni-args` object from the selection element (already injected into
    /// `config.bytes`; kept for display and events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni_args: Option<serde_json::Map<String, serde_json::Value>>,
    /// Legacy `CNI_ARGS` additions (`MAC=…`, `IP=…`), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_cni_args: Vec<(String, String)>,
    /// The `default-route` request as written (None = not requested).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_route: Option<Vec<IpAddr>>,
    /// What to do with default routes after the delegate ran.
    #[serde(default, skip_serializing_if = "DefaultRoutePlan::is_noop")]
    pub route_plan: DefaultRoutePlan,
    /// NAD annotation `k8s.v1.cni.cncf.io/resourceName`, for device lookup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// NAD annotation forcing the exec path (`plexus.io/delegation: exec`).
    #[serde(default)]
    pub force_exec: bool,
    /// True when the container runtime's own CNI already created this interface (NRI
    /// path, primary only): the engine must not execute the delegate (ADD nor DEL), but
    /// still applies `route_plan` to it and reads its state for network-status.
    #[serde(default)]
    pub runtime_managed: bool,
    /// With `runtime_managed`: the runtime made this interface before plexus took its CNI
    /// slot (a pod adopted on the CNI shim path), so the runtime will never run its DEL —
    /// plexus does, at teardown (never at rollback or detach). False everywhere else.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub release_on_teardown: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(bytes: Vec<u8>) -> DelegateConfig {
        DelegateConfig {
            form: ConfigForm::Conf,
            name: "n".into(),
            cni_version: "1.0.0".into(),
            plugin_types: vec!["macvlan".into()],
            bytes,
        }
    }

    #[test]
    fn config_bytes_are_stored_as_their_text() {
        let text = format!(r#"{{"type":"macvlan","pad":"{}"}}"#, "x".repeat(100 * 1024));
        let json = serde_json::to_string(&config(text.clone().into_bytes())).unwrap();
        // About the config's own size (escaping aside), not four times it.
        assert!(
            json.len() < text.len() + 1024,
            "{} for {}",
            json.len(),
            text.len()
        );
        let back: DelegateConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back.bytes, text.as_bytes());
    }

    #[test]
    fn the_array_form_of_older_records_still_reads() {
        let old = r#"{"form":"conf","name":"n","cni_version":"1.0.0","plugin_types":["macvlan"],"bytes":[123,125]}"#;
        let c: DelegateConfig = serde_json::from_str(old).unwrap();
        assert_eq!(c.bytes, b"{}");
        // Non-UTF-8 bytes keep the array form.
        let json = serde_json::to_string(&config(vec![0xff, 0x00])).unwrap();
        assert!(json.contains(r#""bytes":[255,0]"#), "{json}");
        let back: DelegateConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back.bytes, [0xff, 0x00]);
    }
}

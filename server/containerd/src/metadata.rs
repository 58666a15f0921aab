//! The CRI plugin's record of a pod sandbox, as containerd keeps it in the sandbox
//! container's extension `io.cri-containerd.sandbox.metadata`: a JSON document
//! `{"Version": "v1", "Metadata": {...}}` whose `Config` is the kubelet's
//! `PodSandboxConfig` (pod name, namespace, uid, annotations) and whose `NetNSPath` is the
//! network namespace the runtime gave the CNI plugins. Only the fields plexus needs are
//! read; unknown ones are ignored, so a newer containerd that adds fields still parses.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The extension key under which the CRI plugin stores a sandbox's metadata.
pub const EXTENSION: &str = "io.cri-containerd.sandbox.metadata";

/// The only metadata version known (containerd 1.5 to 2.x).
const VERSION: &str = "v1";

/// Largest metadata document read, in bytes. Kubernetes caps a pod's annotations at
/// 256 KiB in total; the rest of the config is small.
pub const MAX_LEN: usize = 1 << 20;

/// What plexus reads of a sandbox's CRI metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CriSandbox {
    /// Pod name.
    pub name: String,
    /// Pod namespace.
    pub namespace: String,
    /// Pod uid.
    pub uid: String,
    /// The pod's annotations.
    pub annotations: BTreeMap<String, String>,
    /// The netns path given to CNI; empty for a host-network pod or before it was made.
    pub netns: String,
    /// The pod shares the node's network namespace (`hostNetwork: true`).
    pub host_network: bool,
    /// The pod's IP from the runtime's own CNI network; empty until its ADD has finished
    /// (the CRI plugin writes the netns path into the metadata before the ADD, the IP after).
    pub ip: String,
}

#[derive(Deserialize)]
struct Versioned {
    #[serde(rename = "Version")]
    version: String,
    #[serde(rename = "Metadata")]
    metadata: Metadata,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(rename = "Config")]
    config: Option<PodSandboxConfig>,
    #[serde(rename = "NetNSPath", default)]
    netns_path: String,
    #[serde(rename = "IP", default)]
    ip: String,
}

#[derive(Deserialize)]
struct PodSandboxConfig {
    metadata: Option<PodMetadata>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    linux: Option<LinuxConfig>,
}

#[derive(Deserialize)]
struct PodMetadata {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    uid: String,
}

#[derive(Deserialize)]
struct LinuxConfig {
    security_context: Option<SecurityContext>,
}

#[derive(Deserialize)]
struct SecurityContext {
    namespace_options: Option<NamespaceOptions>,
}

#[derive(Deserialize)]
struct NamespaceOptions {
    /// CRI `NamespaceMode`: 0 POD, 1 CONTAINER, 2 NODE, 3 TARGET.
    #[serde(default)]
    network: i32,
}

/// CRI `NamespaceMode::NODE`.
const NODE: i32 = 2;

/// Parses a sandbox's metadata document. The error says what is wrong with it.
pub fn parse(bytes: &[u8]) -> Result<CriSandbox, String> {
    if bytes.len() > MAX_LEN {
        return Err(format!(
            "{} bytes of CRI metadata, more than the {MAX_LEN} read",
            bytes.len()
        ));
    }
    let doc: Versioned = serde_json::from_slice(bytes).map_err(|e| format!("CRI metadata: {e}"))?;
    if doc.version != VERSION {
        return Err(format!(
            "CRI metadata version {:?}, only {VERSION:?} is known",
            doc.version
        ));
    }
    let config = doc
        .metadata
        .config
        .ok_or("CRI metadata without the pod's sandbox config")?;
    let pod = config
        .metadata
        .ok_or("CRI metadata without the pod's name, namespace and uid")?;
    let host_network = config
        .linux
        .and_then(|l| l.security_context)
        .and_then(|s| s.namespace_options)
        .is_some_and(|n| n.network == NODE);
    Ok(CriSandbox {
        name: pod.name,
        namespace: pod.namespace,
        uid: pod.uid,
        annotations: config.annotations,
        netns: doc.metadata.netns_path,
        host_network,
        ip: doc.metadata.ip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(netns: &str, network_mode: i32) -> String {
        serde_json::json!({
            "Version": "v1",
            "Metadata": {
                "ID": "abc",
                "Name": "web_default_u1_0",
                "Config": {
                    "metadata": {"name": "web", "uid": "u1", "namespace": "default", "attempt": 0},
                    "annotations": {"k8s.v1.cni.cncf.io/networks": "net1"},
                    "linux": {"security_context": {"namespace_options": {"network": network_mode}}},
                    "a_future_field": [1, 2, 3],
                },
                "NetNSPath": netns,
                "IP": "10.0.0.2",
            }
        })
        .to_string()
    }

    #[test]
    fn a_pod_with_its_own_netns_gives_identity_annotations_and_path() {
        let got = parse(doc("/var/run/netns/cni-1", 0).as_bytes()).unwrap();
        assert_eq!(
            (got.name.as_str(), got.namespace.as_str(), got.uid.as_str()),
            ("web", "default", "u1")
        );
        assert_eq!(got.annotations["k8s.v1.cni.cncf.io/networks"], "net1");
        assert_eq!(got.netns, "/var/run/netns/cni-1");
        assert!(!got.host_network);
    }

    #[test]
    fn a_host_network_pod_is_marked() {
        let got = parse(doc("", 2).as_bytes()).unwrap();
        assert!(got.host_network);
        assert!(got.netns.is_empty());
    }

    #[test]
    fn what_is_refused_is_named() {
        let other = doc("/x", 0).replace("\"v1\"", "\"v2\"");
        assert!(
            parse(other.as_bytes())
                .unwrap_err()
                .contains("version \"v2\"")
        );
        let no_config = r#"{"Version":"v1","Metadata":{"NetNSPath":"/x"}}"#;
        assert!(
            parse(no_config.as_bytes())
                .unwrap_err()
                .contains("sandbox config")
        );
        assert!(parse(b"not json").unwrap_err().starts_with("CRI metadata:"));
        let big = vec![b' '; MAX_LEN + 1];
        assert!(parse(&big).unwrap_err().contains("more than"));
    }
}

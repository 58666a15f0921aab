//! Pod manifests (YAML or JSON) as given to `explain`: only identity and annotations matter.

use std::collections::BTreeMap;

use plexus_core::pod::PodIdentity;
use serde::Deserialize;

use crate::error::{Error, Result};

/// Largest manifest accepted (a pod manifest is a few KiB).
pub const MAX_MANIFEST: usize = 1 << 20;

#[derive(Deserialize)]
struct Manifest {
    kind: Option<String>,
    #[serde(default)]
    metadata: Metadata,
}

#[derive(Default, Deserialize)]
struct Metadata {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Reads a pod's identity and annotations from its manifest. A missing namespace means
/// `default`, as `kubectl apply` would.
pub fn parse_pod(text: &str) -> Result<(PodIdentity, BTreeMap<String, String>)> {
    let invalid = |message: String| Error::InvalidRequest { message };
    if text.len() > MAX_MANIFEST {
        return Err(invalid(format!(
            "pod manifest is {} bytes, more than the {MAX_MANIFEST} accepted",
            text.len()
        )));
    }
    let manifest: Manifest = serde_yaml::from_str(text)
        .map_err(|e| invalid(format!("pod manifest is not a YAML or JSON object: {e}")))?;
    if let Some(kind) = manifest.kind.as_deref().filter(|k| *k != "Pod") {
        return Err(invalid(format!(
            "pod manifest has kind {kind:?}; only kind: Pod is accepted"
        )));
    }
    let name = manifest
        .metadata
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid("pod manifest has no metadata.name".to_owned()))?;
    let namespace = manifest
        .metadata
        .namespace
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_owned());
    let pod = PodIdentity::new(namespace, name, manifest.metadata.uid.unwrap_or_default());
    Ok((pod, manifest.metadata.annotations))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_identity_and_annotations() {
        let (pod, ann) = parse_pod(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: ha\n  namespace: iot\n  annotations:\n    k8s.v1.cni.cncf.io/networks: iot-net\n",
        )
        .unwrap();
        assert_eq!(pod, PodIdentity::new("iot", "ha", ""));
        assert_eq!(ann["k8s.v1.cni.cncf.io/networks"], "iot-net");
    }

    #[test]
    fn json_without_namespace_defaults() {
        let (pod, ann) = parse_pod(r#"{"kind":"Pod","metadata":{"name":"p"}}"#).unwrap();
        assert_eq!(pod.namespace, "default");
        assert!(ann.is_empty());
    }

    #[test]
    fn rejects_other_kinds_missing_names_and_garbage() {
        for (text, needle) in [
            ("kind: Deployment\nmetadata: {name: x}", "kind"),
            ("kind: Pod\nmetadata: {}", "metadata.name"),
            ("- a\n- b", "not a YAML or JSON object"),
        ] {
            let msg = parse_pod(text).unwrap_err().to_string();
            assert!(msg.contains(needle), "{text:?}: {msg}");
        }
    }
}

//! Explain: a [`Plan`] (or the error resolution produced) rendered as stable JSON for
//! tooling and as text for humans, plus reading the pod manifest `plexusctl explain`
//! is given.
//!
//! The JSON shape is a contract documented in `docs/explain.md`
//! (`apiVersion: plexus.io/explain/v1`): every key is always present (null or empty
//! when unset) so consumers need no guessing. Pure: no lookups, no I/O.

#[cfg(test)]
mod tests;
mod text;

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::error::{Error, Result, shorten};
use crate::plan::{ConfigForm, Plan, PlannedAttachment};
use crate::pod::PodIdentity;

pub use text::{error_text, plan_text};

/// The `apiVersion` of explain JSON.
pub const API_VERSION: &str = "plexus.io/explain/v1";
/// Largest pod manifest accepted, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 1024 * 1024;

/// Explain output in both renderings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// Stable JSON (pretty-printed).
    pub json: String,
    /// Text for humans.
    pub text: String,
}

/// Renders the outcome of resolving `pod`.
pub fn explain(pod: &PodIdentity, outcome: &Result<Plan>) -> Explanation {
    let (value, text) = match outcome {
        Ok(plan) => (plan_json(plan), plan_text(plan)),
        Err(e) => (error_json(pod, e), error_text(pod, e)),
    };
    Explanation {
        json: serde_json::to_string_pretty(&value).expect("JSON values always serialise"),
        text,
    }
}

fn pod_json(pod: &PodIdentity) -> Value {
    json!({"namespace": pod.namespace, "name": pod.name, "uid": pod.uid})
}

/// The explain JSON of a plan.
pub fn plan_json(plan: &Plan) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "pod": pod_json(&plan.pod),
        "attachments": plan.attachments.iter().map(attachment_json).collect::<Vec<_>>(),
    })
}

/// The explain JSON of a resolution error.
pub fn error_json(pod: &PodIdentity, error: &Error) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "pod": pod_json(pod),
        "error": {"kind": error.kind(), "message": error.to_string()},
    })
}

/// One attachment's explain JSON.
pub fn attachment_json(a: &PlannedAttachment) -> Value {
    let config = if a.config.bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&a.config.bytes).unwrap_or_else(|_| {
            Value::String(String::from_utf8_lossy(&a.config.bytes).into_owned())
        })
    };
    let runtime_config =
        serde_json::to_value(&a.runtime_config).unwrap_or_else(|_| Value::Object(Map::new()));
    json!({
        "index": a.index,
        "network": a.network,
        "interface": a.interface,
        "origin": a.origin.as_str(),
        "primary": a.primary,
        "runtimeManaged": a.runtime_managed,
        "source": serde_json::to_value(&a.source).unwrap_or(Value::Null),
        "configName": a.config.name,
        "cniVersion": a.config.cni_version,
        "form": match a.config.form { ConfigForm::Conf => "conf", ConfigForm::Conflist => "conflist" },
        "plugins": a.config.plugin_types,
        "delegation": if a.force_exec { "exec" } else { "auto" },
        "resourceName": a.resource_name,
        "runtimeConfig": runtime_config,
        "cniArgs": a.cni_args,
        "legacyCniArgs": a.extra_cni_args.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        "defaultRoute": a.default_route,
        "routePlan": {
            "install": a.route_plan.install,
            "removeV4": a.route_plan.remove_v4,
            "removeV6": a.route_plan.remove_v6,
        },
        "config": config,
    })
}

/// Reads a Pod manifest (YAML or JSON): identity and annotations. The namespace
/// defaults to `default` like `kubectl apply`.
pub fn pod_from_manifest(text: &str) -> Result<(PodIdentity, BTreeMap<String, String>)> {
    let invalid = |reason: String| Error::InvalidPodManifest { reason };
    if text.len() > MAX_MANIFEST_BYTES {
        return Err(invalid(format!(
            "manifest is {} bytes, more than the {MAX_MANIFEST_BYTES} accepted",
            text.len()
        )));
    }
    crate::nesting::check(text, crate::nesting::MAX_DEPTH).map_err(|e| invalid(e.to_string()))?;
    let value: Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| invalid(format!("invalid JSON: {e}")))?
    } else {
        crate::yaml::documents(text)
            .next()
            .ok_or_else(|| invalid("the manifest is empty".to_string()))?
            .map_err(|e| invalid(format!("invalid YAML: {e}")))?
    };
    if value.is_null() {
        return Err(invalid("the manifest is empty".to_string()));
    }
    if !value.is_object() {
        return Err(invalid("expected a Pod object".to_string()));
    }
    match value.get("kind").and_then(Value::as_str) {
        None | Some("Pod") => {}
        Some(kind) => {
            return Err(invalid(format!(
                "kind {:?} is not accepted; expected a Pod",
                shorten(kind, 40)
            )));
        }
    }
    let meta = value.get("metadata");
    let field = |key: &str| meta.and_then(|m| m.get(key)).and_then(Value::as_str);
    let name = field("name")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid("metadata.name is missing".to_string()))?;
    let pod = PodIdentity::new(
        field("namespace").unwrap_or("default"),
        name,
        field("uid").unwrap_or(""),
    );
    let mut annotations = BTreeMap::new();
    match meta.and_then(|m| m.get("annotations")) {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (k, v) in map {
                let Value::String(v) = v else {
                    return Err(invalid(format!(
                        "metadata.annotations.{k} must be a string (quote it in YAML)"
                    )));
                };
                annotations.insert(k.clone(), v.clone());
            }
        }
        Some(_) => return Err(invalid("metadata.annotations must be a map".to_string())),
    }
    Ok((pod, annotations))
}

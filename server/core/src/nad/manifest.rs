//! NAD manifests as `kubectl apply` takes them: YAML (several documents separated by
//! `---`) or JSON (one or more concatenated values), each a NetworkAttachmentDefinition
//! of the CRD schema, or a `List` of them.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Nad;
use crate::error::shorten;

/// API version of the NAD CRD (F17).
pub const API_VERSION: &str = "k8s.cni.cncf.io/v1";
/// Kind of the NAD CRD (F17).
pub const KIND: &str = "NetworkAttachmentDefinition";

/// A manifest that could not be turned into a NAD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Broken {
    /// `(namespace, name)` when the metadata was readable, so lookups of that name
    /// can report this error instead of "not found".
    pub key: Option<(String, String)>,
    /// What is wrong and what is accepted.
    pub reason: String,
}

/// One NAD (or failure) with the 1-based document index it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub document: usize,
    pub result: Result<Nad, Broken>,
}

/// Splits a manifest file's text into NADs; `json` selects the JSON reader.
pub fn parse_documents(text: &str, json: bool) -> Vec<(usize, Result<Nad, String>)> {
    parse(text, json)
        .into_iter()
        .map(|p| (p.document, p.result.map_err(|b| b.reason)))
        .collect()
}

pub(crate) fn parse(text: &str, json: bool) -> Vec<Parsed> {
    let mut out = Vec::new();
    let mut push = |document: usize, value: std::result::Result<Value, String>| match value {
        Ok(Value::Null) => {}
        Ok(v) => out.extend(
            from_document(&v)
                .into_iter()
                .map(|result| Parsed { document, result }),
        ),
        Err(reason) => out.push(Parsed {
            document,
            result: Err(Broken { key: None, reason }),
        }),
    };
    // Bounded before any parser sees the text (libyaml is quadratic in nesting depth).
    if let Err(e) = crate::nesting::check(text, crate::nesting::MAX_DEPTH) {
        push(1, Err(e.to_string()));
        return out;
    }
    if json {
        let stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        for (i, value) in stream.enumerate() {
            let failed = value.is_err();
            push(i + 1, value.map_err(|e| format!("invalid JSON: {e}")));
            if failed {
                break;
            }
        }
    } else {
        for (i, doc) in crate::yaml::documents(text).enumerate() {
            let value = doc.map_err(|e| format!("invalid YAML: {e}"));
            let failed = value.is_err();
            push(i + 1, value);
            if failed {
                break;
            }
        }
    }
    out
}

/// One document: a NAD, or a `List` / `NetworkAttachmentDefinitionList` of NADs.
fn from_document(value: &Value) -> Vec<Result<Nad, Broken>> {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind == "List" || kind == "NetworkAttachmentDefinitionList" {
        return match value.get("items") {
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    from_value(item).map_err(|b| Broken {
                        reason: format!("item {}: {}", i + 1, b.reason),
                        ..b
                    })
                })
                .collect(),
            _ => vec![Err(Broken {
                key: None,
                reason: format!("{kind} without an \"items\" list"),
            })],
        };
    }
    vec![from_value(value)]
}

fn key_of(value: &Value) -> Option<(String, String)> {
    let meta = value.get("metadata")?;
    let name = meta.get("name")?.as_str()?.to_string();
    let namespace = meta
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    Some((namespace, name))
}

fn from_value(value: &Value) -> Result<Nad, Broken> {
    Nad::from_manifest(value).map_err(|reason| Broken {
        key: key_of(value),
        reason,
    })
}

impl Nad {
    /// Reads a NetworkAttachmentDefinition object (as JSON value, e.g. from a manifest
    /// or the API). `metadata.namespace` defaults to `default` like `kubectl apply`.
    pub fn from_manifest(value: &Value) -> Result<Nad, String> {
        let Value::Object(obj) = value else {
            return Err(format!(
                "expected a {KIND} object, got {}",
                shorten(&value.to_string(), 40)
            ));
        };
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        if kind != KIND || api_version != API_VERSION {
            return Err(format!(
                "apiVersion {api_version:?} kind {kind:?} is not accepted; expected apiVersion {API_VERSION} kind {KIND}"
            ));
        }
        let meta = match obj.get("metadata") {
            Some(Value::Object(m)) => m,
            _ => return Err("metadata is missing; metadata.name is required".to_string()),
        };
        let name = match meta.get("name") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err("metadata.name is missing or not a string".to_string()),
        };
        if name.len() > 253
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            || name.starts_with(['-', '.'])
            || name.ends_with(['-', '.'])
        {
            return Err(format!(
                "metadata.name {:?} is not a Kubernetes object name (lower case alphanumerics, '-' and '.', at most 253 bytes)",
                shorten(&name, 80)
            ));
        }
        let namespace = match meta.get("namespace") {
            None | Some(Value::Null) => "default".to_string(),
            Some(Value::String(s))
                if !s.is_empty()
                    && s.len() <= 63
                    && s.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !s.starts_with('-')
                    && !s.ends_with('-') =>
            {
                s.clone()
            }
            Some(other) => {
                return Err(format!(
                    "metadata.namespace {} is not a Kubernetes namespace name",
                    shorten(&other.to_string(), 80)
                ));
            }
        };
        let mut annotations = BTreeMap::new();
        match meta.get("annotations") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    let Value::String(v) = v else {
                        return Err(format!(
                            "metadata.annotations.{k} must be a string (quote it in YAML)"
                        ));
                    };
                    annotations.insert(k.clone(), v.clone());
                }
            }
            Some(_) => return Err("metadata.annotations must be a map".to_string()),
        }
        let config = match obj.get("spec") {
            None | Some(Value::Null) => String::new(),
            Some(Value::Object(spec)) => match spec.get("config") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(_) => {
                    return Err(
                        "spec.config must be a string holding the CNI config JSON (in YAML use `config: |` or quote it)"
                            .to_string(),
                    );
                }
            },
            Some(_) => return Err("spec must be a map with a config string".to_string()),
        };
        Ok(Nad {
            namespace,
            name,
            annotations,
            config,
        })
    }
}

//! Patch application for the content types the API server accepts on PATCH:
//! `application/merge-patch+json` (RFC 7386), `application/strategic-merge-patch+json`
//! (built-in types only, not custom resources) and `application/json-patch+json` (RFC 6902).
//! Pure: takes the current object and the patch, returns the patched object.
//!
//! Strategic merge covers what pod status writers use: maps merge, `null` deletes, lists with a
//! patch merge key (`conditions` by `type`, `containerStatuses` by `name`, `podIPs` by `ip`, ...)
//! merge by that key, other lists replace, `$patch: replace|delete` directives in maps, and
//! `$setElementOrder`/`$retainKeys` directives are accepted and ignored (order is not kept).
//! Server-side apply (`application/apply-patch+yaml`) is not implemented: 415.

use serde_json::{Map, Value};

/// The patch flavours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// RFC 7386 JSON merge patch.
    Merge,
    /// Kubernetes strategic merge patch.
    Strategic,
    /// RFC 6902 JSON patch.
    Json,
}

impl PatchType {
    /// Maps a Content-Type (parameters ignored) to a patch type.
    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/json-patch+json" => Some(PatchType::Json),
            _ => None,
        }
    }
}

/// Applies `patch` of `kind` to `target`; the error text is what the server says in a 400/422.
pub fn apply(kind: PatchType, target: &Value, patch: &Value) -> Result<Value, String> {
    match kind {
        PatchType::Merge => {
            if !patch.is_object() {
                return Err("a merge patch must be a JSON object".to_owned());
            }
            let mut out = target.clone();
            merge(&mut out, patch);
            Ok(out)
        }
        PatchType::Strategic => {
            let Value::Object(p) = patch else {
                return Err("a strategic merge patch must be a JSON object".to_owned());
            };
            let mut out = target.clone();
            strategic(&mut out, p, "");
            Ok(out)
        }
        PatchType::Json => json_patch(target, patch),
    }
}

/// RFC 7386: objects merge recursively, `null` removes, anything else replaces.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("object");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// The patch merge key of a list field, by field name (the built-in types' `patchMergeKey`).
fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "containerStatuses"
        | "initContainerStatuses"
        | "ephemeralContainerStatuses"
        | "resourceClaimStatuses"
        | "imagePullSecrets" => "name",
        "conditions" => "type",
        "podIPs" | "hostIPs" => "ip",
        "ports" => "containerPort",
        "volumeMounts" => "mountPath",
        "ownerReferences" => "uid",
        _ => return None,
    })
}

fn strategic(target: &mut Value, patch: &Map<String, Value>, _path: &str) {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut p = patch.clone();
            p.remove("$patch");
            *target = Value::Object(p);
            return;
        }
        Some("delete") => {
            *target = Value::Null;
            return;
        }
        _ => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("object");
    for (k, v) in patch {
        if k.starts_with('$') {
            continue;
        }
        match v {
            Value::Null => {
                t.remove(k);
            }
            Value::Object(pm) => {
                let slot = t.entry(k.clone()).or_insert(Value::Null);
                strategic(slot, pm, k);
                if slot.is_null() {
                    t.remove(k);
                }
            }
            Value::Array(items) => match (merge_key(k), t.get_mut(k)) {
                (Some(key), Some(Value::Array(existing))) => merge_list(existing, items, key),
                _ => {
                    let cleaned = items
                        .iter()
                        .filter(|i| i.get("$patch").is_none())
                        .cloned()
                        .collect();
                    t.insert(k.clone(), Value::Array(cleaned));
                }
            },
            other => {
                t.insert(k.clone(), other.clone());
            }
        }
    }
}

fn merge_list(existing: &mut Vec<Value>, items: &[Value], key: &str) {
    for item in items {
        let Some(id) = item.get(key).cloned() else {
            continue;
        };
        let pos = existing.iter().position(|e| e.get(key) == Some(&id));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                existing.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => {
                if let Value::Object(m) = item {
                    strategic(&mut existing[i], m, key);
                }
            }
            (None, false) => existing.push(item.clone()),
        }
    }
}

/// RFC 6902 operations over JSON pointers.
fn json_patch(target: &Value, patch: &Value) -> Result<Value, String> {
    let Value::Array(ops) = patch else {
        return Err("a JSON patch must be a JSON array of operations".to_owned());
    };
    let mut doc = target.clone();
    for op in ops {
        let name = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("operation {name:?} has no path"))?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| format!("operation {name:?} on {path} has no value"))
        };
        match name {
            "add" => add(&mut doc, path, value()?)?,
            "replace" => {
                remove(&mut doc, path)?;
                add(&mut doc, path, value()?)?;
            }
            "remove" => {
                remove(&mut doc, path)?;
            }
            "test" => {
                if doc.pointer(path) != Some(&value()?) {
                    return Err(format!("testing value {path} failed"));
                }
            }
            "move" | "copy" => {
                let from = op
                    .get("from")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("operation {name:?} has no from"))?;
                let v = if name == "move" {
                    remove(&mut doc, from)?
                } else {
                    doc.pointer(from)
                        .cloned()
                        .ok_or_else(|| format!("{from} does not exist"))?
                };
                add(&mut doc, path, v)?;
            }
            other => {
                return Err(format!(
                    "unexpected operation {other:?}: accepted are add, remove, replace, move, copy, test"
                ));
            }
        }
    }
    Ok(doc)
}

fn split(path: &str) -> Result<(String, String), String> {
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or_else(|| format!("invalid JSON pointer {path:?}"))?;
    Ok((
        parent.to_owned(),
        last.replace("~1", "/").replace("~0", "~"),
    ))
}

fn add(doc: &mut Value, path: &str, v: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = v;
        return Ok(());
    }
    let (parent, last) = split(path)?;
    match doc.pointer_mut(&parent) {
        Some(Value::Object(m)) => {
            m.insert(last, v);
            Ok(())
        }
        Some(Value::Array(a)) => {
            let i = if last == "-" {
                a.len()
            } else {
                last.parse()
                    .map_err(|_| format!("invalid index in {path}"))?
            };
            if i > a.len() {
                return Err(format!("index out of range in {path}"));
            }
            a.insert(i, v);
            Ok(())
        }
        _ => Err(format!("doc is missing path: {path:?}")),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split(path)?;
    let missing = || format!("doc is missing path: {path:?}");
    match doc.pointer_mut(&parent) {
        Some(Value::Object(m)) => m.remove(&last).ok_or_else(missing),
        Some(Value::Array(a)) => {
            let i: usize = last.parse().map_err(|_| missing())?;
            if i < a.len() {
                Ok(a.remove(i))
            } else {
                Err(missing())
            }
        }
        _ => Err(missing()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386() {
        let t = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        let p = json!({"a": "z", "c": {"f": null}, "l": [3]});
        let out = apply(PatchType::Merge, &t, &p).unwrap();
        assert_eq!(out, json!({"a": "z", "c": {"d": "e"}, "l": [3]}));
        assert!(apply(PatchType::Merge, &t, &json!([1])).is_err());
    }

    #[test]
    fn strategic_merges_conditions_by_type() {
        let t = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "X", "status": "True"}]}});
        let p = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "X", "$patch": "delete"}]}});
        let out = apply(PatchType::Strategic, &t, &p).unwrap();
        assert_eq!(
            out,
            json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
        );
    }

    #[test]
    fn json_patch_ops() {
        let t = json!({"metadata": {"annotations": {"a": "1"}}, "l": [1]});
        let p = json!([
            {"op": "add", "path": "/metadata/annotations/b~1c", "value": "2"},
            {"op": "replace", "path": "/l/0", "value": 5},
            {"op": "test", "path": "/l/0", "value": 5},
            {"op": "remove", "path": "/metadata/annotations/a"}
        ]);
        let out = apply(PatchType::Json, &t, &p).unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"annotations": {"b/c": "2"}}, "l": [5]})
        );
        assert!(
            apply(
                PatchType::Json,
                &t,
                &json!([{"op": "remove", "path": "/nope"}])
            )
            .is_err()
        );
    }
}

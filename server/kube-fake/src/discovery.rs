//! Legacy discovery documents (`/api`, `/api/v1`, `/apis`, `/apis/G`, `/apis/G/V`) for the
//! served resources, so clients that discover before they list find the groups, and find the
//! NAD group missing when its CRD is "uninstalled" (as on a cluster without Multus's CRD).
//! Pure.

use serde_json::{Value, json};

use crate::resource::Resource;

fn resource_entries(r: Resource) -> Vec<Value> {
    let verbs = match r {
        Resource::Pod | Resource::NetworkAttachmentDefinition | Resource::Event => json!([
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch"
        ]),
    };
    let singular = match r {
        Resource::Pod => "pod",
        Resource::NetworkAttachmentDefinition => "network-attachment-definition",
        Resource::Event => "event",
    };
    let mut out = vec![json!({
        "name": r.plural(), "singularName": singular, "namespaced": true,
        "kind": r.kind(), "verbs": verbs,
    })];
    if r == Resource::NetworkAttachmentDefinition {
        out[0]["shortNames"] = json!(["net-attach-def"]);
    }
    if r == Resource::Pod {
        out[0]["shortNames"] = json!(["po"]);
        out.push(json!({
            "name": "pods/status", "singularName": "", "namespaced": true,
            "kind": "Pod", "verbs": ["get", "patch", "update"],
        }));
    }
    out
}

fn groups(nad_installed: bool) -> Vec<Resource> {
    [Resource::NetworkAttachmentDefinition, Resource::Event]
        .into_iter()
        .filter(|r| nad_installed || *r != Resource::NetworkAttachmentDefinition)
        .collect()
}

fn group_doc(r: Resource) -> Value {
    let gv = json!({ "groupVersion": r.api_version(), "version": "v1" });
    json!({ "kind": "APIGroup", "apiVersion": "v1", "name": r.group(), "versions": [gv], "preferredVersion": gv })
}

/// The discovery document for `path`, if it is a discovery path of a served group.
pub fn document(path: &str, nad_installed: bool, server_address: &str) -> Option<Value> {
    let path = path.trim_end_matches('/');
    match path {
        "/api" => Some(json!({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": server_address }],
        })),
        "/api/v1" => Some(json!({
            "kind": "APIResourceList", "groupVersion": "v1",
            "resources": resource_entries(Resource::Pod),
        })),
        "/apis" => {
            let gs: Vec<Value> = groups(nad_installed).into_iter().map(group_doc).collect();
            Some(json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": gs }))
        }
        _ => {
            let rest = path.strip_prefix("/apis/")?;
            groups(nad_installed).into_iter().find_map(|r| {
                if rest == r.group() {
                    Some(group_doc(r))
                } else if rest == r.api_version() {
                    Some(json!({
                        "kind": "APIResourceList", "apiVersion": "v1",
                        "groupVersion": r.api_version(), "resources": resource_entries(r),
                    }))
                } else {
                    None
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nad_group_disappears_when_uninstalled() {
        let with = document("/apis", true, "x").unwrap();
        assert_eq!(with["groups"].as_array().unwrap().len(), 2);
        let without = document("/apis", false, "x").unwrap();
        assert_eq!(without["groups"][0]["name"], "events.k8s.io");
        assert!(document("/apis/k8s.cni.cncf.io/v1", false, "x").is_none());
        let list = document("/apis/k8s.cni.cncf.io/v1", true, "x").unwrap();
        assert_eq!(
            list["resources"][0]["name"],
            "network-attachment-definitions"
        );
        assert_eq!(
            document("/api/v1", true, "x").unwrap()["resources"][1]["name"],
            "pods/status"
        );
        assert!(document("/apis/apps/v1", true, "x").is_none());
    }
}

//! A stand-in for RBAC authorization: tests deny a verb on a resource for the service account
//! the fake's token belongs to, and requests it covers are answered as the real API server
//! answers an RBAC denial — `403 Forbidden` with a `Status` whose message is
//! `<resource> "<name>" is forbidden: User "<user>" cannot <verb> resource "<resource>" in API
//! group "<group>" in the namespace "<ns>"` (or `at the cluster scope`), the shape built by
//! `apierrors.NewForbidden` around the RBAC authorizer's reason (kube-apiserver
//! `endpoints/filters/authorization.go`, `rbac.go`). Subresources are their own RBAC
//! resources (`pods/status`); a watch is the verb `watch`, a list `list`. Pure.

use crate::resource::{Resource, Subresource, Target};

/// The user every accepted token authenticates as.
pub const USER: &str = "system:serviceaccount:kube-system:plexus";

/// A denied permission: `verb` on `resource` (with subresource, `pods/status`), in every
/// namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// `get`, `list`, `watch`, `create`, `update`, `patch` or `delete`.
    pub verb: String,
    /// The RBAC resource: the plural, with `/subresource` when there is one
    /// (`pods`, `pods/status`, `network-attachment-definitions`, `events`).
    pub resource: String,
}

impl Denial {
    /// Denies `verb` on `resource`.
    pub fn new(verb: &str, resource: &str) -> Self {
        Denial {
            verb: verb.to_owned(),
            resource: resource.to_owned(),
        }
    }
}

/// The RBAC verb of a request (`watch` when the query asks for one).
pub fn verb(method: &str, named: bool, watch: bool) -> &'static str {
    match (method, named) {
        ("GET", true) => "get",
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

/// The RBAC resource of a target (`pods/status` for the status subresource).
pub fn resource(target: &Target) -> String {
    match target.subresource {
        Some(Subresource::Status) => format!("{}/status", target.resource.plural()),
        None => target.resource.plural().to_owned(),
    }
}

/// The authorizer's reason: `User "u" cannot VERB resource "R" in API group "G" in the
/// namespace "NS"` (or `at the cluster scope`).
pub fn reason(verb: &str, resource: &str, group: &str, namespace: Option<&str>) -> String {
    let scope = match namespace {
        Some(ns) => format!("in the namespace {ns:?}"),
        None => "at the cluster scope".to_owned(),
    };
    format!("User {USER:?} cannot {verb} resource {resource:?} in API group {group:?} {scope}")
}

/// The Status message: `<qualified resource> ["<name>" ]is forbidden: <reason>`.
pub fn message(r: Resource, name: Option<&str>, reason: &str) -> String {
    match name {
        Some(n) => format!("{} {n:?} is forbidden: {reason}", r.qualified()),
        None => format!("{} is forbidden: {reason}", r.qualified()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_the_api_server_s_shape() {
        let why = reason("patch", "pods/status", "", Some("default"));
        assert_eq!(
            message(Resource::Pod, Some("web"), &why),
            r#"pods "web" is forbidden: User "system:serviceaccount:kube-system:plexus" cannot patch resource "pods/status" in API group "" in the namespace "default""#
        );
        let why = reason(
            "list",
            "network-attachment-definitions",
            "k8s.cni.cncf.io",
            None,
        );
        assert_eq!(
            message(Resource::NetworkAttachmentDefinition, None, &why),
            r#"network-attachment-definitions.k8s.cni.cncf.io is forbidden: User "system:serviceaccount:kube-system:plexus" cannot list resource "network-attachment-definitions" in API group "k8s.cni.cncf.io" at the cluster scope"#
        );
        assert_eq!(verb("GET", false, true), "watch");
        assert_eq!(verb("GET", true, false), "get");
    }
}

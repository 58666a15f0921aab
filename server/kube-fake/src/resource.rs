//! The resources the fake serves and how request paths map onto them. Pure: no I/O.
//!
//! Paths follow the API's layout: `/api/v1/...` for the core group and
//! `/apis/GROUP/VERSION/...` for named groups, `namespaces/NS/` for namespaced requests,
//! and a cluster-wide collection for lists and watches across namespaces.

/// A resource type the fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// Core v1 pods.
    Pod,
    /// `network-attachment-definitions.k8s.cni.cncf.io/v1` (a custom resource).
    NetworkAttachmentDefinition,
    /// `events.k8s.io/v1` events.
    Event,
}

impl Resource {
    /// All served resources.
    pub const ALL: [Resource; 3] = [
        Resource::Pod,
        Resource::NetworkAttachmentDefinition,
        Resource::Event,
    ];

    /// The API group ("" for core).
    pub fn group(self) -> &'static str {
        match self {
            Resource::Pod => "",
            Resource::NetworkAttachmentDefinition => "k8s.cni.cncf.io",
            Resource::Event => "events.k8s.io",
        }
    }

    /// The `apiVersion` of objects of this resource.
    pub fn api_version(self) -> &'static str {
        match self {
            Resource::Pod => "v1",
            Resource::NetworkAttachmentDefinition => "k8s.cni.cncf.io/v1",
            Resource::Event => "events.k8s.io/v1",
        }
    }

    /// The object kind.
    pub fn kind(self) -> &'static str {
        match self {
            Resource::Pod => "Pod",
            Resource::NetworkAttachmentDefinition => "NetworkAttachmentDefinition",
            Resource::Event => "Event",
        }
    }

    /// The plural name used in URLs.
    pub fn plural(self) -> &'static str {
        match self {
            Resource::Pod => "pods",
            Resource::NetworkAttachmentDefinition => "network-attachment-definitions",
            Resource::Event => "events",
        }
    }

    /// `plural.group` as the API server names a resource in messages (`pods`,
    /// `network-attachment-definitions.k8s.cni.cncf.io`).
    pub fn qualified(self) -> String {
        if self.group().is_empty() {
            self.plural().to_owned()
        } else {
            format!("{}.{}", self.plural(), self.group())
        }
    }

    /// `Kind.group` as validation messages name the kind (`Pod`, `Event.events.k8s.io`).
    pub fn qualified_kind(self) -> String {
        if self.group().is_empty() {
            self.kind().to_owned()
        } else {
            format!("{}.{}", self.kind(), self.group())
        }
    }

    /// Whether this is a custom resource (no strategic merge patch, CRD field selectors).
    pub fn is_custom(self) -> bool {
        matches!(self, Resource::NetworkAttachmentDefinition)
    }

    /// The path prefix of this resource's group version (`/api/v1`, `/apis/G/V`).
    pub fn prefix(self) -> String {
        if self.group().is_empty() {
            "/api/v1".to_owned()
        } else {
            format!("/apis/{}", self.api_version())
        }
    }
}

/// A subresource the fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// `pods/status`.
    Status,
}

/// A parsed request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The resource addressed.
    pub resource: Resource,
    /// The namespace, `None` for the cluster-wide collection.
    pub namespace: Option<String>,
    /// The object name, `None` for the collection.
    pub name: Option<String>,
    /// The subresource, if any.
    pub subresource: Option<Subresource>,
}

/// Why a path is not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// No such resource or path shape (404 NotFound with the server's generic message).
    NotFound,
}

/// Parses a request path into a [`Target`].
pub fn parse_path(path: &str) -> Result<Target, PathError> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let (group_version, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => (("", "v1"), rest),
        ["apis", g, v, rest @ ..] => ((*g, *v), rest),
        _ => return Err(PathError::NotFound),
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(valid_segment(ns)?), rest),
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] if namespace.is_some() => (*plural, Some(valid_segment(name)?), None),
        [plural, name, sub] if namespace.is_some() => {
            (*plural, Some(valid_segment(name)?), Some(*sub))
        }
        _ => return Err(PathError::NotFound),
    };
    let resource = Resource::ALL
        .into_iter()
        .find(|r| {
            r.plural() == plural
                && (r.group(), version_of(*r)) == (group_version.0, group_version.1)
        })
        .ok_or(PathError::NotFound)?;
    let subresource = match (resource, sub) {
        (_, None) => None,
        (Resource::Pod, Some("status")) => Some(Subresource::Status),
        _ => return Err(PathError::NotFound),
    };
    Ok(Target {
        resource,
        namespace,
        name,
        subresource,
    })
}

fn version_of(r: Resource) -> &'static str {
    r.api_version().rsplit('/').next().unwrap_or("v1")
}

/// A path segment used as a name: bounded and free of characters no object name has.
fn valid_segment(s: &str) -> Result<String, PathError> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(PathError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_targets() {
        let t = parse_path("/api/v1/namespaces/ns1/pods/p1/status").unwrap();
        assert_eq!(t.resource, Resource::Pod);
        assert_eq!(t.namespace.as_deref(), Some("ns1"));
        assert_eq!(t.name.as_deref(), Some("p1"));
        assert_eq!(t.subresource, Some(Subresource::Status));
        let t = parse_path("/apis/k8s.cni.cncf.io/v1/network-attachment-definitions").unwrap();
        assert_eq!(t.resource, Resource::NetworkAttachmentDefinition);
        assert_eq!(t.namespace, None);
        let t = parse_path("/apis/events.k8s.io/v1/namespaces/a/events").unwrap();
        assert_eq!((t.resource, t.name), (Resource::Event, None));
        assert_eq!(parse_path("/api/v1/pods/x"), Err(PathError::NotFound));
        assert_eq!(
            parse_path("/apis/k8s.cni.cncf.io/v2/network-attachment-definitions"),
            Err(PathError::NotFound)
        );
        assert_eq!(
            parse_path("/api/v1/namespaces/A_B/pods"),
            Err(PathError::NotFound)
        );
        assert_eq!(
            parse_path("/api/v1/namespaces/a/pods/p/log"),
            Err(PathError::NotFound)
        );
    }
}

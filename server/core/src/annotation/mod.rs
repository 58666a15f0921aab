//! Parsing of the Multus pod annotations into network [`Selection`]s.
//!
//! Owns the grammar of `k8s.v1.cni.cncf.io/networks` (comma list `[ns/]name[@if]` or a
//! JSON list of NetworkSelectionElements, F2–F5) and `v1.multus-cni.io/default-network`
//! (F6), and the hot-plug selection (one element, either form). Where Multus accepts
//! garbage (empty items, bad interface names, a bare JSON object, duplicate interface
//! names) this parser rejects it with the item's position and text, the problem and
//! what is accepted. Pure: it never looks NADs up (that is `resolve`).

mod element;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::net::IpAddr;

use crate::error::{Error, Result, shorten};
use crate::plan::{Bandwidth, PortMapping};

pub use element::{parse_hwaddr, validate_ifname};

/// Annotation key of the pod's secondary networks (F1).
pub const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
/// Annotation key of the pod's cluster-network override (F6).
pub const DEFAULT_NETWORK: &str = "v1.multus-cni.io/default-network";
/// Name used in messages for a hot-plug selection.
pub const SELECTION: &str = "selection";
/// Largest annotation value accepted, in bytes.
pub const MAX_ANNOTATION_BYTES: usize = 64 * 1024;
/// Most selections accepted in one annotation.
pub const MAX_SELECTIONS: usize = 128;
/// Longest item text quoted back in messages.
const QUOTE: usize = 80;

/// Read access to a pod's annotations, whatever map the caller holds.
pub trait Annotations {
    /// The value of annotation `key`, if present.
    fn annotation(&self, key: &str) -> Option<&str>;
}

impl<S: BuildHasher> Annotations for HashMap<String, String, S> {
    fn annotation(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl Annotations for BTreeMap<String, String> {
    fn annotation(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl Annotations for [(&str, &str)] {
    fn annotation(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

/// One network selection: a NetworkSelectionElement with the namespace defaulted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    /// NAD namespace (defaulted to the pod's, or the multus namespace for F6).
    pub namespace: String,
    /// NAD name.
    pub name: String,
    /// Requested interface name (`@if`, `interface`, or the `interfaceRequest` alias).
    pub interface: Option<crate::id::InterfaceName>,
    /// Requested addresses (`ips`), CIDR or plain, as written.
    pub ips: Vec<String>,
    /// Requested MAC (`mac`), as written.
    pub mac: Option<String>,
    /// Requested InfiniBand GUID (`infiniband-guid`), as written.
    pub infiniband_guid: Option<String>,
    /// Port mappings (`portMappings`).
    pub port_mappings: Vec<PortMapping>,
    /// Bandwidth limits (`bandwidth`).
    pub bandwidth: Option<Bandwidth>,
    /// `cni-args`, merged into `args.cni` of every plugin.
    pub cni_args: Option<serde_json::Map<String, serde_json::Value>>,
    /// `default-route` gateways; `Some(vec![])` asks to remove default routes.
    pub default_route: Option<Vec<IpAddr>>,
    /// `deviceID`.
    pub device_id: Option<String>,
    /// `ipam-claim-reference` (tolerated and carried, unused by resolution).
    pub ipam_claim_reference: Option<String>,
    /// 1-based position in the annotation.
    pub position: usize,
    /// The item's text, shortened, for messages.
    pub text: String,
}

impl Selection {
    /// `namespace/name` of the selected NAD (F21 display name).
    pub fn network(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Parses `k8s.v1.cni.cncf.io/networks`; namespaces default to `pod_namespace` (F4).
/// An empty value (or `[]`) selects nothing.
pub fn parse_networks(value: &str, pod_namespace: &str) -> Result<Vec<Selection>> {
    let selections = parse_list(NETWORKS, value, pod_namespace)?;
    reject_duplicate_interfaces(NETWORKS, &selections)?;
    Ok(selections)
}

/// Parses `v1.multus-cni.io/default-network`; the namespace defaults to the multus
/// namespace, and more than one element is an error (F6).
pub fn parse_default_network(value: &str, multus_namespace: &str) -> Result<Option<Selection>> {
    let mut selections = parse_list(DEFAULT_NETWORK, value, multus_namespace)?;
    if selections.len() > 1 {
        return Err(Error::MultipleDefaultNetworks {
            value: shorten(value, 200),
        });
    }
    Ok(selections.pop())
}

/// Parses one hot-plug selection: `[ns/]name[@if]`, a JSON NetworkSelectionElement
/// object, or a JSON list holding exactly one.
pub fn parse_selection(text: &str, default_namespace: &str) -> Result<Selection> {
    let trimmed = text.trim();
    let selections = if trimmed.starts_with('{') {
        check_size(SELECTION, text)?;
        let value: serde_json::Value =
            serde_json::from_str(trimmed).map_err(|e| invalid_json(SELECTION, &e))?;
        vec![element::from_json(SELECTION, 1, &value, default_namespace)?]
    } else {
        parse_list(SELECTION, text, default_namespace)?
    };
    let count = selections.len();
    let mut selections = selections.into_iter();
    match (selections.next(), count) {
        (Some(s), 1) => Ok(s),
        _ => Err(Error::InvalidAnnotation {
            annotation: SELECTION.to_string(),
            reason: format!(
                "expected exactly one network, got {count}; accepted: ns/name@ifname or one JSON object like {{\"name\":\"macvlan\",\"interface\":\"net5\"}}"
            ),
        }),
    }
}

fn check_size(annotation: &str, value: &str) -> Result<()> {
    if value.len() > MAX_ANNOTATION_BYTES {
        return Err(Error::InvalidAnnotation {
            annotation: annotation.to_string(),
            reason: format!(
                "value is {} bytes, more than the {MAX_ANNOTATION_BYTES} accepted",
                value.len()
            ),
        });
    }
    Ok(())
}

fn check_count(annotation: &str, count: usize) -> Result<()> {
    if count > MAX_SELECTIONS {
        return Err(Error::InvalidAnnotation {
            annotation: annotation.to_string(),
            reason: format!("{count} networks selected, at most {MAX_SELECTIONS} are accepted"),
        });
    }
    Ok(())
}

fn invalid_json(annotation: &str, e: &serde_json::Error) -> Error {
    Error::InvalidAnnotation {
        annotation: annotation.to_string(),
        reason: format!(
            "invalid JSON ({e}); accepted: a JSON list of objects like [{{\"name\":\"macvlan\",\"namespace\":\"iot\"}}] or a comma list like iot/macvlan@net1,bridge"
        ),
    }
}

/// F2: any of `[`, `{`, `"` selects the JSON form, else the comma list.
fn parse_list(annotation: &str, value: &str, default_namespace: &str) -> Result<Vec<Selection>> {
    check_size(annotation, value)?;
    if value.trim().is_empty() {
        return Ok(Vec::new());
    }
    if value.contains(['[', '{', '"']) {
        parse_json_list(annotation, value, default_namespace)
    } else {
        parse_comma_list(annotation, value, default_namespace)
    }
}

fn parse_json_list(
    annotation: &str,
    value: &str,
    default_namespace: &str,
) -> Result<Vec<Selection>> {
    let parsed: serde_json::Value =
        serde_json::from_str(value).map_err(|e| invalid_json(annotation, &e))?;
    let items = match parsed {
        serde_json::Value::Array(items) => items,
        serde_json::Value::Object(_) => {
            return Err(Error::InvalidAnnotation {
                annotation: annotation.to_string(),
                reason: "a bare JSON object is not accepted; wrap it in a list: [{\"name\":…}]"
                    .to_string(),
            });
        }
        other => {
            return Err(Error::InvalidAnnotation {
                annotation: annotation.to_string(),
                reason: format!(
                    "expected a JSON list of objects, got {}; accepted: [{{\"name\":\"macvlan\"}}]",
                    element::json_kind(&other)
                ),
            });
        }
    };
    check_count(annotation, items.len())?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| element::from_json(annotation, i + 1, item, default_namespace))
        .collect()
}

fn parse_comma_list(
    annotation: &str,
    value: &str,
    default_namespace: &str,
) -> Result<Vec<Selection>> {
    let items: Vec<&str> = value.split(',').collect();
    check_count(annotation, items.len())?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_comma_item(annotation, i + 1, item.trim(), default_namespace))
        .collect()
}

/// F3: `[<ns>/]<name>[@<ifname>]`.
fn parse_comma_item(
    annotation: &str,
    position: usize,
    item: &str,
    default_namespace: &str,
) -> Result<Selection> {
    let fail = |reason: String| Error::InvalidSelection {
        annotation: annotation.to_string(),
        position,
        item: shorten(item, QUOTE),
        reason,
    };
    if item.is_empty() {
        return Err(fail(
            "empty item (a stray or trailing comma?); accepted: [namespace/]name[@interface]"
                .to_string(),
        ));
    }
    let (namespace, rest) = match item.split_once('/') {
        Some((ns, rest)) => {
            if rest.contains('/') {
                return Err(fail(
                    "invalid network object (failed at '/'): more than one '/'; accepted: [namespace/]name[@interface]".to_string(),
                ));
            }
            (Some(ns.trim()), rest)
        }
        None => (None, item),
    };
    let (name, interface) = match rest.split_once('@') {
        Some((name, ifname)) => {
            if ifname.contains('@') {
                return Err(fail(
                    "invalid network object (failed at '@'): more than one '@'; accepted: [namespace/]name[@interface]".to_string(),
                ));
            }
            // Multus trims each part (`strings.TrimSpace`), the interface name included.
            (name.trim(), Some(ifname.trim()))
        }
        None => (rest.trim(), None),
    };
    match namespace {
        Some("") => {
            return Err(fail(
                "the namespace before '/' is empty; accepted: [namespace/]name[@interface]"
                    .to_string(),
            ));
        }
        Some(ns) if !crate::charset::is_dns_label(ns) => {
            return Err(fail(format!(
                "namespace {ns:?} must consist of lower case alphanumeric characters or '-' and start and end with an alphanumeric character"
            )));
        }
        // The same caps as the JSON form (Kubernetes name lengths).
        Some(ns) if ns.len() > 63 => {
            return Err(fail(format!(
                "namespace {:?} is {} bytes; a Kubernetes namespace name has at most 63",
                shorten(ns, QUOTE),
                ns.len()
            )));
        }
        _ => {}
    }
    if name.is_empty() {
        return Err(fail(
            "the network name is empty; accepted: [namespace/]name[@interface]".to_string(),
        ));
    }
    if name.len() > 253 {
        return Err(fail(format!(
            "network name {:?} is {} bytes; a Kubernetes object name has at most 253",
            shorten(name, QUOTE),
            name.len()
        )));
    }
    if !crate::charset::is_dns_label(name) {
        return Err(fail(format!(
            "network name {name:?} must consist of lower case alphanumeric characters or '-' and start and end with an alphanumeric character"
        )));
    }
    let interface = match interface {
        Some(ifname) => {
            Some(crate::id::InterfaceName::new(ifname).map_err(|e| fail(e.to_string()))?)
        }
        None => None,
    };
    Ok(Selection {
        namespace: namespace.unwrap_or(default_namespace).to_string(),
        name: name.to_string(),
        interface,
        position,
        text: shorten(item, QUOTE),
        ..Selection::default()
    })
}

fn reject_duplicate_interfaces(annotation: &str, selections: &[Selection]) -> Result<()> {
    let mut seen: HashMap<&str, &Selection> = HashMap::new();
    for s in selections {
        if let Some(ifname) = s.interface.as_deref()
            && let Some(first) = seen.insert(ifname, s)
        {
            return Err(Error::InvalidSelection {
                annotation: annotation.to_string(),
                position: s.position,
                item: s.text.clone(),
                reason: format!(
                    "interface name {ifname:?} is already requested by item {} ({}); each interface name may appear once",
                    first.position, first.text
                ),
            });
        }
    }
    Ok(())
}

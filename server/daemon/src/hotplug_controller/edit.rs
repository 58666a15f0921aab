//! Edits of a pod's `k8s.v1.cni.cncf.io/networks` value for `plexusctl attach/detach --pod`
//! on a Kubernetes node: the desired state lives in the pod, and the controller does the
//! work. Pure: a value in, a value out. The comma form stays a comma form unless a JSON
//! element joins it; then every element is written as a JSON object (the two forms cannot
//! be mixed in one value).

use plexus_core::annotation::{self, NETWORKS, Selection};
use serde_json::{Value, json};

use super::{Wanted, desired, managed, pair};
use crate::error::{Error, Result};
use crate::model::AttachmentView;

fn invalid(message: String) -> Error {
    Error::InvalidRequest { message }
}

fn parse(value: &str, pod_namespace: &str) -> Result<Vec<Wanted>> {
    desired(value, pod_namespace).map_err(|e| {
        invalid(format!(
            "the pod's {NETWORKS} annotation cannot be edited because it does not parse ({e}); fix it in the pod, or use --direct"
        ))
    })
}

fn is_json(value: &str) -> bool {
    value.trim_start().starts_with('[')
}

fn as_object(w: &Wanted) -> Value {
    if w.text.trim_start().starts_with('{') {
        return serde_json::from_str(&w.text).unwrap_or_else(|_| short_object(&w.selection));
    }
    short_object(&w.selection)
}

fn short_object(sel: &Selection) -> Value {
    let mut o = json!({"name": sel.name, "namespace": sel.namespace});
    if let Some(i) = &sel.interface {
        o["interface"] = json!(i);
    }
    o
}

fn render(elements: &[Wanted], json: bool) -> String {
    if json {
        Value::Array(elements.iter().map(as_object).collect()).to_string()
    } else {
        elements
            .iter()
            .map(|w| w.text.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// `value` with `selection` (one element, either grammar) appended.
pub fn add(value: &str, pod_namespace: &str, selection: &str) -> Result<String> {
    let mut elements = parse(value, pod_namespace)?;
    let text = selection.trim();
    let parsed = annotation::parse_selection(text, pod_namespace)
        .map_err(|e| invalid(format!("selection {text:?}: {e}")))?;
    let json = is_json(value) || text.starts_with('{');
    elements.push(Wanted {
        selection: parsed,
        text: text.to_string(),
    });
    Ok(render(&elements, json))
}

/// `value` without the element the attachment `interface` was made from (paired by network
/// identity, as the controller pairs them).
pub fn remove(
    value: &str,
    pod_namespace: &str,
    attachments: &[AttachmentView],
    interface: &str,
) -> Result<String> {
    let mut elements = parse(value, pod_namespace)?;
    let Some(target) = attachments.iter().find(|a| a.interface == interface) else {
        return Err(invalid(format!("the pod has no interface {interface}")));
    };
    if !managed(target) {
        return Err(invalid(format!(
            "{interface} (network {}, origin {}) is not from the pod's {NETWORKS} annotation; only annotation networks are removed by editing it (detach a directly attached interface with --direct; the primary and configured networks stay)",
            target.network, target.origin
        )));
    }
    if target.driver == crate::node::ADOPTED_DRIVER {
        return Err(invalid(format!(
            "{interface} (network {}) was there before plexus adopted this pod; plexus does not remove it (recreate the pod to drop it)",
            target.network
        )));
    }
    let managed: Vec<&AttachmentView> = attachments.iter().filter(|a| managed(a)).collect();
    let matched = pair(&elements, &managed);
    let Some(index) = managed.iter().position(|a| a.interface == interface) else {
        return Err(invalid(format!("the pod has no interface {interface}")));
    };
    let Some(element) = matched.iter().position(|m| *m == Some(index)) else {
        return Err(invalid(format!(
            "no element of the pod's {NETWORKS} annotation asks for {interface} (network {}) any more; the controller removes it on its own",
            target.network
        )));
    };
    // Unnamed elements of one network are interchangeable: when the controller would pair
    // the rest differently (keeping the wrong one), the others of this network are pinned to
    // the interfaces they have.
    let mut kept = matched.clone();
    kept.remove(element);
    let mut rest = elements.clone();
    rest.remove(element);
    if pair(&rest, &managed) != kept {
        let network = elements[element].selection.network();
        for (w, m) in elements.iter_mut().zip(&matched) {
            if let (Some(k), None) = (m, &w.selection.interface)
                && *k != index
                && w.selection.network() == network
            {
                // Recorded names are valid; one that is not is left for the user to name.
                let Ok(name) = plexus_core::InterfaceName::new(managed[*k].interface.as_str())
                else {
                    continue;
                };
                w.text = if w.text.trim_start().starts_with('{') {
                    let mut o = as_object(w);
                    o["interface"] = json!(name);
                    o.to_string()
                } else {
                    format!("{}@{name}", w.text)
                };
                w.selection.interface = Some(name);
            }
        }
    }
    elements.remove(element);
    Ok(render(&elements, is_json(value)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AttachmentState;

    fn att(network: &str, interface: &str, origin: &str) -> AttachmentView {
        AttachmentView {
            network: network.to_string(),
            interface: interface.to_string(),
            ips: Vec::new(),
            mac: String::new(),
            driver: String::new(),
            plugin: String::new(),
            origin: origin.to_string(),
            state: AttachmentState::Attached,
            mtu: None,
            gateways: Vec::new(),
            primary: interface == "eth0",
            lease_expires: None,
            result: None,
        }
    }

    #[test]
    fn add_keeps_the_comma_form_and_switches_to_json_for_a_json_element() {
        assert_eq!(add("", "ns", "a").unwrap(), "a");
        assert_eq!(add("a, o/b@x", "ns", "c@data").unwrap(), "a,o/b@x,c@data");
        let v = add("a,o/b@x", "ns", r#"{"name":"c","ips":["10.0.0.1/24"]}"#).unwrap();
        let v: Vec<Value> = serde_json::from_str(&v).unwrap();
        assert_eq!(v[0], json!({"name": "a", "namespace": "ns"}));
        assert_eq!(
            v[1],
            json!({"name": "b", "namespace": "o", "interface": "x"})
        );
        assert_eq!(v[2]["ips"][0], "10.0.0.1/24");
        let v = add(r#"[{"name":"a"}]"#, "ns", "b").unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&v).unwrap(),
            json!([{"name": "a"}, {"name": "b", "namespace": "ns"}])
        );
        assert!(add("a", "ns", "bad name!").is_err());
        assert!(add("[{", "ns", "a").is_err());
    }

    #[test]
    fn remove_takes_out_the_element_the_interface_came_from() {
        let atts = [
            att("kube-system/cluster", "eth0", "cluster"),
            att("ns/a", "net1", "annotation"),
            att("ns/b", "net2", "annotation"),
            att("ns/a", "net3", "annotation"),
            att("ns/x", "net4", "hotplug"),
        ];
        // The second unnamed `a` made net3.
        assert_eq!(remove("a,b,a", "ns", &atts, "net3").unwrap(), "a,b");
        assert_eq!(remove("a,b,a", "ns", &atts, "net2").unwrap(), "a,a");
        // Removing the first: the other `a` is pinned to net3, so net1 is what goes.
        assert_eq!(remove("a,b,a", "ns", &atts, "net1").unwrap(), "b,a@net3");
        let rest = desired("b,a@net3", "ns").unwrap();
        assert_eq!(super::super::diff(&rest, &atts).detach, ["net1"]);
        let v = remove(r#"[{"name":"a"},{"name":"b"}]"#, "ns", &atts, "net1").unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&v).unwrap(),
            json!([{"name": "b"}])
        );
        for (iface, needle) in [
            ("eth0", "not from the pod's"),
            ("net4", "--direct"),
            ("net9", "no interface net9"),
        ] {
            let err = remove("a,b,a", "ns", &atts, iface).unwrap_err().to_string();
            assert!(err.contains(needle), "{iface}: {err}");
        }
        // Already gone from the annotation: nothing to edit.
        let err = remove("a,b", "ns", &atts, "net3").unwrap_err().to_string();
        assert!(err.contains("any more"), "{err}");
    }
}

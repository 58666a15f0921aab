//! The JSON NetworkSelectionElement (F5, §1.2a) and the value checks shared by both
//! annotation forms: interface names (the CNI rule), hardware addresses (Go's
//! `net.ParseMAC` forms) and addresses.
//!
//! Keys are matched like Go's `encoding/json`: exact first, then ASCII case-insensitive;
//! unknown keys are ignored like Multus does.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::{QUOTE, Selection};
use crate::cni::validate::{IfnameProblem, ifname_problem};
use crate::error::{Error, Result, shorten};
use crate::plan::{Bandwidth, PortMapping};

/// Keys Multus (and the NAD client) know, in their exact spelling.
const KNOWN_KEYS: [&str; 13] = [
    "name",
    "namespace",
    "interface",
    "interfaceRequest",
    "ips",
    "mac",
    "infiniband-guid",
    "portMappings",
    "bandwidth",
    "cni-args",
    "default-route",
    "deviceID",
    "ipam-claim-reference",
];

/// What `validate_ifname` accepts, for messages.
const IFNAME_RULE: &str =
    "accepted: 1 to 15 bytes, not '.' or '..', without '/', ':', NUL or whitespace";

/// Checks an interface name with the CNI rule ([`ifname_problem`]): 1–15 bytes, not `.`
/// or `..`, no `/`, `:` or whitespace. The error says why and what is accepted.
pub fn validate_ifname(name: &str) -> std::result::Result<(), String> {
    let problem = match ifname_problem(name) {
        None => return Ok(()),
        Some(IfnameProblem::Empty) => "interface name is empty".to_string(),
        Some(IfnameProblem::TooLong(len)) => {
            format!("interface name {name:?} is {len} bytes, longer than 15")
        }
        Some(IfnameProblem::Dot) => format!("interface name {name:?} is not a valid name"),
        Some(IfnameProblem::BadChar) => {
            format!("interface name {name:?} contains '/', ':' or whitespace")
        }
        Some(IfnameProblem::Nul) => format!("interface name {name:?} contains NUL"),
    };
    Err(format!("{problem}; {IFNAME_RULE}"))
}

/// Parses a hardware address in the forms Go's `net.ParseMAC` accepts (`:` or `-`
/// separated octets, or `.` separated groups of four hex digits) with 6, 8 or 20
/// octets. Returns the octets.
pub fn parse_hwaddr(text: &str) -> Option<Vec<u8>> {
    let (sep, group) = match text.as_bytes() {
        [_, _, b':' | b'-', ..] => (text.as_bytes()[2] as char, 2),
        [_, _, _, _, b'.', ..] => ('.', 4),
        _ => return None,
    };
    let mut octets = Vec::new();
    for part in text.split(sep) {
        if part.len() != group || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        for i in (0..group).step_by(2) {
            octets.push(u8::from_str_radix(&part[i..i + 2], 16).ok()?);
        }
    }
    matches!(octets.len(), 6 | 8 | 20).then_some(octets)
}

/// A short description of a JSON value's type, for messages.
pub(super) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Renames keys that match a known key only case-insensitively (Go `encoding/json`).
fn normalise_keys(object: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in object {
        let known = if KNOWN_KEYS.contains(&key.as_str()) {
            key.as_str()
        } else {
            match KNOWN_KEYS.iter().find(|k| k.eq_ignore_ascii_case(key)) {
                Some(k) if !object.contains_key(*k) => k,
                _ => key.as_str(),
            }
        };
        out.insert(known.to_string(), value.clone());
    }
    out
}

/// Parses one JSON element at 1-based `position`.
pub(super) fn from_json(
    annotation: &str,
    position: usize,
    value: &Value,
    default_namespace: &str,
) -> Result<Selection> {
    let text = shorten(&value.to_string(), QUOTE);
    let fail = |reason: String| Error::InvalidSelection {
        annotation: annotation.to_string(),
        position,
        item: text.clone(),
        reason,
    };
    let Value::Object(raw) = value else {
        return Err(fail(format!(
            "expected a JSON object like {{\"name\":\"macvlan\"}}, got {}",
            json_kind(value)
        )));
    };
    let obj = normalise_keys(raw);
    let name = string(&obj, "name").map_err(&fail)?.unwrap_or_default();
    if name.is_empty() {
        return Err(fail(
            "\"name\" is missing or empty; every element names a network-attachment-definition"
                .to_string(),
        ));
    }
    if name.len() > 253 || !crate::charset::is_object_name(&name) {
        return Err(fail(format!(
            "\"name\" {:?} is not a Kubernetes object name (lower case alphanumerics, '-' and '.', at most 253 bytes)",
            shorten(&name, QUOTE)
        )));
    }
    let namespace = string(&obj, "namespace").map_err(&fail)?;
    if let Some(ns) = &namespace
        && (ns.len() > 63 || !crate::charset::is_dns_label(ns))
    {
        return Err(fail(format!(
            "\"namespace\" {:?} is not a Kubernetes namespace name (lower case alphanumerics and '-', at most 63 bytes)",
            shorten(ns, QUOTE)
        )));
    }
    let interface = match string(&obj, "interface").map_err(&fail)? {
        Some(i) => Some(i),
        None => string(&obj, "interfaceRequest").map_err(&fail)?,
    };
    let interface = match interface {
        Some(ifname) => Some(
            crate::id::InterfaceName::new(ifname)
                .map_err(|e| fail(format!("\"interface\": {e}")))?,
        ),
        None => None,
    };
    let ips = string_list(&obj, "ips").map_err(&fail)?.unwrap_or_default();
    for ip in &ips {
        check_ip(ip).map_err(&fail)?;
    }
    let mac = string(&obj, "mac").map_err(&fail)?;
    if let Some(mac) = &mac
        && parse_hwaddr(mac).map(|o| o.len()) != Some(6)
    {
        return Err(fail(format!(
            "\"mac\": failed to parse MAC {mac:?}; accepted: six hex octets like 02:00:5e:10:00:01"
        )));
    }
    let infiniband_guid = string(&obj, "infiniband-guid").map_err(&fail)?;
    if let Some(guid) = &infiniband_guid
        && parse_hwaddr(guid).map(|o| o.len()) != Some(8)
    {
        return Err(fail(format!(
            "\"infiniband-guid\": failed to validate infiniband GUID {guid:?}; accepted: eight hex octets like 00:11:22:33:44:55:66:77"
        )));
    }
    let port_mappings = port_mappings(&obj).map_err(&fail)?;
    let bandwidth = typed::<Bandwidth>(
        &obj,
        "bandwidth",
        "{\"ingressRate\":N,\"ingressBurst\":N,\"egressRate\":N,\"egressBurst\":N} with non-negative integers",
    )
    .map_err(&fail)?;
    let cni_args = match obj.get("cni-args") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m.clone()),
        Some(other) => {
            return Err(fail(format!(
                "\"cni-args\" must be an object like {{\"key\":\"value\"}}, got {}",
                json_kind(other)
            )));
        }
    };
    let default_route = match string_list(&obj, "default-route").map_err(&fail)? {
        None => None,
        Some(list) => Some(
            list.iter()
                .map(|gw| {
                    gw.parse::<IpAddr>().map_err(|_| {
                        fail(format!(
                            "\"default-route\": invalid IP address: {gw:?}; accepted: a list of gateway addresses like [\"192.0.2.1\"], or [] to remove default routes"
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        ),
    };
    Ok(Selection {
        namespace: namespace.unwrap_or_else(|| default_namespace.to_string()),
        name,
        interface,
        ips,
        mac,
        infiniband_guid,
        port_mappings,
        bandwidth,
        cni_args,
        default_route,
        device_id: string(&obj, "deviceID").map_err(&fail)?,
        ipam_claim_reference: string(&obj, "ipam-claim-reference").map_err(&fail)?,
        position,
        text,
    })
}

/// A string field; absent, null and `""` are all `None` (Go zero value).
fn string(obj: &Map<String, Value>, key: &str) -> std::result::Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!(
            "{key:?} must be a string, got {}",
            json_kind(other)
        )),
    }
}

/// A list-of-strings field; absent and null are `None`, `[]` is `Some(vec![])`.
fn string_list(
    obj: &Map<String, Value>,
    key: &str,
) -> std::result::Result<Option<Vec<String>>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(format!(
                    "{key:?} must be a list of strings, found {}",
                    json_kind(other)
                )),
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(format!(
            "{key:?} must be a list of strings, got {}",
            json_kind(other)
        )),
    }
}

fn typed<T: serde::de::DeserializeOwned>(
    obj: &Map<String, Value>,
    key: &str,
    accepted: &str,
) -> std::result::Result<Option<T>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| format!("{key:?}: {e}; accepted: {accepted}")),
    }
}

fn check_ip(ip: &str) -> std::result::Result<(), String> {
    if ip.contains('/') {
        ip.parse::<ipnet::IpNet>().map(|_| ()).map_err(|_| {
            format!("\"ips\": failed to parse CIDR {ip:?}; accepted: addresses like 192.0.2.10/24, 2001:db8::10/64 or 192.0.2.10")
        })
    } else {
        ip.parse::<IpAddr>().map(|_| ()).map_err(|_| {
            format!("\"ips\": failed to parse IP address {ip:?}; accepted: addresses like 192.0.2.10/24, 2001:db8::10/64 or 192.0.2.10")
        })
    }
}

fn port_mappings(obj: &Map<String, Value>) -> std::result::Result<Vec<PortMapping>, String> {
    let mappings: Vec<PortMapping> = typed(
        obj,
        "portMappings",
        "[{\"hostPort\":8080,\"containerPort\":80,\"protocol\":\"tcp\",\"hostIP\":\"192.0.2.1\"}] (protocol and hostIP optional)",
    )?
    .unwrap_or_default();
    for (i, m) in mappings.iter().enumerate() {
        for (what, port) in [
            ("hostPort", m.host_port),
            ("containerPort", m.container_port),
        ] {
            if !(1..=65535).contains(&port) {
                return Err(format!(
                    "\"portMappings\"[{i}].{what} is {port}; accepted: 1 to 65535"
                ));
            }
        }
        if !["", "tcp", "udp", "sctp"].contains(&m.protocol.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "\"portMappings\"[{i}].protocol is {:?}; accepted: tcp, udp or sctp",
                shorten(&m.protocol, QUOTE)
            ));
        }
        if !m.host_ip.is_empty() && m.host_ip.parse::<IpAddr>().is_err() {
            return Err(format!(
                "\"portMappings\"[{i}].hostIP {:?} is not an IP address; accepted: an IPv4 or IPv6 address, or no hostIP",
                shorten(&m.host_ip, QUOTE)
            ));
        }
    }
    Ok(mappings)
}

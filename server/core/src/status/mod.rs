//! The `k8s.v1.cni.cncf.io/network-status` annotation, byte for byte as Multus writes it
//! (network-attachment-definition-client `CreateNetworkStatuses` / `SetNetworkStatus`).
//!
//! Input is one CNI result per attachment with its display name and primary flag; output
//! is the list of statuses and its exact annotation text. Also parses an existing value.
//! Pure: publishing the annotation is the server's job.

use serde::{Deserialize, Serialize};

use crate::cni::{self, Dns};
use crate::plan::PlannedAttachment;

#[cfg(test)]
mod tests;

/// The annotation key.
pub const ANNOTATION: &str = "k8s.v1.cni.cncf.io/network-status";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An existing annotation value is not a JSON list of network statuses.
    #[error("failed to parse the {ANNOTATION} annotation: {error}")]
    Parse {
        /// The JSON error.
        error: serde_json::Error,
    },
}

/// One entry of the annotation (Go `NetworkStatus`, fields in Go struct order).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkStatus {
    /// Network display name (`namespace/name`, or the config name for a file).
    pub name: String,
    /// Interface name in the pod.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interface: String,
    /// Addresses without prefix length.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    /// Hardware address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// MTU, 0 when unknown.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mtu: u32,
    /// True for the pod's default network interface.
    #[serde(default, skip_serializing_if = "is_false")]
    pub default: bool,
    /// DNS settings of the result (always written, usually `{}`).
    #[serde(default)]
    pub dns: Dns,
    /// Device information (`device-info`), passed through as given.
    #[serde(
        rename = "device-info",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub device_info: Option<serde_json::Value>,
    /// Gateways of the result's default routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateway: Vec<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One attachment's input to the annotation.
#[derive(Debug, Clone, Copy)]
pub struct Attachment<'a> {
    /// Display name (`PlannedAttachment::network`).
    pub network: &'a str,
    /// True for the cluster network / default-network override.
    pub primary: bool,
    /// The delegate's result (any version; only its data is used).
    pub result: &'a cni::Result,
    /// Device information to report, if any.
    pub device_info: Option<&'a serde_json::Value>,
}

impl<'a> Attachment<'a> {
    /// The input for a planned attachment and its result (no device info).
    pub fn planned(attachment: &'a PlannedAttachment, result: &'a cni::Result) -> Attachment<'a> {
        Attachment {
            network: &attachment.network,
            primary: attachment.primary,
            result,
            device_info: None,
        }
    }
}

/// True for a route Go's `isDefaultRoute` accepts: destination address 0.0.0.0 or ::.
fn is_default_route(route: &cni::Route) -> bool {
    route.dst.addr().is_unspecified()
}

/// Gateways of the default routes. A default route without a next hop is skipped (Go
/// would write the text `<nil>` for it).
fn default_gateways(result: &cni::Result) -> Vec<String> {
    result
        .routes
        .iter()
        .filter(|r| is_default_route(r))
        .filter_map(|r| r.gw.map(|gw| gw.to_string()))
        .collect()
}

/// The statuses one attachment contributes, with Multus's rules (F47): a result with
/// one interface gives one entry (interface/mac/mtu only when it is in the sandbox, all
/// addresses); otherwise one entry per sandbox interface, addresses by `ips[].interface`,
/// un-attributed addresses on the last sandbox interface, and for the primary network
/// `default` on the interface of the first gatewayed address (else the first sandbox
/// interface). A result without interfaces contributes nothing.
pub fn statuses(att: &Attachment<'_>) -> Vec<NetworkStatus> {
    let result = att.result;
    let base = NetworkStatus {
        name: att.network.to_owned(),
        dns: result.dns.clone(),
        device_info: att.device_info.cloned(),
        gateway: default_gateways(result),
        ..NetworkStatus::default()
    };
    if let [iface] = result.interfaces.as_slice() {
        let mut status = NetworkStatus {
            default: att.primary,
            ips: result
                .ips
                .iter()
                .map(|ip| ip.address.addr().to_string())
                .collect(),
            ..base
        };
        if !iface.sandbox.is_empty() {
            status.interface = iface.name.clone();
            status.mac = iface.mac.clone();
            status.mtu = iface.mtu.unwrap_or(0);
        }
        return vec![status];
    }

    let gateway_iface = if att.primary {
        result
            .ips
            .iter()
            .find(|ip| ip.gateway.is_some() && ip.interface.is_some())
            .and_then(|ip| ip.interface)
    } else {
        None
    };
    let mut out: Vec<NetworkStatus> = Vec::new();
    // Original interface index → position in `out`.
    let mut index_map = Vec::new();
    let mut did_set_default = false;
    for (i, iface) in result.interfaces.iter().enumerate() {
        if iface.sandbox.is_empty() {
            continue;
        }
        let default = match gateway_iface {
            Some(g) => att.primary && g == i && !did_set_default,
            None => att.primary && !did_set_default,
        };
        did_set_default |= default;
        index_map.push((i, out.len()));
        out.push(NetworkStatus {
            interface: iface.name.clone(),
            mac: iface.mac.clone(),
            mtu: iface.mtu.unwrap_or(0),
            default,
            ..base.clone()
        });
    }
    for ip in &result.ips {
        let addr = ip.address.addr().to_string();
        let target = match ip.interface {
            Some(orig) => index_map
                .iter()
                .find(|(i, _)| *i == orig)
                .map(|(_, pos)| *pos),
            None => out.len().checked_sub(1),
        };
        if let Some(pos) = target {
            out[pos].ips.push(addr);
        }
    }
    out
}

/// The statuses of all attachments, in order.
pub fn build(attachments: &[Attachment<'_>]) -> Vec<NetworkStatus> {
    attachments.iter().flat_map(statuses).collect()
}

/// The annotation text: each status indented with four spaces, joined with `,`, in `[`…`]`.
pub fn render(statuses: &[NetworkStatus]) -> String {
    let mut out = String::from("[");
    for (i, status) in statuses.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // A struct of strings, lists and a JSON value always serialises.
        out.push_str(&cni::json::marshal_indent(status).unwrap_or_default());
    }
    out.push(']');
    out
}

/// Parses an annotation value.
pub fn parse(text: &str) -> Result<Vec<NetworkStatus>, Error> {
    serde_json::from_str(text).map_err(|error| Error::Parse { error })
}

//! Rendering node-API answers for people and scripts: the stable JSON shape of an attachment
//! (`plexusctl attachments --output json`, relied on by tests outside this project) and a
//! plain text table.

use serde::Serialize;

use crate::v1;

/// Output format of CLI commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Human-readable text.
    #[default]
    Text,
    /// Stable JSON.
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            other => Err(format!("unknown output format {other:?}; use json or text")),
        }
    }
}

/// The pod of an attachment, in the JSON output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodJson {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID (may be empty).
    pub uid: String,
}

/// One attachment in the JSON output. Field names are a stable interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentJson {
    /// Runtime sandbox id.
    pub sandbox_id: String,
    /// The pod.
    pub pod: PodJson,
    /// `namespace/name` of the network.
    pub network: String,
    /// Interface inside the pod.
    pub interface: String,
    /// Addresses with prefix length.
    pub ips: Vec<String>,
    /// Hardware address.
    pub mac: String,
    /// `native` or `exec`.
    pub driver: String,
    /// Plugin type(s).
    pub plugin: String,
    /// `cluster`, `default`, `annotation`, `hotplug`, ...
    pub origin: String,
    /// `pending`, `attached` or `detaching`.
    pub state: String,
    /// Network namespace path.
    pub netns: String,
    /// MTU (0 when unknown).
    pub mtu: u32,
    /// Gateways.
    pub gateways: Vec<String>,
    /// Expiry of the native DHCP lease (seconds since the Unix epoch), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_expires_unix: Option<u64>,
}

impl From<&v1::Attachment> for AttachmentJson {
    fn from(a: &v1::Attachment) -> Self {
        let pod = a.pod.clone().unwrap_or_default();
        Self {
            sandbox_id: a.sandbox_id.clone(),
            pod: PodJson {
                namespace: pod.namespace,
                name: pod.name,
                uid: pod.uid,
            },
            network: a.network.clone(),
            interface: a.interface.clone(),
            ips: a.ips.clone(),
            mac: a.mac.clone(),
            driver: a.driver.clone(),
            plugin: a.plugin.clone(),
            origin: a.origin.clone(),
            state: a.state.clone(),
            netns: a.netns_path.clone(),
            mtu: a.mtu,
            gateways: a.gateways.clone(),
            lease_expires_unix: (a.lease_expires_unix != 0).then_some(a.lease_expires_unix),
        }
    }
}

/// Writes `text` and a newline to stdout; a closed pipe (`| head`) is not an error.
pub fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", text.trim_end_matches('\n')).and_then(|()| out.flush());
}

/// Attachments as a pretty JSON array.
pub fn attachments_json(list: &[v1::Attachment]) -> String {
    let items: Vec<AttachmentJson> = list.iter().map(AttachmentJson::from).collect();
    // Serialising plain strings and numbers cannot fail.
    serde_json::to_string_pretty(&items).unwrap_or_else(|_| "[]".to_owned())
}

/// Attachments as an aligned text table (one line per attachment).
pub fn attachments_text(list: &[v1::Attachment]) -> String {
    let header = [
        "SANDBOX", "POD", "NETWORK", "IFACE", "IPS", "MAC", "DRIVER", "ORIGIN", "STATE", "LEASE",
    ];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut rows: Vec<[String; 10]> = vec![header.map(str::to_owned)];
    for a in list {
        let pod = a
            .pod
            .as_ref()
            .map(|p| format!("{}/{}", p.namespace, p.name))
            .unwrap_or_default();
        let sandbox: String = a.sandbox_id.chars().take(12).collect();
        rows.push([
            sandbox,
            pod,
            a.network.clone(),
            a.interface.clone(),
            if a.ips.is_empty() {
                "-".to_owned()
            } else {
                a.ips.join(",")
            },
            if a.mac.is_empty() {
                "-".to_owned()
            } else {
                a.mac.clone()
            },
            a.driver.clone(),
            a.origin.clone(),
            a.state.clone(),
            lease_cell(a.lease_expires_unix, now),
        ]);
    }
    let mut widths = [0usize; 10];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The LEASE cell: `-` without a lease, `expired`, or the time left (`1h02m03s`).
fn lease_cell(expires_unix: u64, now: u64) -> String {
    if expires_unix == 0 {
        return "-".to_owned();
    }
    let Some(left) = expires_unix.checked_sub(now).filter(|l| *l > 0) else {
        return "expired".to_owned();
    };
    let (h, m, s) = (left / 3600, left / 60 % 60, left % 60);
    if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> v1::Attachment {
        v1::Attachment {
            sandbox_id: "0123456789abcdef".into(),
            pod: Some(v1::PodRef {
                namespace: "iot".into(),
                name: "ha".into(),
                uid: "u1".into(),
            }),
            network: "iot/lan".into(),
            interface: "net1".into(),
            ips: vec!["192.0.2.10/24".into()],
            mac: "02:00:00:00:00:01".into(),
            driver: "native".into(),
            plugin: "macvlan".into(),
            origin: "annotation".into(),
            state: "attached".into(),
            netns_path: "/run/netns/x".into(),
            mtu: 1500,
            gateways: vec![],
            lease_expires_unix: 0,
        }
    }

    #[test]
    fn json_shape_is_stable() {
        let json: serde_json::Value = serde_json::from_str(&attachments_json(&[sample()])).unwrap();
        let a = &json[0];
        assert_eq!(a["sandboxId"], "0123456789abcdef");
        assert_eq!(a["pod"]["namespace"], "iot");
        assert_eq!(a["pod"]["name"], "ha");
        assert_eq!(a["network"], "iot/lan");
        assert_eq!(a["interface"], "net1");
        assert_eq!(a["ips"][0], "192.0.2.10/24");
        assert_eq!(a["mac"], "02:00:00:00:00:01");
        assert_eq!(a["driver"], "native");
        assert_eq!(a["origin"], "annotation");
        assert_eq!(a["state"], "attached");
        assert_eq!(attachments_json(&[]), "[]");
    }

    #[test]
    fn lease_column_shows_time_left_or_expired() {
        assert_eq!(lease_cell(0, 100), "-");
        assert_eq!(lease_cell(100, 100), "expired");
        assert_eq!(lease_cell(145, 100), "45s");
        assert_eq!(lease_cell(100 + 3723, 100), "1h02m03s");
        let mut a = sample();
        a.lease_expires_unix = 4_000_000_000;
        let json: serde_json::Value = serde_json::from_str(&attachments_json(&[a])).unwrap();
        assert_eq!(json[0]["leaseExpiresUnix"], 4_000_000_000u64);
        let json: serde_json::Value = serde_json::from_str(&attachments_json(&[sample()])).unwrap();
        assert!(json[0].get("leaseExpiresUnix").is_none());
        assert!(
            attachments_text(&[sample()])
                .lines()
                .next()
                .unwrap()
                .ends_with("LEASE")
        );
    }

    #[test]
    fn text_table_has_header_and_row() {
        let text = attachments_text(&[sample()]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("SANDBOX"));
        assert!(lines[1].contains("iot/ha") && lines[1].contains("net1"));
        assert!(lines[1].starts_with("0123456789ab "), "{}", lines[1]);
    }
}

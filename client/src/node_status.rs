//! `plexusctl status` without a pod: plexusd's own state (mode, API server connection, NAD
//! cache, pod watch, publish backlog) as a stable JSON object or an aligned text table, and
//! the `ns/name` pod reference of `plexusctl explain --pod`, checked before anything is sent.

use serde::Serialize;

use crate::v1;

/// The JSON shape of `plexusctl status --output json`. Field names are a stable interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusJson {
    /// `standalone` or `kubernetes`.
    pub mode: String,
    /// The node's name.
    pub node_name: String,
    /// Kubernetes mode only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesJson>,
}

/// The API side, in [`StatusJson`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesJson {
    /// The last request to the API server got an answer.
    pub api_connected: bool,
    /// The last failure talking to the API server (`null` when none).
    pub last_error: Option<String>,
    /// The NAD cache completed its first list.
    pub nads_synced: bool,
    /// NADs cached.
    pub nads: u64,
    /// The pod watch completed its first list.
    pub pods_synced: bool,
    /// Pods of this node known.
    pub pods: u64,
    /// network-status patches waiting.
    pub status_backlog: u64,
    /// Pod events waiting.
    pub event_backlog: u64,
    /// Age of the oldest waiting write, in milliseconds.
    pub oldest_pending_ms: u64,
    /// Writes delivered since plexusd started.
    pub delivered: u64,
    /// Writes given up on since plexusd started.
    pub dropped: u64,
}

impl From<&v1::GetStatusResponse> for StatusJson {
    fn from(s: &v1::GetStatusResponse) -> Self {
        StatusJson {
            mode: s.mode.clone(),
            node_name: s.node_name.clone(),
            kubernetes: s.kubernetes.as_ref().map(|k| KubernetesJson {
                api_connected: k.api_connected,
                last_error: (!k.last_error.is_empty()).then(|| k.last_error.clone()),
                nads_synced: k.nads_synced,
                nads: k.nads,
                pods_synced: k.pods_synced,
                pods: k.pods,
                status_backlog: k.status_backlog,
                event_backlog: k.event_backlog,
                oldest_pending_ms: k.oldest_pending_ms,
                delivered: k.delivered,
                dropped: k.dropped,
            }),
        }
    }
}

/// The status as pretty JSON.
pub fn status_json(s: &v1::GetStatusResponse) -> String {
    serde_json::to_string_pretty(&StatusJson::from(s)).unwrap_or_else(|_| "{}".to_owned())
}

/// The status as a two-column table.
pub fn status_text(s: &v1::GetStatusResponse) -> String {
    let or_dash = |v: &str| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.to_owned()
        }
    };
    let mut rows: Vec<(&str, String)> =
        vec![("MODE", s.mode.clone()), ("NODE", or_dash(&s.node_name))];
    if let Some(k) = &s.kubernetes {
        let synced = |yes: bool, n: u64, what: &str| {
            format!("{} ({n} {what})", if yes { "synced" } else { "not synced" })
        };
        rows.push((
            "API SERVER",
            if k.api_connected {
                "connected"
            } else {
                "not connected"
            }
            .to_owned(),
        ));
        rows.push(("LAST ERROR", or_dash(&k.last_error)));
        rows.push(("NAD CACHE", synced(k.nads_synced, k.nads, "NADs")));
        rows.push(("POD WATCH", synced(k.pods_synced, k.pods, "pods")));
        let oldest = if k.status_backlog + k.event_backlog == 0 {
            String::new()
        } else {
            format!(
                ", oldest waiting {:.1}s",
                k.oldest_pending_ms as f64 / 1000.0
            )
        };
        rows.push((
            "PUBLISH BACKLOG",
            format!(
                "{} network-status, {} events{oldest}",
                k.status_backlog, k.event_backlog
            ),
        ));
        rows.push((
            "PUBLISHED",
            format!("{} delivered, {} dropped", k.delivered, k.dropped),
        ));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in rows {
        out.push_str(&format!("{key:<width$}  {value}\n"));
    }
    out
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?` of any length.
fn label_chars(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Parses `namespace/name` as the API server names a pod: the namespace a DNS-1123 label
/// (at most 63 characters), the name a DNS-1123 subdomain (at most 253). The error names the
/// rule that failed.
pub fn parse_pod_ref(text: &str) -> Result<(String, String), String> {
    let Some((namespace, name)) = text.split_once('/') else {
        return Err(format!("{text:?}: write the pod as namespace/name"));
    };
    if namespace.len() > 63 || !label_chars(namespace) {
        return Err(format!(
            "namespace {namespace:?}: a namespace is a DNS-1123 label (at most 63 characters: lowercase letters, digits and '-', starting and ending with a letter or digit)"
        ));
    }
    if name.len() > 253 || !name.split('.').all(label_chars) {
        return Err(format!(
            "pod name {name:?}: a pod name is a DNS-1123 subdomain (at most 253 characters: lowercase letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit)"
        ));
    }
    Ok((namespace.to_owned(), name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_refs_follow_the_api_s_name_rules() {
        assert_eq!(
            parse_pod_ref("kube-system/coredns-5d78c9869d-abcde").unwrap(),
            ("kube-system".into(), "coredns-5d78c9869d-abcde".into())
        );
        assert!(parse_pod_ref("default/web.v1").is_ok());
        assert!(parse_pod_ref("web").unwrap_err().contains("namespace/name"));
        let e = parse_pod_ref("Default/web").unwrap_err();
        assert!(e.contains("DNS-1123 label"), "{e}");
        let e = parse_pod_ref(&format!("{}/web", "n".repeat(64))).unwrap_err();
        assert!(e.contains("DNS-1123 label"), "{e}");
        for bad in ["web_1", "a/b", "-web", "web..x", ""] {
            let e = parse_pod_ref(&format!("default/{bad}")).unwrap_err();
            assert!(e.contains("DNS-1123 subdomain"), "{bad}: {e}");
        }
        assert!(parse_pod_ref(&format!("default/{}", "a".repeat(254))).is_err());
    }

    #[test]
    fn standalone_status_has_no_kubernetes_part() {
        let s = v1::GetStatusResponse {
            mode: "standalone".into(),
            node_name: "n1".into(),
            kubernetes: None,
        };
        let v: serde_json::Value = serde_json::from_str(&status_json(&s)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"mode": "standalone", "nodeName": "n1"})
        );
        assert_eq!(status_text(&s), "MODE  standalone\nNODE  n1\n");
    }
}

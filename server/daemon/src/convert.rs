//! The only place where node-API wire types meet domain types.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::UNIX_EPOCH;

use plexus_core::id::SandboxId;
use plexus_core::pod::PodIdentity;
use plexus_proto::v1;

use crate::error::Error;
use crate::model::{AttachmentView, Event, EventKind, SandboxSpec, SandboxView, Selector};

/// A caller's sandbox id (request field `field`), validated once here: every id the
/// service and the engine see afterwards is a [`SandboxId`], safe to build a path from.
pub fn sandbox_id(field: &str, id: &str) -> Result<SandboxId, Error> {
    SandboxId::new(id).map_err(|e| Error::InvalidRequest {
        message: format!("{field}: {e}"),
    })
}

/// Longest netns path accepted, in bytes (`PATH_MAX` - 1).
pub const NETNS_PATH_MAX_LEN: usize = 4095;

/// The netns path rule, as quoted in errors.
pub const NETNS_PATH_RULE: &str = "a netns path is empty (a host-network pod: no networks) or an absolute path of at most 4095 bytes without '.' or '..' components or NUL, naming the pod's own network namespace (/var/run/netns/<name>, /proc/<pid>/ns/net)";

/// Characters of a rejected value shown in an error (the rest is elided).
const SHOWN: usize = 64;

/// `text` for an error message: quoted, escaped, at most 64 characters, so a hostile value
/// never fills `grpc-message`.
pub fn shown(text: &str) -> String {
    let head: String = text.chars().take(SHOWN).collect();
    let mut out = format!("{head:?}");
    if text.chars().count() > SHOWN {
        out.push_str(&format!("… ({} bytes)", text.len()));
    }
    out
}

/// The namespace rule, as quoted in errors.
pub const NAMESPACE_RULE: &str = "a namespace is a DNS-1123 label: at most 63 characters, lowercase letters, digits and '-', starting and ending with a letter or digit";
/// The pod-name rule, as quoted in errors.
pub const POD_NAME_RULE: &str = "a pod name is a DNS-1123 subdomain: at most 253 characters, lowercase letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit";

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?` of any length.
fn label_chars(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A pod named by a caller for a read from the API server (`explain --pod ns/name`):
/// the namespace a DNS-1123 label, the name a DNS-1123 subdomain (what the API server
/// accepts for them), so nothing else reaches a request path.
pub fn api_pod_name(pod: Option<&v1::PodRef>) -> Result<(String, String), Error> {
    let pod = pod.cloned().unwrap_or_default();
    if pod.namespace.len() > 63 || !label_chars(&pod.namespace) {
        return Err(Error::InvalidRequest {
            message: format!("pod.namespace {}: {NAMESPACE_RULE}", shown(&pod.namespace)),
        });
    }
    if pod.name.len() > 253 || !pod.name.split('.').all(label_chars) {
        return Err(Error::InvalidRequest {
            message: format!("pod.name {}: {POD_NAME_RULE}", shown(&pod.name)),
        });
    }
    Ok((pod.namespace, pod.name))
}

/// The node service's state as the wire carries it.
pub fn status(
    mode: &str,
    node_name: &str,
    cluster: Option<&crate::kubernetes::ClusterStatus>,
) -> v1::GetStatusResponse {
    v1::GetStatusResponse {
        mode: mode.to_owned(),
        node_name: node_name.to_owned(),
        kubernetes: cluster.map(|c| v1::KubernetesStatus {
            api_connected: c.api_connected,
            last_error: c.last_error.clone().unwrap_or_default(),
            nads_synced: c.nads_synced,
            nads: c.nads as u64,
            pods_synced: c.pods_synced,
            pods: c.pods as u64,
            status_backlog: c.publish_backlog as u64,
            event_backlog: c.event_backlog as u64,
            oldest_pending_ms: c
                .oldest_pending
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            delivered: c.delivered,
            dropped: c.dropped,
        }),
    }
}

/// A caller's netns path, checked for shape here; whether it names a network namespace
/// that is not the host's is checked where it is opened (the engine).
pub fn netns_path(path: &str) -> Result<PathBuf, Error> {
    let problem = if path.is_empty() {
        None
    } else if path.len() > NETNS_PATH_MAX_LEN {
        Some(format!("it is {} bytes long", path.len()))
    } else if path.contains('\0') {
        Some("it contains NUL".to_owned())
    } else if !path.starts_with('/') {
        Some("it is relative".to_owned())
    } else if path.split('/').any(|c| c == "." || c == "..") {
        Some("it has a '.' or '..' component".to_owned())
    } else {
        None
    };
    match problem {
        None => Ok(PathBuf::from(path)),
        Some(why) => Err(Error::InvalidNetns {
            path: shown(path),
            reason: format!("{why}; {NETNS_PATH_RULE}"),
        }),
    }
}

/// The interface-name rule, as quoted in errors (libcni's, with the kernel's length).
pub const IFNAME_RULE: &str =
    "an interface name is 1 to 15 bytes, not '.' or '..', without '/', ':', NUL or whitespace";

/// A caller's interface name (request field `field`), checked with libcni's rule.
pub fn ifname(field: &str, name: &str) -> Result<plexus_core::InterfaceName, Error> {
    let problem = plexus_core::cni::validate::ifname(name)
        .err()
        .map(|e| e.msg);
    // The same rule twice: libcni's words for the message, the newtype for the value.
    match (problem, plexus_core::InterfaceName::new(name)) {
        (None, Ok(valid)) => Ok(valid),
        (why, _) => Err(Error::InvalidRequest {
            message: format!(
                "{field} {}: {}; {IFNAME_RULE}",
                shown(name),
                why.unwrap_or_else(|| "not a valid interface name".to_owned())
            ),
        }),
    }
}

/// A Reconcile live list, every id validated (one bad id refuses the whole request: a
/// caller that sends one is broken, and guessing which sandboxes it meant is not safe).
pub fn live_ids(ids: Vec<String>) -> Result<Vec<SandboxId>, Error> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| sandbox_id(&format!("live_sandbox_ids[{i}]"), id))
        .collect()
}

/// The live pods of a Reconcile that validate (sandbox id, netns path), for adoption; an
/// entry that does not is skipped with a warning, as adoption is best effort.
pub fn live_pods(pods: &[v1::SetupPodRequest]) -> Vec<crate::node::LivePod> {
    pods.iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let pod = live_pod(
                &format!("live_pods[{i}].sandbox_id"),
                &p.sandbox_id,
                pod_identity(p.pod.as_ref()),
                &p.netns_path,
                annotations(&p.annotations),
            );
            pod.inspect_err(|err| tracing::warn!(error = %err, "live pod not adoptable"))
                .ok()
        })
        .collect()
}

/// A pod containerd's API lists as running (the CNI shim path's adoption), checked like a
/// live pod from NRI: containerd's answer is input like any other.
pub fn containerd_sandbox(
    sandbox: plexus_containerd::Sandbox,
) -> Result<crate::node::LivePod, Error> {
    let netns = sandbox.netns.to_str().ok_or_else(|| Error::InvalidNetns {
        path: shown(&sandbox.netns.to_string_lossy()),
        reason: format!("it is not UTF-8; {NETNS_PATH_RULE}"),
    })?;
    live_pod(
        "containerd sandbox id",
        &sandbox.id,
        PodIdentity::new(&sandbox.namespace, &sandbox.name, &sandbox.uid),
        netns,
        sandbox.annotations,
    )
}

/// One live pod the runtime reports, its sandbox id and netns path validated.
fn live_pod(
    field: &str,
    id: &str,
    pod: PodIdentity,
    netns: &str,
    annotations: BTreeMap<String, String>,
) -> Result<crate::node::LivePod, Error> {
    Ok(crate::node::LivePod {
        spec: SandboxSpec {
            sandbox_id: sandbox_id(field, id)?,
            pod,
            netns: netns_path(netns)?,
        },
        annotations,
    })
}

/// A wire pod reference as a domain identity (absent = empty identity).
pub fn pod_identity(pod: Option<&v1::PodRef>) -> PodIdentity {
    pod.map(|p| PodIdentity::new(&p.namespace, &p.name, &p.uid))
        .unwrap_or_default()
}

/// A domain identity as a wire pod reference.
pub fn pod_ref(pod: &PodIdentity) -> v1::PodRef {
    v1::PodRef {
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        uid: pod.uid.clone(),
    }
}

/// Wire annotations in a stable order.
pub fn annotations(map: &HashMap<String, String>) -> BTreeMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The attachment a hot-plug or hot-unplug made or removed, and the pod's network-status.
pub fn hotplug(outcome: &crate::node::HotplugOutcome) -> (v1::Attachment, String) {
    let s = &outcome.sandbox;
    (
        attachment(s.sandbox_id.as_str(), &s.pod, &s.netns, &outcome.attachment),
        outcome.network_status.clone(),
    )
}

/// One attachment of a sandbox, on the wire.
pub fn attachment(
    sandbox_id: &str,
    pod: &PodIdentity,
    netns: &str,
    a: &AttachmentView,
) -> v1::Attachment {
    v1::Attachment {
        sandbox_id: sandbox_id.to_owned(),
        pod: Some(pod_ref(pod)),
        network: a.network.clone(),
        interface: a.interface.clone(),
        ips: a.ips.clone(),
        mac: a.mac.clone(),
        driver: a.driver.clone(),
        plugin: a.plugin.clone(),
        origin: a.origin.clone(),
        state: a.state.as_str().to_owned(),
        netns_path: netns.to_owned(),
        mtu: a.mtu.unwrap_or(0),
        gateways: a.gateways.clone(),
        lease_expires_unix: a.lease_expires.unwrap_or(0),
    }
}

/// Every attachment of a sandbox, on the wire.
pub fn attachments(sandbox: &SandboxView) -> Vec<v1::Attachment> {
    sandbox
        .attachments
        .iter()
        .map(|a| attachment(sandbox.sandbox_id.as_str(), &sandbox.pod, &sandbox.netns, a))
        .collect()
}

/// An attachment event, on the wire.
pub fn event(e: &Event) -> v1::WatchEvent {
    let kind = match e.kind {
        EventKind::Attached => v1::watch_event::Kind::Attached,
        EventKind::Detached => v1::watch_event::Kind::Detached,
        EventKind::AttachFailed => v1::watch_event::Kind::AttachFailed,
        EventKind::DetachFailed => v1::watch_event::Kind::DetachFailed,
    };
    let attachment = match &e.attachment {
        Some(a) => attachment(&e.sandbox_id, &e.pod, "", a),
        None => v1::Attachment {
            sandbox_id: e.sandbox_id.clone(),
            pod: Some(pod_ref(&e.pod)),
            ..Default::default()
        },
    };
    let unix_nanos =
        e.at.duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0);
    v1::WatchEvent {
        kind: kind as i32,
        attachment: Some(attachment),
        message: e.message.clone(),
        unix_nanos,
    }
}

/// The selector a request carries; a sandbox id in it is validated.
pub fn selector(target: Option<&v1::PodSelector>) -> Result<Selector, Error> {
    Ok(match target {
        Some(t) if !t.sandbox_id.is_empty() => {
            Selector::Sandbox(sandbox_id("target.sandbox_id", &t.sandbox_id)?)
        }
        Some(v1::PodSelector { pod: Some(p), .. }) if !p.name.is_empty() || !p.uid.is_empty() => {
            Selector::Pod(pod_identity(Some(p)))
        }
        _ => Selector::All,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(id: &str, netns: &str) -> v1::SetupPodRequest {
        v1::SetupPodRequest {
            pod: Some(v1::PodRef {
                namespace: "default".into(),
                name: id.into(),
                uid: "u".into(),
            }),
            sandbox_id: id.into(),
            netns_path: netns.into(),
            annotations: HashMap::from([("k".into(), "v".into())]),
            labels: HashMap::new(),
            may_finish_later: false,
        }
    }

    #[test]
    fn live_pods_that_do_not_validate_are_skipped_not_fatal() {
        let got = live_pods(&[
            live("good", "/var/run/netns/cni-1"),
            live("bad/id", "/var/run/netns/cni-2"),
            live("relative", "var/run/netns/x"),
            live("dotdot", "/var/run/netns/../../proc/1/ns/net"),
        ]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].spec.sandbox_id.as_str(), "good");
        assert_eq!(got[0].spec.pod.uid, "u");
        assert_eq!(got[0].annotations["k"], "v");
    }
}

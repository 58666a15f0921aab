//! The only place where node-API wire types meet domain types.

use std::collections::{BTreeMap, HashMap};
use std::time::UNIX_EPOCH;

use plexus_core::pod::PodIdentity;
use plexus_proto::v1;

use crate::model::{AttachmentView, Event, EventKind, SandboxView, Selector};

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
        attachment(&s.sandbox_id, &s.pod, &s.netns, &outcome.attachment),
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
        .map(|a| attachment(&sandbox.sandbox_id, &sandbox.pod, &sandbox.netns, a))
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

/// The selector a request carries.
pub fn selector(target: Option<&v1::PodSelector>) -> Selector {
    match target {
        Some(t) if !t.sandbox_id.is_empty() => Selector::Sandbox(t.sandbox_id.clone()),
        Some(v1::PodSelector { pod: Some(p), .. }) if !p.name.is_empty() || !p.uid.is_empty() => {
            Selector::Pod(pod_identity(Some(p)))
        }
        _ => Selector::All,
    }
}

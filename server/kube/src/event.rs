//! Pod events (events.k8s.io/v1), reported by controller `plexus`, instance `plexus-<node>`:
//! `AddedInterface` per interface in Multus's message shape (F49), Warning `NoNetworkFound`
//! (F26) and Warning `AttachInterfaceFailed` naming the network and the cause.
//!
//! kube-rs's `events::Recorder` is not used: it folds events with the same reason into one
//! series regardless of their note, so a pod's second `AddedInterface` would only bump the
//! count of the first and its message would be lost. Here each event is created once, under a
//! name fixed when it is queued, so a retried create that already landed answers 409
//! AlreadyExists and counts as delivered. Delivery is asynchronous through a bounded queue with
//! the same backoff as the status publisher; events are best effort (a 403, 404 or 422 drops
//! one, naming why).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;

use crate::error::Error;
use crate::outbox::{Job, Outbox, Outcome, QueueStats, RetryPolicy};
use crate::request;
use crate::status::PodKey;

/// `reportingController` of every event.
pub const CONTROLLER: &str = "plexus";
/// Events waiting at most.
pub const DEFAULT_CAPACITY: usize = 1024;
/// Longest `note` the API accepts (1 kB).
pub const MAX_NOTE: usize = 1024;
/// Longest `reportingInstance`, `action` and `reason`.
pub const MAX_FIELD: usize = 128;

/// Normal or Warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Informational.
    Normal,
    /// Something the user should look at.
    Warning,
}

/// What happened, before it is addressed to a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Normal or Warning.
    pub severity: Severity,
    /// `reason` (UpperCamelCase).
    pub reason: &'static str,
    /// `action`.
    pub action: &'static str,
    /// `note`: the message.
    pub note: String,
}

/// F49: `Add <ifName> [<cidr> <cidr>…] from <network>` (Go's `%v` of a string list), or
/// without ` from …` when the network has no name.
pub fn added_interface(interface: &str, cidrs: &[String], network: &str) -> Report {
    let list = format!("[{}]", cidrs.join(" "));
    let note = if network.is_empty() {
        format!("Add {interface} {list}")
    } else {
        format!("Add {interface} {list} from {network}")
    };
    Report {
        severity: Severity::Normal,
        reason: "AddedInterface",
        action: "AddInterface",
        note,
    }
}

/// F26: a NAD the pod asked for does not exist (or could not be read).
pub fn no_network_found(namespace: &str, name: &str, cause: &str) -> Report {
    Report {
        severity: Severity::Warning,
        reason: "NoNetworkFound",
        action: "ResolveNetworks",
        note: format!(
            "cannot find a network-attachment-definition ({name}) in namespace ({namespace}): {cause}"
        ),
    }
}

/// Attaching a network to the pod failed.
pub fn attach_failed(network: &str, interface: &str, cause: &str) -> Report {
    let target = match (network.is_empty(), interface.is_empty()) {
        (true, _) => "the pod's networks".to_string(),
        (false, true) => format!("network {network}"),
        (false, false) => format!("network {network} (interface {interface})"),
    };
    Report {
        severity: Severity::Warning,
        reason: "AttachInterfaceFailed",
        action: "AddInterface",
        note: format!("attaching {target} failed: {cause}"),
    }
}

/// Removing an interface the annotation no longer asks for failed (it is retried).
pub fn detach_failed(network: &str, interface: &str, cause: &str) -> Report {
    Report {
        severity: Severity::Warning,
        reason: "DetachInterfaceFailed",
        action: "RemoveInterface",
        note: format!("removing {interface} (network {network}) failed: {cause}"),
    }
}

/// The annotation no longer asks for an interface plexus will not remove (one that was there
/// when plexus adopted the pod).
pub fn detach_refused(network: &str, interface: &str, why: &str) -> Report {
    Report {
        severity: Severity::Warning,
        reason: "DetachInterfaceRefused",
        action: "RemoveInterface",
        note: format!("not removing {interface} (network {network}): {why}"),
    }
}

/// The events.k8s.io/v1 Event for `report` about `pod`, named `name`, reported by
/// `instance` at `at`.
pub fn build(report: &Report, pod: &PodKey, name: String, instance: &str, at: Timestamp) -> Event {
    Event {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(pod.namespace.clone()),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(at)),
        reporting_controller: Some(CONTROLLER.to_string()),
        reporting_instance: Some(truncate(instance, MAX_FIELD)),
        action: Some(truncate(report.action, MAX_FIELD)),
        reason: Some(truncate(report.reason, MAX_FIELD)),
        type_: Some(
            match report.severity {
                Severity::Normal => "Normal",
                Severity::Warning => "Warning",
            }
            .to_string(),
        ),
        note: Some(truncate(&report.note, MAX_NOTE)),
        regarding: Some(ObjectReference {
            api_version: Some("v1".to_string()),
            kind: Some("Pod".to_string()),
            namespace: Some(pod.namespace.clone()),
            name: Some(pod.name.clone()),
            uid: Some(pod.uid.clone()),
            ..ObjectReference::default()
        }),
        ..Event::default()
    }
}

/// An event name: `<pod name>.<hex nanoseconds><hex sequence>`, a DNS subdomain of at most
/// 253 characters (the pod name part is cut and trimmed to end in a letter or digit).
pub fn event_name(pod: &str, at: Timestamp, seq: u64) -> String {
    let suffix = format!("{:x}{:x}", at.as_nanosecond().max(0), seq);
    let keep = 253 - 1 - suffix.len();
    let mut head = truncate(pod, keep);
    while head.ends_with(['-', '.']) {
        head.pop();
    }
    if head.is_empty() {
        head.push_str(CONTROLLER);
    }
    format!("{head}.{suffix}")
}

/// At most `max` bytes, cut at a character boundary.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// Records pod events asynchronously. Cheap to clone; the worker stops when the last clone is
/// dropped.
#[derive(Clone)]
pub struct Recorder {
    outbox: Outbox<EventJob>,
    instance: Arc<str>,
    seq: Arc<AtomicU64>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("instance", &self.instance)
            .field("stats", &self.outbox.stats())
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// Starts the worker (inside a tokio runtime); events are reported by `plexus-<node>`.
    pub fn start(client: kube::Client, node: &str) -> Self {
        Self::start_with(client, node, DEFAULT_CAPACITY, RetryPolicy::default())
    }

    /// Starts the worker with a capacity and a backoff policy.
    pub fn start_with(
        client: kube::Client,
        node: &str,
        capacity: usize,
        policy: RetryPolicy,
    ) -> Self {
        Self {
            outbox: Outbox::start(client, capacity, policy, "events"),
            instance: Arc::from(format!("{CONTROLLER}-{node}")),
            seq: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Queues `report` about `pod`; false when the queue is full (the event is dropped and
    /// logged).
    pub fn record(&self, pod: &PodKey, report: &Report) -> bool {
        let at = Timestamp::now();
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let name = event_name(&pod.name, at, seq);
        let event = build(report, pod, name.clone(), &self.instance, at);
        let job = EventJob {
            namespace: Arc::from(pod.namespace.as_str()),
            event: Arc::new(event),
        };
        self.outbox.push(format!("{}/{name}", pod.namespace), job)
    }

    /// The queue's counters.
    pub fn stats(&self) -> QueueStats {
        self.outbox.stats()
    }

    /// Retries everything now.
    pub fn resume(&self) {
        self.outbox.resume();
    }
}

#[derive(Debug, Clone)]
struct EventJob {
    namespace: Arc<str>,
    event: Arc<Event>,
}

/// The request: `POST /apis/events.k8s.io/v1/namespaces/{ns}/events`.
fn create_request(namespace: &str, event: &Event) -> Result<http::Request<Vec<u8>>, String> {
    let body = serde_json::to_vec(event).map_err(|e| e.to_string())?;
    kube::core::Request::new(format!(
        "/apis/events.k8s.io/v1/namespaces/{namespace}/events"
    ))
    .create(&PostParams::default(), body)
    .map_err(|e| e.to_string())
}

/// The outcome of an event create's answer.
pub(crate) fn classify(namespace: &str, answer: &request::Answer) -> Outcome {
    match answer.code {
        // Created by an earlier attempt whose answer was lost.
        409 => return Outcome::Delivered,
        403 => {
            let err = Error::Forbidden {
                verb: "create",
                resource: "events.events.k8s.io",
                scope: crate::error::scope(Some(namespace)),
                message: answer.message.clone(),
            };
            tracing::error!(error = %err, "cannot record a pod event");
            return Outcome::Dropped(err.to_string());
        }
        _ => {}
    }
    if let Some(outcome) = request::retry_class(answer) {
        return outcome;
    }
    Outcome::Dropped(format!(
        "the API server refused the event ({}): {}",
        answer.code, answer.message
    ))
}

impl Job for EventJob {
    async fn deliver(&self, client: &kube::Client) -> Outcome {
        let request = match create_request(&self.namespace, &self.event) {
            Ok(r) => r,
            Err(e) => return Outcome::Dropped(format!("cannot build the event: {e}")),
        };
        match request::send(client, request).await {
            Ok(answer) => classify(&self.namespace, &answer),
            Err(e) => request::unreachable(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodKey {
        PodKey {
            namespace: "default".to_string(),
            name: "web-0".to_string(),
            uid: "0b7c1f4e-1111-2222-3333-444455556666".to_string(),
        }
    }

    #[test]
    fn added_interface_has_multus_s_message() {
        let r = added_interface(
            "net1",
            &["10.1.1.5/24".to_string(), "fd00::5/64".to_string()],
            "default/macvlan-conf",
        );
        assert_eq!(
            r.note,
            "Add net1 [10.1.1.5/24 fd00::5/64] from default/macvlan-conf"
        );
        assert_eq!((r.severity, r.reason), (Severity::Normal, "AddedInterface"));
        assert_eq!(added_interface("eth0", &[], "").note, "Add eth0 []");
    }

    #[test]
    fn no_network_found_has_multus_s_message() {
        let r = no_network_found("ns1", "missing", "not found");
        assert_eq!(
            r.note,
            "cannot find a network-attachment-definition (missing) in namespace (ns1): not found"
        );
        assert_eq!(
            (r.severity, r.reason),
            (Severity::Warning, "NoNetworkFound")
        );
    }

    #[test]
    fn attach_failed_names_network_interface_and_cause() {
        let r = attach_failed("default/br", "net2", "link br0 not found");
        assert_eq!(
            r.note,
            "attaching network default/br (interface net2) failed: link br0 not found"
        );
        assert_eq!(r.severity, Severity::Warning);
    }

    #[test]
    fn the_event_refers_to_the_pod_by_uid_and_fills_every_required_field() {
        let at: Timestamp = "2026-12-04T21:00:00.123456789Z".parse().unwrap();
        let e = build(
            &added_interface("net1", &[], "default/a"),
            &pod(),
            "web-0.abc".to_string(),
            "plexus-node-1",
            at,
        );
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["apiVersion"], "events.k8s.io/v1");
        assert_eq!(v["kind"], "Event");
        assert_eq!(v["metadata"]["namespace"], "default");
        assert_eq!(v["eventTime"], "2026-12-04T21:00:00.123456Z");
        assert_eq!(v["reportingController"], "plexus");
        assert_eq!(v["reportingInstance"], "plexus-node-1");
        assert_eq!(v["type"], "Normal");
        assert_eq!(v["action"], "AddInterface");
        assert_eq!(
            v["regarding"],
            serde_json::json!({
                "apiVersion": "v1", "kind": "Pod", "namespace": "default",
                "name": "web-0", "uid": "0b7c1f4e-1111-2222-3333-444455556666"
            })
        );
    }

    #[test]
    fn long_notes_and_instances_are_cut_to_the_api_s_limits() {
        let long = "é".repeat(2000);
        let at = Timestamp::UNIX_EPOCH;
        let e = build(
            &attach_failed("n", "", &long),
            &pod(),
            "x.1".to_string(),
            &"i".repeat(300),
            at,
        );
        assert!(e.note.as_ref().unwrap().len() <= MAX_NOTE);
        assert_eq!(e.reporting_instance.unwrap().len(), MAX_FIELD);
    }

    #[test]
    fn event_names_are_dns_subdomains_even_for_the_longest_pod_names() {
        let at: Timestamp = "2026-12-04T21:00:00Z".parse().unwrap();
        let name = event_name(&format!("{}-{}", "a".repeat(200), "b".repeat(52)), at, 7);
        assert!(name.len() <= 253, "{}", name.len());
        assert!(crate::client::is_dns_subdomain(&name), "{name}");
        assert_ne!(event_name("p", at, 1), event_name("p", at, 2));
    }

    #[test]
    fn a_retried_create_that_already_landed_counts_as_delivered() {
        let answer = |code| request::Answer {
            code,
            retry_after: None,
            message: "m".to_string(),
        };
        assert_eq!(classify("default", &answer(409)), Outcome::Delivered);
        assert_eq!(classify("default", &answer(201)), Outcome::Delivered);
        assert!(matches!(
            classify("default", &answer(422)),
            Outcome::Dropped(_)
        ));
        assert!(matches!(
            classify("default", &answer(503)),
            Outcome::Retry { global: true, .. }
        ));
        let Outcome::Dropped(why) = classify("default", &answer(403)) else {
            panic!("403 drops the event");
        };
        assert!(
            why.starts_with(
                "forbidden: plexus needs `create` on `events.events.k8s.io` in namespace default"
            ),
            "{why}"
        );
    }
}

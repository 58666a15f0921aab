//! The hot-plug controller (Kubernetes mode): a level-driven loop that makes the secondary
//! attachments of every sandbox plexus recorded follow its pod's `k8s.v1.cni.cncf.io/networks`
//! annotation as this node's pod watch sees it.
//!
//! Each pass compares, per recorded sandbox whose pod the watch holds, the desired networks
//! (the parsed annotation) with the actual ones (the record's attachments of origin
//! `annotation`: made at pod start or by this controller; the runtime's primary, configured
//! default networks and direct Attach calls, origin `hotplug`, are never touched). Matching is by network identity, `namespace/name` plus the interface when the
//! annotation names one, so an unnamed `net3` can be removed and the names of untouched
//! attachments never change; a new unnamed network gets the next free `netN` (plexus-core's
//! hot-plug naming). Because every pass starts from the level, an edited annotation, a NAD
//! created late and a restart of plexusd all converge the same way. Besides the periodic pass,
//! a pass starts as soon as the pod watch sees a networks annotation change or the NAD cache
//! sees a NAD change ([`plexus_kube::PodWatch::changes`], [`plexus_kube::NadCache::changes`]),
//! and such a change makes every waiting retry due at once, so latency is not bound to the
//! tick or the backoff. Attach and detach go
//! through [`Node::attach`]/[`Node::detach`], so network-status and events follow through the
//! [`crate::kubernetes::bridge`]. A failing network is retried with backoff and reported as a
//! Warning event naming it; it never blocks the others.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use plexus_core::annotation::{self, NETWORKS, Selection};
use plexus_kube::event;
use tokio::time::Instant;

use crate::attacher::Attacher;
use crate::error::Error;
use crate::kubernetes::Cluster;
use crate::model::{AttachmentState, AttachmentView, SandboxView, Selector};
use crate::node::{ADOPTED_DRIVER, Node};
use crate::planner::Planner;

/// Why an adopted interface the annotation dropped stays.
const ADOPTED_WHY: &str = "it was there before plexus adopted this pod, and its maker holds its address and plugin state; it goes with the pod (recreate the pod to drop it)";

/// Timing of the controller.
#[derive(Debug, Clone, Copy)]
pub struct ControllerSettings {
    /// How often the level is compared (the pod watch is in memory: a pass costs no API
    /// request, only a read of the sandbox records).
    pub tick: Duration,
    /// First retry delay of a failing network; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Deadline of one attach or detach.
    pub op_timeout: Duration,
}

impl Default for ControllerSettings {
    /// A 500 ms pass, retries from 500 ms up to 30 s, 10 s per operation.
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(500),
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            op_timeout: Duration::from_secs(10),
        }
    }
}

/// One network the annotation asks for: its selection and the element's own text, which is
/// what a hot-plug of it is given.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    /// The parsed element.
    pub selection: Selection,
    /// The element as written (`ns/name@if` or a JSON object).
    pub text: String,
}

/// What one pass does to one sandbox.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    /// Elements to hot-plug, in annotation order.
    pub attach: Vec<Wanted>,
    /// Interfaces to hot-unplug.
    pub detach: Vec<String>,
}

/// The annotation's elements with their texts (the positions of
/// [`annotation::parse_networks`]).
pub fn desired(value: &str, pod_namespace: &str) -> plexus_core::Result<Vec<Wanted>> {
    let selections = annotation::parse_networks(value, pod_namespace)?;
    let trimmed = value.trim();
    let texts: Vec<String> = if trimmed.starts_with('[') {
        // parse_networks accepted it, so it is a JSON list of objects.
        match serde_json::from_str::<Vec<serde_json::Value>>(trimmed) {
            Ok(items) => items.iter().map(|v| v.to_string()).collect(),
            Err(_) => Vec::new(),
        }
    } else {
        trimmed
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    if texts.len() != selections.len() {
        return Err(plexus_core::Error::InvalidAnnotation {
            annotation: NETWORKS.to_string(),
            reason: format!(
                "{} elements parsed but {} found when splitting the value for hot-plug",
                selections.len(),
                texts.len()
            ),
        });
    }
    Ok(selections
        .into_iter()
        .zip(texts)
        .map(|(selection, text)| Wanted { selection, text })
        .collect())
}

/// True for an attachment the controller manages: one from the annotation (at pod start or
/// hot-plugged by the controller), never the primary. Attachments made through the node
/// API's Attach (`plexusctl attach --direct`, origin `hotplug`) are left alone: they are not
/// in the annotation, and removing them is for Detach.
pub fn managed(a: &AttachmentView) -> bool {
    !a.primary && a.origin == "annotation"
}

/// Pairs each wanted element with the managed attachment it accounts for (an index into
/// `managed`), by network identity: named elements match the attachment of that network
/// and interface first; unnamed ones then take any remaining attachment of their network,
/// in order.
pub fn pair(wanted: &[Wanted], managed: &[&AttachmentView]) -> Vec<Option<usize>> {
    let mut taken = vec![false; managed.len()];
    let mut matched = vec![None; wanted.len()];
    for named in [true, false] {
        for (w, m) in wanted.iter().zip(matched.iter_mut()) {
            if m.is_some() || w.selection.interface.is_some() != named {
                continue;
            }
            let network = w.selection.network();
            let fits = |a: &AttachmentView| {
                a.network == network
                    && w.selection
                        .interface
                        .as_ref()
                        .is_none_or(|i| a.interface == *i)
            };
            if let Some(i) = (0..managed.len()).find(|&i| !taken[i] && fits(managed[i])) {
                taken[i] = true;
                *m = Some(i);
            }
        }
    }
    matched
}

/// Compares desired and actual by network identity ([`pair`]): what is wanted and unpaired
/// is attached, what is managed and unpaired is detached.
pub fn diff(wanted: &[Wanted], actual: &[AttachmentView]) -> Changes {
    let actual: Vec<&AttachmentView> = actual.iter().filter(|a| managed(a)).collect();
    let matched = pair(wanted, &actual);
    Changes {
        attach: wanted
            .iter()
            .zip(&matched)
            .filter(|(_, m)| m.is_none())
            .map(|(w, _)| w.clone())
            .collect(),
        detach: actual
            .iter()
            .enumerate()
            .filter(|(i, _)| !matched.contains(&Some(*i)))
            .map(|(_, a)| a.interface.clone())
            .collect(),
    }
}

#[derive(Debug)]
struct Retry {
    delay: Duration,
    next: Instant,
    cause: String,
}

/// Failing operations by `(sandbox, "attach|detach <what>")`.
#[derive(Debug, Default)]
struct Backoff(HashMap<(String, String), Retry>);

impl Backoff {
    /// Something changed (annotation, NAD): every waiting retry is due now; the delays are
    /// kept, so a network that still fails goes on backing off.
    fn wake(&mut self, now: Instant) {
        for r in self.0.values_mut() {
            r.next = now;
        }
    }

    fn due(&self, key: &(String, String), now: Instant) -> bool {
        self.0.get(key).is_none_or(|r| r.next <= now)
    }

    /// Records a failure; true when its cause is new (worth an event).
    fn failed(&mut self, key: (String, String), cause: String, s: &ControllerSettings) -> bool {
        let now = Instant::now();
        match self.0.get_mut(&key) {
            Some(r) => {
                r.delay = (r.delay * 2).min(s.max_backoff);
                r.next = now + r.delay;
                let new = r.cause != cause;
                r.cause = cause;
                new
            }
            None => {
                self.0.insert(
                    key,
                    Retry {
                        delay: s.min_backoff,
                        next: now + s.min_backoff,
                        cause,
                    },
                );
                true
            }
        }
    }
}

/// Starts the controller; it ends when the node is gone.
pub fn start<A: Attacher, P: Planner>(
    node: &Arc<Node<A, P>>,
    cluster: Arc<Cluster>,
    settings: ControllerSettings,
) -> tokio::task::JoinHandle<()> {
    let node = Arc::downgrade(node);
    // Everything the controller does is counted under its own entry point.
    tokio::spawn(crate::entry::scope(
        crate::entry::Path::Controller,
        async move {
            let mut backoff = Backoff::default();
            let mut ticker = tokio::time::interval(settings.tick);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut pods = cluster.pods.changes();
            let mut nads = cluster.nads.changes();
            loop {
                // A closed channel (its watch ended) leaves the tick alone in charge.
                let changed = tokio::select! {
                    _ = ticker.tick() => false,
                    Ok(()) = pods.changed() => true,
                    Ok(()) = nads.changed() => true,
                };
                if changed {
                    pods.mark_unchanged();
                    nads.mark_unchanged();
                    backoff.wake(Instant::now());
                    // The next periodic pass counts from this one.
                    ticker.reset();
                }
                if !pass(&node, &cluster, &settings, &mut backoff).await {
                    return;
                }
            }
        },
    ))
}

/// One pass over every recorded sandbox; false once the node is gone.
async fn pass<A: Attacher, P: Planner>(
    node: &Weak<Node<A, P>>,
    cluster: &Cluster,
    settings: &ControllerSettings,
    backoff: &mut Backoff,
) -> bool {
    let Some(node) = node.upgrade() else {
        return false;
    };
    if !cluster.pods.synced() {
        return true;
    }
    // The records are files: read them off the async workers.
    let reader = Arc::clone(&node);
    let listed = tokio::task::spawn_blocking(move || reader.list(&Selector::All)).await;
    let sandboxes = match listed {
        Ok(Ok(s)) => s,
        Err(err) => {
            tracing::warn!(error = %err, "hot-plug controller: listing sandboxes");
            return true;
        }
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "hot-plug controller: listing sandboxes");
            return true;
        }
    };
    let live: Vec<String> = sandboxes.iter().map(|s| s.sandbox_id.to_string()).collect();
    backoff.0.retain(|(id, _), _| live.contains(id));
    for sandbox in sandboxes {
        converge(&node, cluster, settings, backoff, sandbox).await;
    }
    true
}

async fn converge<A: Attacher, P: Planner>(
    node: &Arc<Node<A, P>>,
    cluster: &Cluster,
    settings: &ControllerSettings,
    backoff: &mut Backoff,
    sandbox: SandboxView,
) {
    // A sandbox being set up or changed is looked at again on the next pass.
    if node.busy(sandbox.sandbox_id.as_str())
        || sandbox
            .attachments
            .iter()
            .any(|a| a.state != AttachmentState::Attached)
    {
        return;
    }
    let Some(pod) = cluster.pods.get(&sandbox.pod.namespace, &sandbox.pod.name) else {
        return;
    };
    if !sandbox.pod.uid.is_empty() && !pod.uid.is_empty() && sandbox.pod.uid != pod.uid {
        return; // a newer pod of the same name; this record is a stale sandbox
    }
    let id = sandbox.sandbox_id.to_string();
    let value = pod.annotations.get(NETWORKS).map_or("", String::as_str);
    let wanted = match desired(value, &pod.namespace) {
        Ok(w) => w,
        Err(err) => {
            // Never act on an annotation that does not parse: nothing is detached.
            let key = (id, "annotation".to_string());
            if backoff.due(&key, Instant::now())
                && backoff.failed(key, err.to_string(), settings)
                && let Some(k) = cluster.pod_key(&sandbox.pod)
            {
                cluster
                    .recorder
                    .record(&k, &event::attach_failed("", "", &err.to_string()));
            }
            return;
        }
    };
    backoff.0.remove(&(id.clone(), "annotation".to_string()));
    let changes = diff(&wanted, &sandbox.attachments);
    let target = || Selector::Sandbox(sandbox.sandbox_id.clone());
    for interface in changes.detach {
        // A recorded name is valid; one that is not cannot be detached by name.
        let Ok(interface) = plexus_core::InterfaceName::new(interface) else {
            continue;
        };
        if let Some(a) = sandbox
            .attachments
            .iter()
            .find(|a| a.interface == interface && a.driver == ADOPTED_DRIVER)
        {
            // Said once per interface while the pod lives.
            let key = (id.clone(), format!("adopted {interface}"));
            if !backoff.0.contains_key(&key)
                && backoff.failed(key, String::new(), settings)
                && let Some(k) = cluster.pod_key(&sandbox.pod)
            {
                cluster.recorder.record(
                    &k,
                    &event::detach_refused(&a.network, &interface, ADOPTED_WHY),
                );
            }
            continue;
        }
        let key = (id.clone(), format!("detach {interface}"));
        if !backoff.due(&key, Instant::now()) {
            continue;
        }
        match node
            .detach_unwanted(target(), interface.clone(), Some(settings.op_timeout))
            .await
        {
            Ok(_) => {
                backoff.0.remove(&key);
            }
            Err(err) => {
                tracing::warn!(pod = %sandbox.pod, %interface, error = %err, "hot-unplug failed; retried");
                // Once per distinct cause, as for attaches.
                if backoff.failed(key, err.to_string(), settings)
                    && let Some(k) = cluster.pod_key(&sandbox.pod)
                {
                    let network = sandbox
                        .attachments
                        .iter()
                        .find(|a| a.interface == interface)
                        .map_or("", |a| a.network.as_str());
                    cluster.recorder.record(
                        &k,
                        &event::detach_failed(network, &interface, &err.to_string()),
                    );
                }
            }
        }
    }
    for w in changes.attach {
        let network = w.selection.network();
        let iface = w.selection.interface.as_deref().unwrap_or_default();
        let key = (
            id.clone(),
            format!("attach {} {network}@{iface}", w.selection.position),
        );
        if !backoff.due(&key, Instant::now()) {
            continue;
        }
        match node
            .attach_wanted(target(), w.text.clone(), Some(settings.op_timeout))
            .await
        {
            Ok(_) => {
                backoff.0.remove(&key);
            }
            Err(err) => {
                let cause = err.to_string();
                tracing::warn!(pod = %sandbox.pod, %network, error = %cause, "hot-plug failed; retried");
                // A failure of the executor is already a pod event through the bridge (its
                // cause names the network); resolution failures happen before it and are
                // reported here, once per distinct cause.
                let resolution = matches!(err, Error::Resolve { .. });
                if backoff.failed(key, cause.clone(), settings)
                    && resolution
                    && let Some(k) = cluster.pod_key(&sandbox.pod)
                {
                    cluster
                        .recorder
                        .record(&k, &event::attach_failed(&network, iface, &cause));
                }
            }
        }
    }
}

pub mod edit;

#[cfg(test)]
mod tests;

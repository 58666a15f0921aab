//! Pure conversions from NRI's `PodSandbox` to node API requests. The edge forwards facts
//! (identity, sandbox id, netns path, annotations, labels) and decides nothing, with one
//! documented exception: [`needs_nothing`].

use plexus_proto::nri::PodSandbox;
use plexus_proto::v1::{PodRef, ReconcileRequest, SetupPodRequest, TeardownPodRequest};

/// Pod annotation holding the pod's secondary networks (Multus grammar).
pub const NETWORKS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/networks";
/// Pod annotation overriding the pod's default network (Multus).
pub const DEFAULT_NETWORK_ANNOTATION: &str = "v1.multus-cni.io/default-network";

/// The pod's network namespace path; `None` for host-network pods and for events that
/// carry no namespaces (containerd 1.7's StopPodSandbox).
pub fn netns_path(pod: &PodSandbox) -> Option<&str> {
    pod.linux
        .as_ref()?
        .namespaces
        .iter()
        .find(|ns| ns.r#type == "network" && !ns.path.is_empty())
        .map(|ns| ns.path.as_str())
}

/// The only decision the edge takes: a pod without a netns (host network) and without
/// any network annotation cannot get a secondary interface, so RunPodSandbox answers at
/// once without asking plexusd. Multus never runs for host-network pods either.
pub fn needs_nothing(pod: &PodSandbox) -> bool {
    netns_path(pod).is_none()
        && !pod.annotations.contains_key(NETWORKS_ANNOTATION)
        && !pod.annotations.contains_key(DEFAULT_NETWORK_ANNOTATION)
}

/// `namespace/name` for logs and error messages.
pub fn pod_label(pod: &PodSandbox) -> String {
    format!("{}/{}", pod.namespace, pod.name)
}

fn pod_ref(pod: &PodSandbox) -> PodRef {
    PodRef {
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        uid: pod.uid.clone(),
    }
}

/// The SetupPod request for a RunPodSandbox event.
pub fn setup_request(pod: &PodSandbox) -> SetupPodRequest {
    SetupPodRequest {
        pod: Some(pod_ref(pod)),
        sandbox_id: pod.id.clone(),
        netns_path: netns_path(pod).unwrap_or_default().to_owned(),
        annotations: pod.annotations.clone(),
        labels: pod.labels.clone(),
        may_finish_later: false,
    }
}

/// Largest `live_pods` a Reconcile carries (encoded); past it the pods are sent as ids only
/// and nothing is adopted, so a node with many annotated pods never makes the Reconcile
/// itself too large to be received.
pub const MAX_LIVE_PODS_BYTES: usize = 1024 * 1024;

/// The Reconcile for a Synchronize's pods: every id, and the facts of each pod with a netns
/// (for adoption by plexusd).
pub fn reconcile_request(pods: &[PodSandbox]) -> ReconcileRequest {
    let live_pods: Vec<SetupPodRequest> = pods
        .iter()
        .filter(|p| !needs_nothing(p))
        .map(setup_request)
        .collect();
    let size: usize = live_pods.iter().map(prost::Message::encoded_len).sum();
    let live_pods = if size > MAX_LIVE_PODS_BYTES {
        tracing::warn!(
            pods = live_pods.len(),
            bytes = size,
            limit = MAX_LIVE_PODS_BYTES,
            "live pods too large to send for adoption; reconciling by id only"
        );
        Vec::new()
    } else {
        live_pods
    };
    ReconcileRequest {
        live_sandbox_ids: pods.iter().map(|p| p.id.clone()).collect(),
        live_pods,
        // Synchronize is the runtime's whole list: no pods means none is alive.
        all_listed: true,
    }
}

/// The TeardownPod request for a Stop/RemovePodSandbox event; plexusd's recorded state
/// is authoritative, the netns path is sent only when the event carries one.
/// containerd removes the pod's netns right after StopPodSandbox (and it is gone by
/// RemovePodSandbox), so plexusd may delete the links in it after answering.
pub fn teardown_request(pod: &PodSandbox) -> TeardownPodRequest {
    TeardownPodRequest {
        sandbox_id: pod.id.clone(),
        pod: Some(pod_ref(pod)),
        netns_path: netns_path(pod).unwrap_or_default().to_owned(),
        netns_removed_after: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_proto::nri::{LinuxNamespace, LinuxPodSandbox};

    fn pod(netns: Option<&str>, annotations: &[(&str, &str)]) -> PodSandbox {
        let mut namespaces = vec![LinuxNamespace {
            r#type: "pid".into(),
            path: String::new(),
        }];
        if let Some(path) = netns {
            namespaces.push(LinuxNamespace {
                r#type: "network".into(),
                path: path.into(),
            });
        }
        PodSandbox {
            id: "abc123".into(),
            name: "web".into(),
            uid: "uid-1".into(),
            namespace: "prod".into(),
            annotations: annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            labels: [("app".to_owned(), "web".to_owned())].into(),
            linux: Some(LinuxPodSandbox {
                namespaces,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn netns_path_is_the_network_namespace() {
        assert_eq!(
            netns_path(&pod(Some("/var/run/netns/cni-1"), &[])),
            Some("/var/run/netns/cni-1")
        );
        assert_eq!(netns_path(&pod(None, &[])), None);
        assert_eq!(netns_path(&PodSandbox::default()), None);
    }

    #[test]
    fn only_host_network_pods_without_annotations_need_nothing() {
        assert!(needs_nothing(&pod(None, &[])));
        assert!(!needs_nothing(&pod(Some("/var/run/netns/x"), &[])));
        assert!(!needs_nothing(&pod(None, &[(NETWORKS_ANNOTATION, "a")])));
        assert!(!needs_nothing(&pod(
            None,
            &[(DEFAULT_NETWORK_ANNOTATION, "b")]
        )));
    }

    #[test]
    fn setup_request_forwards_every_fact() {
        let p = pod(
            Some("/var/run/netns/cni-1"),
            &[(NETWORKS_ANNOTATION, "iot")],
        );
        let req = setup_request(&p);
        assert_eq!(req.sandbox_id, "abc123");
        assert_eq!(req.netns_path, "/var/run/netns/cni-1");
        let r = req.pod.expect("pod ref");
        assert_eq!((r.namespace.as_str(), r.name.as_str()), ("prod", "web"));
        assert_eq!(r.uid, "uid-1");
        assert_eq!(req.annotations[NETWORKS_ANNOTATION], "iot");
        assert_eq!(req.labels["app"], "web");
        assert_eq!(pod_label(&p), "prod/web");
    }

    #[test]
    fn teardown_request_without_netns_sends_empty_path() {
        let req = teardown_request(&pod(None, &[]));
        assert_eq!(req.sandbox_id, "abc123");
        assert_eq!(req.netns_path, "");
        assert_eq!(req.pod.expect("pod ref").name, "web");
    }

    #[test]
    fn reconcile_request_carries_every_id_and_the_pods_with_a_netns() {
        let mut host = pod(None, &[]);
        host.id = "host".into();
        let r = reconcile_request(&[pod(Some("/n/a"), &[("k", "v")]), host]);
        assert_eq!(r.live_sandbox_ids, ["abc123", "host"]);
        assert_eq!(r.live_pods.len(), 1);
        assert_eq!(
            r.live_pods[0],
            setup_request(&pod(Some("/n/a"), &[("k", "v")]))
        );
    }

    #[test]
    fn pods_too_large_for_adoption_are_sent_as_ids_only() {
        let big = "x".repeat(MAX_LIVE_PODS_BYTES / 4);
        let pods: Vec<PodSandbox> = (0..5)
            .map(|i| {
                let mut p = pod(Some("/n/a"), &[("k", &big)]);
                p.id = format!("p{i}");
                p
            })
            .collect();
        let r = reconcile_request(&pods);
        assert_eq!(r.live_sandbox_ids.len(), 5);
        assert!(r.live_pods.is_empty());
    }
}

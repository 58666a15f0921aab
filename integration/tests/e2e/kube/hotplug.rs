//! Hot-plug from the pod annotation (issue 12), on the private containerd with the fake API:
//! a running pod's `k8s.v1.cni.cncf.io/networks` is merge-patched and its interfaces follow —
//! an added network appears inside the pod's netns and in network-status, a failing one (no
//! master) is a Warning event while the others attach, a NAD created after the annotation asked
//! for it is attached then, and a removed unnamed interface (`plexusctl detach --pod`, which
//! edits the annotation) goes while the others keep their names. With namespace isolation on, a change made while plexusd was down converges after
//! its restart, and a network of another namespace is refused by the annotation (Warning) and
//! by gRPC Attach (PERMISSION_DENIED). A pod started before plexus is adopted through NRI
//! Synchronize, untouched, and a later `plexusctl attach --pod` (an annotation edit) is acted
//! on. Each wait is bounded; no timing is asserted.

use std::time::Duration;

use plexus_integration::env::{BRIDGE, MACVLAN, NAMESPACE, NO_MASTER};
use plexus_integration::{Nad, Pod, PodSpec, require_privileged};
use plexus_kube_fake::Resource;
use serde_json::{Value, json};

use super::{KubeEnv, PROMPT};
use crate::common::{eventually, wait_nothing_left};

/// Longest wait for the controller to act on a change (it is woken by the pod watch).
const HOTPLUG: Duration = Duration::from_secs(5);

fn annotate(k: &KubeEnv, pod: &Pod, networks: &str) {
    k.api
        .merge_patch(
            Resource::Pod,
            &pod.namespace,
            &pod.name,
            &json!({"metadata": {"annotations": {"k8s.v1.cni.cncf.io/networks": networks}}}),
        )
        .unwrap_or_else(|e| panic!("patching {}/{}: {e}", pod.namespace, pod.name));
}

pub(super) fn names(pod: &Pod) -> Vec<String> {
    let mut n: Vec<String> = pod
        .interfaces()
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .filter(|n| n != "lo")
        .collect();
    n.sort();
    n
}

/// Waits until the pod's netns holds exactly `want` (besides lo).
pub(super) async fn wait_interfaces(pod: &Pod, want: &[&str]) {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    let what = format!(
        "interfaces {want:?} in pod {} (now {:?})",
        pod.name,
        names(pod)
    );
    eventually(&what, HOTPLUG, || async { names(pod) == want }).await;
}

/// Waits until network-status lists exactly these `(network, interface)` pairs besides eth0.
pub(super) async fn wait_status(k: &KubeEnv, pod: &Pod, want: &[(&str, &str)]) {
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(n, i)| (n.to_string(), i.to_string()))
        .collect();
    let listed = || {
        let text = k.api.network_status(pod).unwrap_or_default();
        let parsed: Vec<Value> = serde_json::from_str(&text).unwrap_or_default();
        parsed
            .iter()
            .filter(|e| e["interface"] != "eth0")
            .map(|e| {
                let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
                (s("name"), s("interface"))
            })
            .collect::<Vec<_>>()
    };
    let what = format!("network-status of {} listing {want:?}", pod.name);
    eventually(&what, PROMPT, || async { listed() == want }).await;
}

/// Waits for a Warning about the pod whose note contains every one of `needles`.
async fn wait_warning(k: &KubeEnv, pod: &Pod, uid: &str, needles: &[&str]) {
    let found = || {
        k.api
            .events(&pod.namespace, uid, "AttachInterfaceFailed")
            .into_iter()
            .filter_map(|e| e["note"].as_str().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    let what = format!("a Warning about {} naming {needles:?}", pod.name);
    eventually(&what, PROMPT, || async {
        found()
            .iter()
            .any(|n| needles.iter().all(|w| n.contains(w)))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_hotplug_follows_the_annotation_of_a_running_pod() {
    if !require_privileged() {
        return;
    }
    let k = KubeEnv::start().await;
    let (pod, spec) = k
        .run_pod(&PodSpec::new(NAMESPACE, "hp-a").networks(MACVLAN))
        .await
        .unwrap();
    wait_interfaces(&pod, &["eth0", "net1"]).await;
    let mac1 = pod.interface("net1").unwrap().mac;

    // Added: the bridge network (net2); the one without master fails and is said so; `late`
    // has no NAD yet.
    let late = "hp-late";
    annotate(&k, &pod, &format!("{MACVLAN},{BRIDGE},{NO_MASTER},{late}"));
    wait_interfaces(&pod, &["eth0", "net1", "net2"]).await;
    let ns = |n: &str| format!("{NAMESPACE}/{n}");
    let (m, b, l) = (ns(MACVLAN), ns(BRIDGE), ns(late));
    wait_status(&k, &pod, &[(&m, "net1"), (&b, "net2")]).await;
    wait_warning(&k, &pod, &spec.uid, &[NO_MASTER]).await;
    wait_warning(&k, &pod, &spec.uid, &[late]).await;

    // The NAD appears: attached then, as net3.
    let ipam = k.env.plexus.paths().ipam_dir.clone();
    let bridge = format!("pxh{}", std::process::id() % 100_000);
    k.api
        .create_nad(&Nad::bridge(
            NAMESPACE,
            late,
            &bridge,
            "10.245.9.0/24",
            &ipam,
        ))
        .unwrap();
    wait_interfaces(&pod, &["eth0", "net1", "net2", "net3"]).await;
    let addr = pod.interface("net3").unwrap().addresses;
    assert!(addr.iter().any(|a| a.starts_with("10.245.9.")), "{addr:?}");

    // The unnamed net2 is removed — with `plexusctl detach --pod`, which has plexusd patch
    // the annotation — and net1 and net3 keep their names (and net1 its MAC).
    let target = format!("{}/{}", pod.namespace, pod.name);
    let said = k
        .env
        .plexus
        .plexusctl(&["detach", "--pod", &target, "net2"])
        .unwrap();
    assert!(said.contains("hot-plug controller"), "{said}");
    let patched = k.api.get(Resource::Pod, NAMESPACE, &pod.name).unwrap();
    assert_eq!(
        patched.pointer("/metadata/annotations/k8s.v1.cni.cncf.io~1networks"),
        Some(&json!(format!("{MACVLAN},{NO_MASTER},{late}")))
    );
    wait_interfaces(&pod, &["eth0", "net1", "net3"]).await;
    assert_eq!(pod.interface("net1").unwrap().mac, mac1);
    wait_status(&k, &pod, &[(&m, "net1"), (&l, "net3")]).await;

    k.env.containerd.delete_pod(&pod).await.unwrap();
    wait_nothing_left(&k.env, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_hotplug_converges_after_a_restart_and_obeys_namespace_isolation() {
    if !require_privileged() {
        return;
    }
    let mut k = KubeEnv::start().await;
    // A namespace of its own with a network of its own.
    let apps = "hp-apps";
    let ipam = k.env.plexus.paths().ipam_dir.clone();
    let bridge = format!("pxi{}", std::process::id() % 100_000);
    k.api
        .create_nad(&Nad::bridge(apps, "own", &bridge, "10.245.10.0/24", &ipam))
        .unwrap();
    let (pod, spec) = k.run_pod(&PodSpec::new(apps, "hp-iso")).await.unwrap();
    wait_interfaces(&pod, &["eth0"]).await;

    // plexusd goes down; isolation is switched on (`default` no longer global) and the
    // annotation asks for the pod's own network and one of `default` meanwhile.
    k.env.plexus.stop_plexusd();
    let config = k.env.plexus.paths().config.clone();
    let mut yaml = std::fs::read_to_string(&config).unwrap();
    yaml.push_str("namespaceIsolation: true\nglobalNamespaces: kube-system\n");
    std::fs::write(&config, yaml).unwrap();
    annotate(&k, &pod, &format!("own,{NAMESPACE}/{MACVLAN}"));
    k.env.plexus.start_plexusd().await.unwrap();

    wait_interfaces(&pod, &["eth0", "net1"]).await;
    let want = format!("{apps}/own");
    wait_status(&k, &pod, &[(&want, "net1")]).await;
    let other = format!("{NAMESPACE}/{MACVLAN}");
    wait_warning(
        &k,
        &pod,
        &spec.uid,
        &[
            &other,
            "namespace isolation",
            apps,
            "target namespace default",
        ],
    )
    .await;

    // gRPC Attach is held to the same rule.
    let mut client = k.env.plexus.client().await.unwrap();
    let err = client
        .attach(plexus_proto::v1::AttachRequest {
            target: Some(plexus_proto::v1::PodSelector {
                sandbox_id: pod.id.clone(),
                pod: None,
            }),
            selection: other.clone(),
            via_annotation: false,
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::PermissionDenied,
        "{}",
        err.message()
    );
    assert!(
        err.message().contains(apps) && err.message().contains("target namespace default"),
        "{}",
        err.message()
    );
    assert_eq!(names(&pod), ["eth0", "net1"]);

    k.env.containerd.delete_pod(&pod).await.unwrap();
    wait_nothing_left(&k.env, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_hotplug_a_pod_started_before_plexus_is_adopted_and_follows_later_edits() {
    if !require_privileged() {
        return;
    }
    let mut k = KubeEnv::start().await;
    // plexus is not there yet: the pod gets the runtime's eth0 only.
    k.env.plexus.stop_nri();
    k.env.plexus.stop_plexusd();
    let (pod, _) = k.run_pod(&PodSpec::new(NAMESPACE, "hp-old")).await.unwrap();
    let eth0 = pod.interface("eth0").unwrap();
    k.env.plexus.start_plexusd().await.unwrap();
    k.env.plexus.start_nri().await.unwrap();
    // NRI's Synchronize lists it; plexusd adopts it as it is.
    let id = pod.id.clone();
    let plexus = &k.env.plexus;
    eventually("the pod to be adopted", PROMPT, || async {
        plexus
            .attachments_of(&id)
            .await
            .is_ok_and(|a| a.iter().any(|a| a.interface == "eth0"))
    })
    .await;
    assert_eq!(names(&pod), ["eth0"]);
    assert_eq!(
        pod.interface("eth0").unwrap(),
        eth0,
        "adoption touched eth0"
    );

    // The later edit through plexusctl, which has plexusd patch the annotation.
    attach_by_annotation_then_delete(&k, &pod).await;
}

/// The later edit of an adopted pod: `plexusctl attach --pod` has plexusd patch the
/// annotation, the controller attaches net1 and network-status lists it; then the pod is
/// deleted and nothing is left.
pub(super) async fn attach_by_annotation_then_delete(k: &KubeEnv, pod: &Pod) {
    let target = format!("{}/{}", pod.namespace, pod.name);
    let said = k
        .env
        .plexus
        .plexusctl(&["attach", "--pod", &target, MACVLAN, "--output", "json"])
        .unwrap();
    let said: Value = serde_json::from_str(&said).unwrap();
    assert_eq!(
        said["annotation"]["k8s.v1.cni.cncf.io/networks"], MACVLAN,
        "{said}"
    );
    wait_interfaces(pod, &["eth0", "net1"]).await;
    let m = format!("{NAMESPACE}/{MACVLAN}");
    wait_status(k, pod, &[(&m, "net1")]).await;
    k.env.containerd.delete_pod(pod).await.unwrap();
    wait_nothing_left(&k.env, Duration::from_secs(5)).await;
}

//! One trace per pod event, end to end (issue 15): plexus-nri and plexusd on the private
//! containerd export to a real OTLP/gRPC collector (plexus-telemetry's test receiver, on a
//! loopback address inside containerd's network namespace, where the daemons run). For a
//! pod with a native network and an exec'd one, the trace is rooted at the NRI event, holds
//! plexusd's RPC below it and the documented attachment, native and plugin spans below
//! that, with the documented attributes and no error. For a pod whose second network fails,
//! ERROR status is on exactly the failing spans.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use plexus_integration::env::{MACVLAN, NAMESPACE};
use plexus_integration::{Env, Nad, PodSpec, containerd, plexus, require_privileged};
use plexus_telemetry::test_util::{OtlpReceiver, ReceivedSpan};
use serde_json::json;

/// A collector listening inside the network namespace at `netns`, served by a runtime whose
/// threads live there; stops when dropped.
struct Collector {
    receiver: OtlpReceiver,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Collector {
    fn start_in(netns: &Path) -> Collector {
        let ns = File::open(netns).unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            // This thread and its runtime serve the collector only and end with it.
            #[allow(clippy::disallowed_methods)]
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let _ = ready_tx.send(rt.block_on(OtlpReceiver::start()));
            let _ = stop_rx.recv();
            rt.shutdown_timeout(Duration::from_secs(1));
        });
        Collector {
            receiver: ready_rx.recv().unwrap(),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The root span (`nri RunPodSandbox`) of the pod `name`, once its trace holds `count` spans.
async fn trace_of(receiver: &OtlpReceiver, name: &str, count: usize) -> Vec<ReceivedSpan> {
    trace_with(receiver, name, count, &[]).await
}

/// Like [`trace_of`], and also waits for the spans named `needed` (the processes export
/// their batches independently, so a count alone can be reached without them).
async fn trace_with(
    receiver: &OtlpReceiver,
    name: &str,
    count: usize,
    needed: &[&str],
) -> Vec<ReceivedSpan> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let root = receiver.spans().into_iter().find(|s| {
            s.name == "nri RunPodSandbox"
                && s.attributes.get("k8s.pod.name").map(String::as_str) == Some(name)
        });
        if let Some(root) = root {
            let spans = receiver.trace(&root.trace_id);
            if spans.len() >= count && needed.iter().all(|n| spans.iter().any(|s| s.name == *n)) {
                return spans;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no complete trace for pod {name}; the collector has {:#?}",
            receiver
                .spans()
                .iter()
                .map(|s| (&s.name, &s.trace_id))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn one<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    let found: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(
        found.len(),
        1,
        "spans named {name:?} in {:#?}",
        names(spans)
    );
    found[0]
}

fn names(spans: &[ReceivedSpan]) -> Vec<(String, String, i32)> {
    spans
        .iter()
        .map(|s| (s.name.clone(), s.service_name.clone(), s.status_code))
        .collect()
}

const ERROR: i32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_event_is_one_trace_from_the_nri_event_to_each_plugin_with_errors_where_they_happened()
 {
    if !require_privileged() {
        return;
    }
    let c = containerd::Containerd::start(containerd::Options::default())
        .await
        .unwrap();
    let collector = Collector::start_in(c.host_netns().path());
    let opts = plexus::Options {
        otlp_endpoint: Some(collector.receiver.endpoint()),
        ..plexus::Options::default()
    };
    let env = Env::start_on(c, opts, |_| Ok(())).await.unwrap();
    // An exec'd network: macvlan then tuning, a chain plexus runs through the plugin binaries.
    let subnet = format!("10.247.{}.0/24", plexus_integration::netns::next_id() % 256);
    Nad::macvlan_then(
        NAMESPACE,
        "chained",
        &env.uplink,
        &subnet,
        &env.plexus.paths().ipam_dir,
        json!({"type": "tuning", "sysctl": {"net.ipv4.conf.IFNAME.arp_filter": "1"}}),
    )
    .write_to(&env.plexus.paths().networks_dir)
    .unwrap();

    let good = env
        .containerd
        .run_pod(&PodSpec::new(NAMESPACE, "traced").networks(&format!("{MACVLAN},chained")))
        .await
        .unwrap();
    let spans = trace_of(&collector.receiver, "traced", 7).await;
    let root = one(&spans, "nri RunPodSandbox");
    assert_eq!(
        (
            root.service_name.as_str(),
            root.kind,
            root.parent_span_id.as_str()
        ),
        ("plexus-nri", 2, ""),
        "the trace starts at the runtime's event"
    );
    assert_eq!(root.attr("k8s.namespace.name"), NAMESPACE);
    assert_eq!(root.attr("plexus.sandbox.id"), good.id);
    let rpc = one(&spans, "plexus.v1.Node/SetupPod");
    assert_eq!(rpc.service_name, "plexusd");
    assert_eq!(
        rpc.parent_span_id, root.span_id,
        "plexusd continues plexus-nri's span"
    );
    assert_eq!(rpc.attr("k8s.pod.name"), "traced");
    assert_eq!(rpc.attr("rpc.grpc.status_code"), "0");
    for key in ["service.version", "host.name", "k8s.node.name"] {
        assert!(
            rpc.resource.contains_key(key),
            "resource {key}: {:?}",
            rpc.resource
        );
    }
    let native = one(&spans, &format!("attach {NAMESPACE}/{MACVLAN}"));
    assert_eq!(native.parent_span_id, rpc.span_id);
    assert_eq!(
        (
            native.attr("plexus.driver"),
            native.attr("network.interface.name")
        ),
        ("native", "net1")
    );
    assert_eq!(one(&spans, "create macvlan").parent_span_id, native.span_id);
    let exec = one(&spans, &format!("attach {NAMESPACE}/chained"));
    assert_eq!(exec.parent_span_id, rpc.span_id);
    assert_eq!(
        (
            exec.attr("plexus.driver"),
            exec.attr("network.interface.name")
        ),
        ("exec", "net2")
    );
    for plugin in ["ADD macvlan", "ADD tuning"] {
        let run = one(&spans, plugin);
        assert_eq!(run.parent_span_id, exec.span_id, "{plugin}");
        assert_eq!(run.attr("plexus.cni.command"), "ADD");
    }
    assert!(
        spans.iter().all(|s| s.status_code != ERROR),
        "a successful setup has no error: {:#?}",
        names(&spans)
    );

    // The second network fails (its plugin does not exist): the first is undone.
    let broken = PodSpec::new(NAMESPACE, "traced-broken")
        .networks(&format!("{MACVLAN},{}", plexus_integration::env::BROKEN));
    assert!(env.containerd.run_pod(&broken).await.is_err());
    let undo_broken = format!("undo {NAMESPACE}/{}", plexus_integration::env::BROKEN);
    let needed = [
        "nri RunPodSandbox",
        "plexus.v1.Node/SetupPod",
        &format!("attach {NAMESPACE}/{MACVLAN}"),
        &format!("undo {NAMESPACE}/{MACVLAN}"),
        &format!("attach {NAMESPACE}/{}", plexus_integration::env::BROKEN),
        undo_broken.as_str(),
    ];
    let spans = trace_with(&collector.receiver, "traced-broken", 5, &needed).await;
    let failed: Vec<&str> = spans
        .iter()
        .filter(|s| s.status_code == ERROR)
        .map(|s| s.name.as_str())
        .collect();
    let attach_broken = format!("attach {NAMESPACE}/{}", plexus_integration::env::BROKEN);
    assert!(
        failed.contains(&"nri RunPodSandbox"),
        "{:#?}",
        names(&spans)
    );
    assert!(
        failed.contains(&"plexus.v1.Node/SetupPod"),
        "{:#?}",
        names(&spans)
    );
    assert!(
        failed.contains(&attach_broken.as_str()),
        "{:#?}",
        names(&spans)
    );
    // Its DEL fails the same way (no plugin binary): the documented ERROR `undo` span of
    // a plugin whose ADD and DEL both failed.
    let allowed = [
        "nri RunPodSandbox",
        "plexus.v1.Node/SetupPod",
        attach_broken.as_str(),
        undo_broken.as_str(),
    ];
    assert!(
        failed.iter().all(|f| allowed.contains(f)),
        "ERROR only where it failed: {:#?}",
        names(&spans)
    );
    let attach_ok = one(&spans, &format!("attach {NAMESPACE}/{MACVLAN}"));
    assert_ne!(attach_ok.status_code, ERROR);
    let undo = one(&spans, &format!("undo {NAMESPACE}/{MACVLAN}"));
    assert_eq!(
        (undo.status_code, undo.attr("plexus.outcome")),
        (0, "undone")
    );
    assert!(!one(&spans, &attach_broken).attr("error.type").is_empty());

    env.containerd.delete_pod(&good).await.unwrap();
    crate::common::wait_nothing_left(&env, Duration::from_secs(5)).await;
}

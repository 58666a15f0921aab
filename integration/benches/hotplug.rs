//! Hot-plug figures (printed, not asserted), on a private containerd with plexus in
//! Kubernetes mode against the fake API server:
//! 1. time from the merge patch of a running pod's `k8s.v1.cni.cncf.io/networks` to the
//!    interface being present (add) or gone (remove) inside the pod's netns — median and p90
//!    over `PLEXUS_BENCH_CHANGES` changes (default 50) alternating add/remove of `net2` on one
//!    pod; the netns is watched from a thread inside it reading `/proc/thread-self/net/dev`
//!    every 200 µs;
//! 2. the API requests each change costs plexusd, from the fake's request log (the patches
//!    themselves are made on the fake's store and not logged).
//!
//! Needs root.

#[allow(dead_code)]
#[path = "../tests/e2e/kube/api.rs"]
mod api;

use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use api::{Api, NODE};
use plexus_integration::PodSpec;
use plexus_integration::containerd::{self, Containerd};
use plexus_integration::env::{BRIDGE, MACVLAN, NAMESPACE};
use plexus_integration::nad::{Nad, create_uplink};
use plexus_integration::plexus::{self, Kubernetes, Plexus};
use plexus_kube_fake::Resource;
use serde_json::json;

/// Longest one change may take before the bench gives up.
const LIMIT: Duration = Duration::from_secs(30);

/// Answers "when is `net2` present (or gone)?" from a thread inside the pod's netns.
struct Watcher {
    ask: mpsc::Sender<bool>,
    seen: mpsc::Receiver<Option<Instant>>,
}

impl Watcher {
    fn start(netns: PathBuf) -> Self {
        let (ask, asked) = mpsc::channel::<bool>();
        let (tell, seen) = mpsc::channel();
        std::thread::spawn(move || {
            let ns = File::open(&netns).expect("pod netns");
            // This thread serves the bench only and ends with it; it never runs async work.
            #[allow(clippy::disallowed_methods)]
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let present = || {
                std::fs::read_to_string("/proc/thread-self/net/dev")
                    .unwrap_or_default()
                    .lines()
                    .any(|l| l.trim_start().starts_with("net2:"))
            };
            while let Ok(want) = asked.recv() {
                let until = Instant::now() + LIMIT;
                let at = loop {
                    if present() == want {
                        break Some(Instant::now());
                    }
                    if Instant::now() > until {
                        break None;
                    }
                    std::thread::sleep(Duration::from_micros(200));
                };
                if tell.send(at).is_err() {
                    return;
                }
            }
        });
        Self { ask, seen }
    }
}

fn pct(t: &mut [Duration], p: usize) -> Duration {
    t.sort();
    t[(t.len() * p / 100).min(t.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    plexus_integration::bench::require_root("hotplug");
    let n: usize = plexus_integration::bench::count("PLEXUS_BENCH_CHANGES", 50);
    let c = Containerd::start(containerd::Options {
        prefix: "plexus-bench-hotplug".into(),
        ..containerd::Options::default()
    })
    .await
    .expect("start containerd");
    let uplink = create_uplink(c.host_netns()).expect("uplink");
    let ipam = c.paths().run_dir.join("plexus/ipam");
    let bridge = format!("pxhb{}", std::process::id() % 100_000);
    let api = Api::start_in(c.host_netns().path());
    for nad in [
        Nad::macvlan(NAMESPACE, MACVLAN, &uplink, "10.242.250.0/24", &ipam),
        Nad::bridge(NAMESPACE, BRIDGE, &bridge, "10.243.250.0/24", &ipam),
    ] {
        api.create_nad(&nad).expect("NAD");
    }
    let opts = plexus::Options {
        kubernetes: Some(Kubernetes {
            kubeconfig: api.kubeconfig_path(),
            node_name: NODE.into(),
        }),
        ..plexus::Options::default()
    };
    let _plexus = Plexus::start(&c, &[], opts).await.expect("start plexus");
    let spec = api.create_pod(&PodSpec::new(NAMESPACE, "hotplug-bench").networks(MACVLAN));
    let pod = c.run_pod(&spec).await.expect("RunPodSandbox");
    api.wait_network_status(&pod, LIMIT).await;
    let watcher = Watcher::start(pod.netns.clone());

    let value = |add: bool| {
        if add {
            format!("{MACVLAN},{BRIDGE}")
        } else {
            MACVLAN.to_string()
        }
    };
    let status_lists = |add: bool| {
        let status = api.network_status(&pod).unwrap_or_default();
        status.contains("\"net2\"") == add
    };
    let change = async |add: bool| -> Duration {
        watcher.ask.send(add).unwrap();
        let patched = Instant::now();
        api.merge_patch(
            Resource::Pod,
            NAMESPACE,
            &pod.name,
            &json!({"metadata": {"annotations": {"k8s.v1.cni.cncf.io/networks": value(add)}}}),
        )
        .expect("patch");
        let seen = watcher.seen.recv().unwrap().unwrap_or_else(|| {
            panic!(
                "net2 {} after {LIMIT:?}",
                if add { "not present" } else { "still there" }
            )
        });
        // Not timed: the status lands before the next change, so its requests are counted.
        let until = Instant::now() + LIMIT;
        while !status_lists(add) {
            assert!(Instant::now() < until, "network-status did not follow");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        seen - patched
    };
    for i in 0..4 {
        change(i % 2 == 0).await;
    }
    api.clear_requests();
    let (mut adds, mut removes) = (Vec::new(), Vec::new());
    for i in 0..n {
        let add = i % 2 == 0;
        let took = change(add).await;
        if add {
            adds.push(took);
        } else {
            removes.push(took);
        }
    }
    // Let the last events land before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = api.requests();
    let count = |f: &dyn Fn(&plexus_kube_fake::RequestRecord) -> bool| {
        log.iter().filter(|r| f(r)).count() as f64 / n as f64
    };
    let status = count(&|r| r.method == "PATCH" && r.path.ends_with("/status"));
    let events = count(&|r| r.path.ends_with("/events") && r.method != "GET");
    let gets = count(&|r| r.method == "GET" && !r.is_watch());
    let all = log.len() as f64 / n as f64;
    let mut both: Vec<Duration> = adds.iter().chain(&removes).copied().collect();
    println!("\nHot-plug from the annotation, {n} changes alternating add/remove of net2 (bridge)");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "(load average at the end: {})",
        load.split(' ').take(3).collect::<Vec<_>>().join(" ")
    );
    println!(
        "  patch -> net2 present  median {:>6.1} ms  p90 {:>6.1} ms",
        ms(pct(&mut adds, 50)),
        ms(pct(&mut adds, 90))
    );
    println!(
        "  patch -> net2 gone     median {:>6.1} ms  p90 {:>6.1} ms",
        ms(pct(&mut removes, 50)),
        ms(pct(&mut removes, 90))
    );
    println!(
        "  all changes            median {:>6.1} ms",
        ms(pct(&mut both, 50))
    );
    println!(
        "API requests per change: {all:.2} in all — network-status patches {status:.2}, events {events:.2}, GETs {gets:.2}"
    );
    c.delete_pod(&pod).await.expect("delete pod");
}

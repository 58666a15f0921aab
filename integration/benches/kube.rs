//! Kubernetes mode figures (printed, not asserted):
//! 1. API requests per pod setup, from the fake API server's request log: synchronous (on the
//!    setup path: direct NAD or pod GETs) vs asynchronous (network-status patches, events);
//! 2. RunPodSandbox median with NADs from the API server vs from the NAD directory (two
//!    private containerds with plexus, pods alternating between them, order flipped every
//!    round; each pod deleted before the next);
//! 3. RSS of an idle plexusd in Kubernetes mode watching 1,000 NADs and 200 pods of its node.
//!
//! `PLEXUS_BENCH_PODS` sets the pods per side (default 50). Needs root.

#[allow(dead_code)]
#[path = "../tests/e2e/kube/api.rs"]
mod api;

use std::path::Path;
use std::time::{Duration, Instant};

use api::{Api, NODE};
use plexus_integration::containerd::{self, Containerd};
use plexus_integration::env::{BRIDGE, MACVLAN, NAMESPACE};
use plexus_integration::nad::{Nad, create_uplink};
use plexus_integration::plexus::{self, Kubernetes, Plexus};
use plexus_integration::stats::{median, ratio_interval};
use plexus_integration::{Pod, PodSpec};
use plexus_kube_fake::{FakeApiServer, RequestRecord, Resource};
use serde_json::json;

fn options(prefix: &str) -> containerd::Options {
    containerd::Options {
        prefix: prefix.into(),
        ..containerd::Options::default()
    }
}

fn nads(c: &Containerd, n: u32) -> Vec<Nad> {
    let uplink = create_uplink(c.host_netns()).expect("uplink");
    let ipam = c.paths().run_dir.join("plexus/ipam");
    let bridge = format!("pxk{}b{n}", std::process::id() % 100_000);
    vec![
        Nad::macvlan(
            NAMESPACE,
            MACVLAN,
            &uplink,
            &format!("10.242.{n}.0/24"),
            &ipam,
        ),
        Nad::bridge(
            NAMESPACE,
            BRIDGE,
            &bridge,
            &format!("10.243.{n}.0/24"),
            &ipam,
        ),
    ]
}

/// One pod through CRI (the pod object, when `api` is given, created first as kubelet
/// does); returns the RunPodSandbox time and the pod, still running.
async fn run(c: &Containerd, api: Option<&Api>, name: &str) -> (Duration, Pod) {
    let mut spec = PodSpec::new(NAMESPACE, name).networks(&format!("{MACVLAN},{BRIDGE}"));
    if let Some(api) = api {
        spec = api.create_pod(&spec);
    }
    let start = Instant::now();
    let pod = c.run_pod(&spec).await.expect("RunPodSandbox");
    let took = start.elapsed();
    assert!(pod.interface("net2").is_ok(), "pod {name} has no net2");
    (took, pod)
}

#[derive(Debug, Default)]
struct Counts {
    sync_get: usize,
    status_patch: usize,
    event_post: usize,
    watch_or_list: usize,
    other: Vec<String>,
}

fn classify(log: &[RequestRecord]) -> Counts {
    let mut c = Counts::default();
    for r in log {
        let collection = r.path.rsplit('/').next().unwrap_or("");
        match r.method.as_str() {
            _ if r.is_watch() => c.watch_or_list += 1,
            "GET" if matches!(collection, "pods" | "network-attachment-definitions") => {
                c.watch_or_list += 1
            }
            "GET" if r.path.contains("/network-attachment-definitions/") => c.sync_get += 1,
            "GET" if r.path.contains("/pods/") => c.sync_get += 1,
            "PATCH" | "PUT" if r.path.ends_with("/status") => c.status_patch += 1,
            "POST" if r.path.ends_with("/events") => c.event_post += 1,
            _ => c.other.push(format!("{} {}", r.method, r.path)),
        }
    }
    c
}

async fn setup_figures(n: usize) {
    let dir_c = Containerd::start(options("plexus-bench-dir"))
        .await
        .expect("start containerd");
    let kube_c = Containerd::start(options("plexus-bench-kube"))
        .await
        .expect("start containerd");
    let dir_nads = nads(&dir_c, 248);
    let kube_nads = nads(&kube_c, 249);
    let api = Api::start_in(kube_c.host_netns().path());
    for nad in &kube_nads {
        api.create_nad(nad).expect("NAD");
    }
    let dir_p = Plexus::start(&dir_c, &dir_nads, plexus::Options::default())
        .await
        .expect("start plexus (directory)");
    let kube_opts = plexus::Options {
        kubernetes: Some(Kubernetes {
            kubeconfig: api.kubeconfig_path(),
            node_name: NODE.into(),
        }),
        ..plexus::Options::default()
    };
    let kube_p = Plexus::start(&kube_c, &kube_nads, kube_opts)
        .await
        .expect("start plexus (kubernetes)");

    // Warm-up: image unpacking, cold caches, the NAD cache's first list.
    for i in 0..3 {
        let (_, p) = run(&dir_c, None, &format!("warm-dir-{i}")).await;
        dir_c.delete_pod(&p).await.unwrap();
        let (_, p) = run(&kube_c, Some(&api), &format!("warm-kube-{i}")).await;
        api.wait_network_status(&p, Duration::from_secs(30)).await;
        kube_c.delete_pod(&p).await.unwrap();
    }
    api.clear_requests();

    let (mut td, mut tk) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut kube_pods = Vec::with_capacity(n);
    for i in 0..n {
        let dir_first = i % 2 == 0;
        for side in [dir_first, !dir_first] {
            if side {
                let (t, p) = run(&dir_c, None, &format!("dir-{i}")).await;
                td.push(t);
                dir_c.delete_pod(&p).await.unwrap();
            } else {
                let (t, p) = run(&kube_c, Some(&api), &format!("kube-{i}")).await;
                tk.push(t);
                // The status and events are written asynchronously: wait for them so each
                // setup's requests are in the log before the pod goes.
                api.wait_network_status(&p, Duration::from_secs(30)).await;
                let uid = api
                    .get(Resource::Pod, &p.namespace, &p.name)
                    .and_then(|o| o["metadata"]["uid"].as_str().map(str::to_owned))
                    .unwrap();
                api.wait_events(
                    &p.namespace,
                    &uid,
                    "AddedInterface",
                    3,
                    Duration::from_secs(30),
                )
                .await;
                kube_c.delete_pod(&p).await.unwrap();
                kube_pods.push(p);
            }
        }
    }
    let counts = classify(&api.requests());
    let per = |x: usize| x as f64 / n as f64;
    println!("\nAPI requests per pod setup ({n} pods, 3 interfaces each: eth0, net1, net2)");
    println!(
        "  synchronous (GET of a NAD or the pod on the setup path): {:.2}",
        per(counts.sync_get)
    );
    println!(
        "  asynchronous: network-status patches {:.2}, events {:.2}",
        per(counts.status_patch),
        per(counts.event_post)
    );
    println!(
        "  background (lists and watch reconnects, whole run): {}",
        counts.watch_or_list
    );
    if !counts.other.is_empty() {
        println!("  other: {:?}", counts.other);
    }

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    // Before the medians sort them: index i of each is round i.
    let ratio = ratio_interval(&td, &tk);
    let (md, mk) = (median(&mut td), median(&mut tk));
    println!("\nRunPodSandbox median, 2 networks, {n} pods per side");
    println!(
        "(load average at the end: {})",
        load.split(' ').take(3).collect::<Vec<_>>().join(" ")
    );
    println!(
        "  NADs from the directory      {:>7.1} ms",
        md.as_secs_f64() * 1e3
    );
    println!(
        "  NADs from the API server     {:>7.1} ms",
        mk.as_secs_f64() * 1e3
    );
    match ratio {
        Some(r) => println!(
            "  ratio kube/directory: {r} (goal <= 1.02x): {}",
            r.verdict(1.02)
        ),
        None => println!("  ratio kube/directory: too few pods for a ratio"),
    }
    drop(kube_p);
    drop(dir_p);
    drop(api);
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Whether the log shows a list and then a watch of `collection` (the cache synced).
fn synced(log: &[RequestRecord], collection: &str) -> bool {
    let list = log.iter().position(|r| {
        r.method == "GET" && r.path.ends_with(collection) && !r.is_watch() && r.status == 200
    });
    list.is_some_and(|i| {
        log[i..]
            .iter()
            .any(|r| r.path.ends_with(collection) && r.is_watch())
    })
}

async fn rss_figure(bins: &Path) {
    const NADS: usize = 1000;
    const PODS: usize = 200;
    let fake = FakeApiServer::start().await.expect("fake API server");
    let cfg = serde_json::to_string(&json!({
        "cniVersion": "1.0.0", "name": "n", "type": "macvlan", "master": "eth0",
        "ipam": { "type": "host-local", "ranges": [[{ "subnet": "10.250.0.0/16" }]] },
    }))
    .unwrap();
    for i in 0..NADS {
        let ns = format!("team-{}", i % 20);
        let obj = json!({
            "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": { "name": format!("net-{i}"), "namespace": ns },
            "spec": { "config": cfg },
        });
        fake.create(Resource::NetworkAttachmentDefinition, &ns, obj)
            .unwrap();
    }
    for i in 0..PODS {
        let obj = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": format!("pod-{i}"), "namespace": "default",
                "annotations": { "k8s.v1.cni.cncf.io/networks": format!("team-0/net-{}", i % 50) } },
            "spec": { "nodeName": NODE, "containers": [{ "name": "c", "image": "pause" }] },
        });
        fake.create(Resource::Pod, "default", obj).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let socket = d.join("plexus.sock");
    let config = d.join("plexusd.yaml");
    for sub in ["state", "cache", "leases", "conf"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    let text = format!(
        "socket: {sock}\nstateDir: {d}/state\ncniBinDirs: [/usr/lib/cni]\ncniCacheDir: {d}/cache\n\
         ipamDataDir: {d}/leases\ncniConfDir: {d}/conf\n\
         nadSource: {{kubernetes: {{kubeconfig: {kc}}}}}\ntelemetry: {{logLevel: error}}\n",
        sock = socket.display(),
        d = d.display(),
        kc = fake.kubeconfig_path().display(),
    );
    std::fs::write(&config, text).unwrap();
    let mut child = std::process::Command::new(bins.join("plexusd"))
        .arg("--config")
        .arg(&config)
        .env("NODE_NAME", NODE)
        .env("RUST_LOG", "error")
        .spawn()
        .expect("spawn plexusd");
    let until = Instant::now() + Duration::from_secs(60);
    while !(synced(&fake.requests(), "/network-attachment-definitions")
        && synced(&fake.requests(), "/pods"))
    {
        assert!(
            Instant::now() < until,
            "plexusd did not list and watch: {:?}",
            fake.requests()
        );
        assert!(child.try_wait().unwrap().is_none(), "plexusd exited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Idle: the caches are filled; let the allocator settle before reading.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = rss_kib(child.id());
    println!(
        "\nplexusd RSS idle, Kubernetes mode, {NADS} NADs and {PODS} pods watched: {:.1} MiB \
         (goal <= 24 MiB; Multus thick idles at 39 MB)",
        rss as f64 / 1024.0
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    plexus_integration::bench::require_root("kube");
    let n: usize = plexus_integration::bench::count("PLEXUS_BENCH_PODS", 50);
    let bins = plexus::bin_dir().expect("plexus binaries");
    rss_figure(&bins).await;
    setup_figures(n).await;
}

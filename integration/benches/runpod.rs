//! RunPodSandbox latency with plexus (plexus-nri + plexusd attaching two secondary
//! networks, macvlan and bridge) against containerd alone (primary network only), on the
//! same private containerd. Prints medians, p90 and the ratio (target: at most 1.15x).
//!
//! `PLEXUS_BENCH_PODS` sets the pods per side (default 50). Needs root.

use std::time::{Duration, Instant};

use plexus_integration::containerd::{self, Containerd};
use plexus_integration::env::{BRIDGE, MACVLAN, NAMESPACE};
use plexus_integration::nad::{Nad, create_uplink};
use plexus_integration::{PodSpec, plexus, plexus::Plexus};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn measure(c: &Containerd, label: &str, n: usize, networks: Option<&str>) -> Vec<Duration> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let mut spec = PodSpec::new(NAMESPACE, &format!("{label}-{i}"));
        if let Some(nets) = networks {
            spec = spec.networks(nets);
        }
        let start = Instant::now();
        let pod = c.run_pod(&spec).await.expect("RunPodSandbox");
        times.push(start.elapsed());
        if networks.is_some() {
            assert!(pod.interface("net2").is_ok(), "pod {i} has no net2");
        }
        c.delete_pod(&pod).await.expect("delete pod");
    }
    times.sort();
    times
}

fn report(label: &str, t: &[Duration]) -> Duration {
    let med = percentile(t, 0.5);
    println!(
        "{label:<28} n={:<4} median {:>7.1} ms   p90 {:>7.1} ms   min {:>7.1} ms",
        t.len(),
        med.as_secs_f64() * 1e3,
        percentile(t, 0.9).as_secs_f64() * 1e3,
        t[0].as_secs_f64() * 1e3,
    );
    med
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("runpod bench needs root (containerd, network namespaces): sudo make bench");
        std::process::exit(1);
    }
    let n: usize = std::env::var("PLEXUS_BENCH_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let opts = containerd::Options {
        prefix: "plexus-bench".into(),
        ..containerd::Options::default()
    };
    let c = Containerd::start(opts).await.expect("start containerd");
    let uplink = create_uplink(c.host_netns()).expect("uplink");
    let ipam = c.paths().run_dir.join("plexus/ipam");
    let bridge = format!("pxn{}b", std::process::id() % 100_000);
    let nads = [
        Nad::macvlan(NAMESPACE, MACVLAN, &uplink, "10.242.250.0/24", &ipam),
        Nad::bridge(NAMESPACE, BRIDGE, &bridge, "10.243.250.0/24", &ipam),
    ];

    // Warm-up: first pods pay for image unpacking and cold caches.
    measure(&c, "warmup", 3, None).await;
    let base = measure(&c, "base", n, None).await;

    let p = Plexus::start(&c, &nads, plexus::Options::default())
        .await
        .expect("start plexus");
    let networks = format!("{MACVLAN},{BRIDGE}");
    measure(&c, "warmup-plexus", 3, Some(&networks)).await;
    let with = measure(&c, "plexus", n, Some(&networks)).await;

    println!("\nRunPodSandbox (release build, sequential pods, delete between)");
    let mb = report("containerd, primary only", &base);
    let mp = report("+ plexus, 2 networks", &with);
    let ratio = mp.as_secs_f64() / mb.as_secs_f64();
    println!(
        "ratio of medians: {ratio:.3}x (target <= 1.15x): {}",
        if ratio <= 1.15 { "met" } else { "NOT met" }
    );
    drop(p);
    drop(c);
}

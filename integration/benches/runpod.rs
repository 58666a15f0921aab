//! RunPodSandbox latency with plexus (plexus-nri + plexusd attaching two secondary
//! networks, macvlan and bridge) against containerd alone (primary network only).
//! Prints medians, p90 and the ratio of medians (target: at most 1.15x) with its 95 %
//! interval over resampled rounds (`integration::stats`).
//!
//! Two private containerds run side by side, one with plexus and one without, and pods
//! alternate between them (order flipped every round), so load from other processes on
//! the machine hits both sides alike. Each pod is deleted before the next one starts.
//! `PLEXUS_BENCH_PODS` sets the pods per side (default 50). Needs root.

use std::time::{Duration, Instant};

use plexus_integration::containerd::{self, Containerd};
use plexus_integration::env::{BRIDGE, MACVLAN, NAMESPACE};
use plexus_integration::nad::{Nad, create_uplink};
use plexus_integration::stats::{percentile, ratio_interval};
use plexus_integration::{PodSpec, plexus, plexus::Plexus};

/// Runs one pod, checks it got its networks, deletes it; returns the RunPodSandbox time.
async fn one(c: &Containerd, name: &str, networks: Option<&str>) -> Duration {
    let mut spec = PodSpec::new(NAMESPACE, name);
    if let Some(nets) = networks {
        spec = spec.networks(nets);
    }
    let start = Instant::now();
    let pod = c.run_pod(&spec).await.expect("RunPodSandbox");
    let took = start.elapsed();
    if networks.is_some() {
        assert!(pod.interface("net2").is_ok(), "pod {name} has no net2");
    }
    c.delete_pod(&pod).await.expect("delete pod");
    took
}

fn report(label: &str, rounds: &[Duration]) {
    let mut t = rounds.to_vec();
    t.sort();
    let med = percentile(&t, 0.5);
    println!(
        "{label:<28} n={:<4} median {:>7.1} ms   p90 {:>7.1} ms   min {:>7.1} ms",
        t.len(),
        med.as_secs_f64() * 1e3,
        percentile(&t, 0.9).as_secs_f64() * 1e3,
        t[0].as_secs_f64() * 1e3,
    );
}

fn options(prefix: &str) -> containerd::Options {
    containerd::Options {
        prefix: prefix.into(),
        ..containerd::Options::default()
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    plexus_integration::bench::require_root("runpod");
    let n: usize = plexus_integration::bench::count("PLEXUS_BENCH_PODS", 50);
    let base = Containerd::start(options("plexus-bench-base"))
        .await
        .expect("start containerd");
    let with = Containerd::start(options("plexus-bench"))
        .await
        .expect("start containerd");
    let uplink = create_uplink(with.host_netns()).expect("uplink");
    let ipam = with.paths().run_dir.join("plexus/ipam");
    let bridge = format!("pxn{}b", std::process::id() % 100_000);
    let nads = [
        Nad::macvlan(NAMESPACE, MACVLAN, &uplink, "10.242.250.0/24", &ipam),
        Nad::bridge(NAMESPACE, BRIDGE, &bridge, "10.243.250.0/24", &ipam),
    ];
    // Production log level: debug logging would be measured too.
    let popts = plexus::Options {
        log_level: "info".into(),
        ..plexus::Options::default()
    };
    let p = Plexus::start(&with, &nads, popts)
        .await
        .expect("start plexus");
    let networks = format!("{MACVLAN},{BRIDGE}");

    // Warm-up: the first pods pay for image unpacking and cold caches.
    for i in 0..3 {
        one(&base, &format!("warm-base-{i}"), None).await;
        one(&with, &format!("warm-plexus-{i}"), Some(&networks)).await;
    }
    // Index i of each is round i (the pairs the interval resamples).
    let (mut tb, mut tp) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        if i % 2 == 0 {
            tb.push(one(&base, &format!("base-{i}"), None).await);
            tp.push(one(&with, &format!("plexus-{i}"), Some(&networks)).await);
        } else {
            tp.push(one(&with, &format!("plexus-{i}"), Some(&networks)).await);
            tb.push(one(&base, &format!("base-{i}"), None).await);
        }
    }

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("\nRunPodSandbox, sequential pods alternating between two containerds");
    println!(
        "(load average at the end: {})",
        load.split(' ').take(3).collect::<Vec<_>>().join(" ")
    );
    report("containerd, primary only", &tb);
    report("+ plexus, 2 networks", &tp);
    match ratio_interval(&tb, &tp) {
        Some(r) => println!(
            "ratio of medians: {r} (target <= 1.15x): {}",
            r.verdict(1.15)
        ),
        None => println!("ratio of medians: too few pods for a ratio"),
    }
    drop(p);
    drop(with);
    drop(base);
}

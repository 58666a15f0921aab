//! Bursts (issue 14): `PLEXUS_BENCH_BURST` pods (default 200) started at once through CRI,
//! on the NRI path and on the shim path (where the runtime's CNI calls reach plexusd
//! concurrently), each with two secondary networks (macvlan and bridge, native), then
//! deleted at once, after the same burst on containerd with its primary network only, and
//! once more on the NRI path with containerd's NRI timeout raised to 5 s.
//! Prints failures, RunPodSandbox p50/p90/p99/max with the p99/p50 ratio
//! (goal: 0 failures, p99 <= 5x p50), the wall time of each burst, and plexusd's RSS
//! before, at its peak (VmHWM) and after; each plexus side runs `PLEXUS_BENCH_BURSTS`
//! bursts (default 2) on the same plexusd, to show its RSS levels off. While each burst starts, a probe
//! measures how long the kernel's rtnl lock keeps a request waiting: the NRI path's
//! failures come from waits longer than its deadline. Before each first burst on a
//! containerd the bench waits until the kernel has destroyed the previous burst's network
//! namespaces (`rtnl_probe::settle`); each later burst starts right after the one before
//! was removed. `PLEXUS_BENCH_SIDES` (a comma list of primary, nri, nri5, shim) runs only
//! those sides. Figures, not assertions. Needs root.

use std::time::{Duration, Instant};

use futures::future::join_all;
use plexus_integration::containerd::{self, Containerd};
use plexus_integration::env::{BRIDGE, MACVLAN, NAMESPACE};
use plexus_integration::plexus::Plexus;
use plexus_integration::stats::percentile;
use plexus_integration::{Env, PodSpec, plexus, rtnl_probe};

/// Setups answered while they went on (plexusd's log): answered so, finished, failed.
const FINISHING: [&str; 3] = [
    "pod network setup goes on after the answer",
    "pod networks set up after the answer",
    "pod network setup failed after the answer",
];

/// (VmRSS, VmHWM) of `pid` in MiB.
fn rss(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Starts `n` pods at once on `c` (with the two networks when `plexusd` runs), then deletes
/// them at once; prints what happened, and with `nri`, plexus's own answer times.
async fn burst(label: &str, c: &Containerd, plexusd: Option<u32>, nri: Option<&Plexus>, n: usize) {
    let seen = nri.map_or(0, |p| p.nri_answer_times().0.len());
    // Early setups (plexusd's log, info level): done, failed, left to the hook for room.
    const EARLY: [&str; 3] = [
        "early setup done",
        "early setup failed",
        "early setup: no room",
    ];
    let early_before = nri.map(|p| EARLY.map(|w| p.plexusd_log_lines(w).len()));
    let finishing_before = nri.map(|p| FINISHING.map(|w| p.plexusd_log_lines(w).len()));
    let (before, _) = plexusd.map_or((f64::NAN, f64::NAN), rss);
    let networks = format!("{MACVLAN},{BRIDGE}");
    let specs: Vec<PodSpec> = (0..n)
        .map(|i| {
            let spec = PodSpec::new(NAMESPACE, &format!("{label}-{i}"));
            match plexusd {
                Some(_) => spec.networks(&networks),
                None => spec,
            }
        })
        .collect();
    let held = rtnl_probe::namespaces_held();
    let probe = rtnl_probe::Probe::start().expect("start the rtnl probe");
    let wall = Instant::now();
    let started = join_all(specs.iter().map(|s| async {
        let t = Instant::now();
        let pod = c.run_pod(s).await;
        (t.elapsed(), pod)
    }))
    .await;
    let start_wall = wall.elapsed();
    let rtnl = probe.stop().expect("rtnl probe");
    let mut times: Vec<Duration> = started.iter().map(|(t, _)| *t).collect();
    times.sort();
    let failures: Vec<String> = started
        .iter()
        .filter_map(|(_, p)| p.as_ref().err().map(|e| e.to_string()))
        .collect();
    let pods: Vec<_> = started.into_iter().filter_map(|(_, p)| p.ok()).collect();
    let (_, peak) = plexusd.map_or((f64::NAN, f64::NAN), rss);
    let wall = Instant::now();
    let deleted = join_all(pods.iter().map(|p| c.delete_pod(p))).await;
    let stop_wall = wall.elapsed();
    let delete_failures = deleted.iter().filter(|d| d.is_err()).count();
    let (after, _) = plexusd.map_or((f64::NAN, f64::NAN), rss);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p50 = percentile(&times, 0.5);
    let p99 = percentile(&times, 0.99);
    println!(
        "{label}: {n} pods at once ({} network namespaces held by the kernel at the start)",
        held.map_or("?".into(), |h| h.to_string())
    );
    println!(
        "  RunPodSandbox  failures {}   p50 {:.1} ms   p90 {:.1} ms   p99 {:.1} ms   max {:.1} ms   p99/p50 {:.2}x (goal <= 5x)",
        failures.len(),
        ms(p50),
        ms(percentile(&times, 0.9)),
        ms(p99),
        ms(*times.last().unwrap()),
        p99.as_secs_f64() / p50.as_secs_f64(),
    );
    println!(
        "  wall: all started in {:.2} s, all deleted in {:.2} s ({delete_failures} delete failures)",
        start_wall.as_secs_f64(),
        stop_wall.as_secs_f64()
    );
    println!("  the kernel's rtnl lock while they started (a GETLINK every 20 ms): {rtnl}");
    if plexusd.is_some() {
        println!("  plexusd RSS: before {before:.1} MiB, peak {peak:.1} MiB, after {after:.1} MiB");
    }
    if let Some(p) = nri {
        let mut answers = p.nri_answer_times().0.split_off(seen);
        answers.sort();
        if !answers.is_empty() {
            println!(
                "  plexus's answer to RunPodSandbox (plexus-nri to plexusd and back): p50 {:.1} ms   p99 {:.1} ms   max {:.1} ms ({} answered)",
                ms(percentile(&answers, 0.5)),
                ms(percentile(&answers, 0.99)),
                ms(*answers.last().unwrap()),
                answers.len()
            );
        }
    }
    if let (Some(p), Some(before)) = (nri, early_before) {
        let now = EARLY.map(|w| p.plexusd_log_lines(w));
        println!(
            "  early setups: {} done, {} failed, {} left to the hook for want of room",
            now[0].len() - before[0],
            now[1].len() - before[1],
            now[2].len() - before[2]
        );
        // Each done setup's wait for room and its own time (plexusd's log fields).
        let field = |line: &String, key: &str| {
            let at = line.find(key)? + key.len();
            line[at..].split(' ').next()?.parse::<f64>().ok()
        };
        for (key, what) in [
            ("waited_ms=", "waited from the event until they ran"),
            ("took_ms=", "took"),
        ] {
            let mut v: Vec<f64> = now[0][before[0]..]
                .iter()
                .filter_map(|l| field(l, key))
                .collect();
            v.sort_by(f64::total_cmp);
            if let (Some(max), false) = (v.last(), v.is_empty()) {
                let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
                println!(
                    "  early setups {what}: p50 {:.1} ms   p90 {:.1} ms   max {max:.1} ms",
                    at(0.5),
                    at(0.9)
                );
            }
        }
        if let Some(failed) = now[1].get(before[1]) {
            println!("  first early failure: {failed}");
        }
    }
    if let (Some(p), Some(before)) = (nri, finishing_before) {
        finishing(p, before).await;
    }
    if let Some(first) = failures.first() {
        println!("  first failure: {first}");
    }
}

/// Says how many RunPodSandbox answers came while the setup went on, and how those setups
/// ended (each within its 10 s bound): their pods' containers waited for them.
async fn finishing(p: &Plexus, before: [usize; 3]) {
    let count = |i: usize| p.plexusd_log_lines(FINISHING[i]).len() - before[i];
    let answered = count(0);
    if answered == 0 {
        println!("  setups that went on after the answer: 0");
        return;
    }
    // They end within their bound; wait for every one.
    let until = Instant::now() + Duration::from_secs(15);
    while count(1) + count(2) < answered && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut took: Vec<f64> = p.plexusd_log_lines(FINISHING[1])[before[1]..]
        .iter()
        .filter_map(|l| {
            l.split("elapsed_ms=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    took.sort_by(f64::total_cmp);
    println!(
        "  setups that went on after the answer (the pods' containers wait for them): {answered}; \
         {} finished (slowest {:.0} ms from its request), {} failed",
        count(1),
        took.last().copied().unwrap_or(f64::NAN),
        count(2)
    );
}

/// Waits until the kernel has destroyed the namespaces of the pods removed before (see
/// [`rtnl_probe::settle`]), and says how long that took.
async fn settle(baseline: Option<u64>) {
    let s = tokio::task::spawn_blocking(move || {
        rtnl_probe::settle(baseline, 16, Duration::from_secs(300))
    })
    .await
    .expect("the settle thread")
    .expect("settle");
    println!(
        "\n(kernel {} after {:.1} s: {} network namespaces held, {} at the bench's start)",
        if s.quiet { "settled" } else { "NOT settled" },
        s.waited.as_secs_f64(),
        s.held.map_or("?".into(), |h| h.to_string()),
        baseline.map_or("?".into(), |h| h.to_string()),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    plexus_integration::bench::require_root("burst");
    let n: usize = plexus_integration::bench::count("PLEXUS_BENCH_BURST", 200);
    let repeat: usize = plexus_integration::bench::count("PLEXUS_BENCH_BURSTS", 2);
    // Early setup on the NRI sides (plexusd watches containerd's new sandboxes), as a
    // node with `containerd.socket` runs; PLEXUS_BENCH_EARLY=0 measures the hooks alone.
    let early = std::env::var("PLEXUS_BENCH_EARLY").map_or(true, |v| v != "0");
    println!("NRI sides with early setup: {early}");
    // PLEXUS_BENCH_SIDES picks sides (comma list of primary, nri, nri5, shim; all by default).
    let side =
        plexus_integration::bench::sides("PLEXUS_BENCH_SIDES", &["primary", "nri", "nri5", "shim"]);
    let baseline = rtnl_probe::namespaces_held();
    // Production log level: debug logging would be measured too.
    let quiet = || plexus::Options {
        log_level: "info".into(),
        ..plexus::Options::default()
    };
    println!("\nBursts of pods started at once through CRI, 2 networks each on the plexus sides");
    if side("primary") {
        let base = Containerd::start(containerd::Options {
            prefix: "plexus-bench-base".into(),
            ..containerd::Options::default()
        })
        .await
        .expect("start containerd");
        settle(baseline).await;
        burst("primary only", &base, None, None, n).await;
    }
    if side("nri") {
        let nri = Env::start_with(
            containerd::Options::default(),
            plexus::Options {
                containerd_adoption: early,
                ..quiet()
            },
        )
        .await
        .expect("start the NRI side");
        let pid = nri.plexus.pids().0;
        settle(baseline).await;
        burst("plexus nri", &nri.containerd, pid, Some(&nri.plexus), n).await;
        // More bursts on the same plexusd: its RSS should level off.
        for k in 2..=repeat {
            let label = format!("plexus nri, burst {k}");
            burst(&label, &nri.containerd, pid, Some(&nri.plexus), n).await;
        }
    }
    if side("nri5") {
        // The same burst with the NRI timeout raised as config.md advises for nodes that
        // start many pods at once: containerd's plugin_request_timeout 5 s, plexus-nri's
        // --deadline and plexusd's nri.deadlineBudget 3.75 s.
        let nri = Env::start_with(
            containerd::Options {
                plugin_request_timeout: Duration::from_secs(5),
                ..containerd::Options::default()
            },
            plexus::Options {
                nri_deadline: Duration::from_millis(3750),
                containerd_adoption: early,
                ..quiet()
            },
        )
        .await
        .expect("start the NRI side with a 5 s timeout");
        let pid = nri.plexus.pids().0;
        settle(baseline).await;
        burst(
            "plexus nri, 5 s timeout",
            &nri.containerd,
            pid,
            Some(&nri.plexus),
            n,
        )
        .await;
    }
    if !side("shim") {
        return;
    }
    let shim = Env::start_shim_with(quiet())
        .await
        .expect("start the shim side");
    let pid = shim.plexus.pids().0;
    settle(baseline).await;
    burst("plexus shim", &shim.containerd, pid, None, n).await;
    for k in 2..=repeat {
        burst(
            &format!("plexus shim, burst {k}"),
            &shim.containerd,
            pid,
            None,
            n,
        )
        .await;
    }
}

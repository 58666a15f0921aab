//! The ways a pod can start, side by side (issue 11's benchmark): containerd with its
//! primary network only; plexus on the NRI path with early setup (plexusd watches
//! containerd for new sandboxes, `containerd.socket`, as the chart runs it); plexus as the
//! runtime's CNI network (the shim path, NRI off); and the NRI path without containerd's
//! socket, where every setup waits for the hook. Each plexus side attaches the same
//! secondary networks (native drivers); the shim side also runs the primary itself. Pods
//! alternate between the sides' private containerds in a rotating order, so load from other
//! processes hits all alike; each pod is deleted before the next starts.
//! Prints RunPodSandbox and Stop+Remove medians, p90 and ratios to "primary only", each
//! ratio with its 95 % interval over resampled rounds (`integration::stats`): a goal is met
//! when the interval is below it. Also the CPU each side's daemons used per pod: on this
//! 2-core machine a pod start keeps both cores busy, so what plexus uses beside the runtime
//! adds to the start almost as if it ran in line, and this figure is far steadier than
//! the differences of medians.
//!
//! Then the shim itself: wall time and peak RSS (GNU time's) of `plexus-cni` answering
//! `VERSION` (it answers that without plexusd), over many executions; `PLEXUS_SHIM_BIN`
//! names the binary (`make bench` passes the static one the image ships).
//!
//! `PLEXUS_BENCH_PODS` sets the pods per side: 300 by default, as in issue 14's own
//! measurement (at 100 the start ratio's 95 % interval was about ±0.03 wide). Figures, not
//! assertions.
//!
//! `PLEXUS_BENCH_NETWORKS` names the secondary networks, comma-separated: by default
//! `macvlan-net,macvlan2-net`, two macvlans on one uplink with host-local IPAM as in issue
//! 14's measurement; `macvlan-net,bridge-net` is issue 11's mix, where the bridge network's
//! veth pair costs a start more than a macvlan does.
//!
//! `PLEXUS_BENCH_SIDES` (a comma list of nri, shim, hook) runs only those plexus sides
//! beside primary only: with fewer sides a run measures more pods per side in the same time,
//! and the intervals narrow.
//!
//! `PLEXUS_BENCH_GAP_MS` (0 by default, as in issue 14's measurement) leaves the machine
//! idle for a random 0 to that many milliseconds before each pod, as on a node where pods
//! do not start back to back. Each of plexus's hops (containerd to plexus-nri to plexusd
//! and back) then wakes an idle core, and periodic work (plexus's batched record removals,
//! containerd's own) no longer falls into the same phase of every round.
//!
//! Needs root.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use plexus_integration::bench::cpu_time;
use plexus_integration::containerd::{self, Containerd};
use plexus_integration::env::{MACVLAN, MACVLAN2, NAMESPACE};
use plexus_integration::stats::{RatioInterval, percentile, ratio_interval};
use plexus_integration::{Env, PodSpec, plexus};

/// The label of the NRI side with early setup, whose figures issue 14's goals judge.
const NRI: &str = "plexus NRI";

/// One pod's times: RunPodSandbox, StopPodSandbox, RemovePodSandbox.
type Times = (Duration, Duration, Duration);

/// Runs one pod and deletes it; returns its times.
async fn one(c: &Containerd, name: &str, networks: Option<&str>) -> Times {
    let mut spec = PodSpec::new(NAMESPACE, name);
    if let Some(nets) = networks {
        spec = spec.networks(nets);
    }
    let start = Instant::now();
    let pod = c.run_pod(&spec).await.expect("RunPodSandbox");
    let run = start.elapsed();
    if let Some(nets) = networks {
        // Interfaces are named net1, net2, … in the order the networks are listed.
        let last = format!("net{}", nets.split(',').count());
        assert!(
            pod.interface(&last).is_ok(),
            "pod {name} has no {last} (networks {nets})"
        );
    }
    let start = Instant::now();
    c.stop_pod(&pod).await.expect("StopPodSandbox");
    let stop = start.elapsed();
    let start = Instant::now();
    c.remove_pod(&pod).await.expect("RemovePodSandbox");
    (run, stop, start.elapsed())
}

/// containerd, plexusd and plexus-nri of `env` (plexus-nri absent on the shim side).
fn daemons_of(env: &Env) -> Vec<(&'static str, Option<u32>)> {
    let (plexusd, nri) = env.plexus.pids();
    let mut daemons = vec![("containerd", env.containerd.pid()), ("plexusd", plexusd)];
    if nri.is_some() {
        daemons.push(("plexus-nri", nri));
    }
    daemons
}

/// One side's line; `rounds` in round order, `base` (primary only, same rounds) for the
/// ratio. Returns the median and the ratio with its interval.
fn line(
    label: &str,
    rounds: &[Duration],
    base: Option<&[Duration]>,
) -> (Duration, Option<RatioInterval>) {
    let mut t = rounds.to_vec();
    t.sort();
    let med = percentile(&t, 0.5);
    let interval = base.and_then(|base| ratio_interval(base, rounds));
    let ratio = match (base, interval) {
        (None, _) => "1.000x".to_owned(),
        (Some(_), Some(r)) => r.to_string(),
        (Some(_), None) => "-".to_owned(),
    };
    println!(
        "  {label:<26} n={:<4} median {:>7.1} ms   p90 {:>7.1} ms   ratio {ratio}",
        t.len(),
        med.as_secs_f64() * 1e3,
        percentile(&t, 0.9).as_secs_f64() * 1e3,
    );
    (med, interval)
}

/// `cmd` set up as a runtime's `VERSION` call of the shim: nothing in its environment but
/// `CNI_COMMAND`, no input, output discarded (it answers without plexusd).
fn version_call(cmd: &mut Command) -> &mut Command {
    cmd.env_clear()
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
}

/// Wall time of one `plexus-cni` VERSION call.
fn shim_version(bin: &std::path::Path) -> Duration {
    let start = Instant::now();
    let status = version_call(&mut Command::new(bin))
        .stderr(Stdio::null())
        .status()
        .expect("run plexus-cni");
    let took = start.elapsed();
    assert!(status.success(), "VERSION failed: {status}");
    took
}

/// Peak RSS (KiB) of one `plexus-cni` VERSION call as GNU time reports it (`%M`), or `None`
/// when it gave none (no `/usr/bin/time`, which `make setup` installs, or a failed call).
/// Not wait4's rusage of a child this bench forks: Linux counts in it the bench's own pages
/// the child held before its exec, which made a 2 MiB shim read as 9 MiB; time's own pages
/// are about 1 MiB.
fn shim_peak_rss(bin: &std::path::Path) -> Option<u64> {
    let out = version_call(Command::new("/usr/bin/time").args(["-f", "%M"]).arg(bin))
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .last()?
        .trim()
        .parse()
        .ok()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    plexus_integration::bench::require_root("paths");
    let n: usize = plexus_integration::bench::count("PLEXUS_BENCH_PODS", 300);
    let gap_ms = plexus_integration::bench::count("PLEXUS_BENCH_GAP_MS", 0) as u64;
    let mut gaps = plexus_testkit::rng::Rng::new(0x6a95_5eed);
    let base = Containerd::start(containerd::Options {
        prefix: "plexus-bench-base".into(),
        ..containerd::Options::default()
    })
    .await
    .expect("start containerd");
    // Production log level: debug logging would be measured too.
    let quiet = || plexus::Options {
        log_level: "info".into(),
        ..plexus::Options::default()
    };
    // PLEXUS_BENCH_SIDES picks the plexus sides (a comma list of nri, shim, hook; all by
    // default); primary only always runs, as every ratio's base.
    let wanted = plexus_integration::bench::sides("PLEXUS_BENCH_SIDES", &["nri", "shim", "hook"]);
    // The NRI side as a node would run it: plexusd also watches containerd for new
    // sandboxes and sets them up before the hook (early setup, `containerd.socket`).
    let nri = match wanted("nri") {
        true => Some(
            Env::start_with(
                containerd::Options::default(),
                plexus::Options {
                    containerd_adoption: true,
                    ..quiet()
                },
            )
            .await
            .expect("start the NRI side"),
        ),
        false => None,
    };
    let shim = match wanted("shim") {
        true => Some(
            Env::start_shim_with(quiet())
                .await
                .expect("start the shim side"),
        ),
        false => None,
    };
    // The NRI side without containerd's socket: every setup waits for the hook.
    let hook = match wanted("hook") {
        true => Some(
            Env::start_with(containerd::Options::default(), quiet())
                .await
                .expect("start the hook-only NRI side"),
        ),
        false => None,
    };
    let networks =
        std::env::var("PLEXUS_BENCH_NETWORKS").unwrap_or_else(|_| format!("{MACVLAN},{MACVLAN2}"));
    // Each side's label, containerd, networks and plexus (none on primary only).
    let mut sides: Vec<(&str, &Containerd, Option<&str>, Option<&Env>)> =
        vec![("primary only", &base, None, None)];
    for (label, env) in [
        (NRI, &nri),
        ("plexus shim", &shim),
        ("NRI, hook only", &hook),
    ] {
        if let Some(env) = env {
            sides.push((label, &env.containerd, Some(&networks), Some(env)));
        }
    }

    for i in 0..3 {
        for (k, (_, c, nets, _)) in sides.iter().enumerate() {
            one(c, &format!("warm-{k}-{i}"), *nets).await;
        }
    }
    // The daemons of each side, for the CPU they use per pod: containerd, then plexusd and
    // plexus-nri where the side has them.
    let daemons: Vec<Vec<(&str, Option<u32>)>> = sides
        .iter()
        .map(|(_, c, _, env)| match env {
            Some(env) => daemons_of(env),
            None => vec![("containerd", c.pid())],
        })
        .collect();
    let cpu = || {
        daemons
            .iter()
            .map(|side| {
                side.iter()
                    .map(|(_, pid)| pid.and_then(cpu_time))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    let cpu_before = cpu();
    // Per side: RunPodSandbox, Stop+Remove, and Stop and Remove alone.
    let mut t: Vec<[Vec<Duration>; 4]> = vec![Default::default(); sides.len()];
    for i in 0..n {
        for k in 0..sides.len() {
            let side = (i + k) % sides.len();
            let (_, c, nets, _) = sides[side];
            if gap_ms > 0 {
                tokio::time::sleep(Duration::from_micros(
                    gaps.below(gap_ms.saturating_mul(1000)),
                ))
                .await;
            }
            let (run, stop, remove) = one(c, &format!("pod-{side}-{i}"), nets).await;
            t[side][0].push(run);
            t[side][1].push(stop + remove);
            t[side][2].push(stop);
            t[side][3].push(remove);
        }
    }
    let cpu_after = cpu();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let gaps = match gap_ms {
        0 => "back to back".to_owned(),
        ms => format!("a random 0-{ms} ms idle before each"),
    };
    println!(
        "\nPod start and stop by path, {n} pods per side, rotating order, {gaps}; \
         secondary networks: {networks}"
    );
    println!(
        "(load average at the end: {})",
        load.split(' ').take(3).collect::<Vec<_>>().join(" ")
    );
    // (median, ratio) of each side, for one measure.
    let table = |title: &str, m: usize| {
        println!("{title}");
        sides
            .iter()
            .enumerate()
            .map(|(k, (label, ..))| line(label, &t[k][m], (k > 0).then_some(&t[0][m][..])))
            .collect::<Vec<_>>()
    };
    let runs = table("RunPodSandbox", 0);
    let stops = table("StopPodSandbox + RemovePodSandbox", 1);
    // Where a stop's extra time goes: the NRI sides answer two hook calls, the shim side
    // one CNI DEL inside StopPodSandbox.
    let med = |v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort();
        percentile(&v, 0.5).as_secs_f64() * 1e3
    };
    let each = |m: usize| {
        (0..sides.len())
            .map(|k| format!("{:.1}", med(&t[k][m])))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    println!(
        "  of which, medians: StopPodSandbox {} ms, RemovePodSandbox {} ms (in the order above)",
        each(2),
        each(3)
    );
    // Issue 14's goals for the NRI path, judged on the intervals.
    let nri_side = sides.iter().position(|(label, ..)| *label == NRI);
    if let Some((Some(run), Some(stop))) = nri_side.map(|k| (runs[k].1, stops[k].1)) {
        println!(
            "goals, plexus NRI: start <= 1.06x {}; stop <= 1.03x {}",
            run.verdict(1.06),
            stop.verdict(1.03)
        );
    }
    let (base_run, base_stop) = (runs[0].0, stops[0].0);

    // plexus's own share on each NRI side.
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (k, (_, _, _, env)) in sides.iter().enumerate() {
        let Some(env) = env else { continue };
        let (mut up, mut down) = env.plexus.nri_answer_times();
        up.sort();
        down.sort();
        if up.is_empty() || down.is_empty() {
            continue;
        }
        // Beyond plexus's answer: containerd's NRI hooks and their ttrpc round trips to
        // plexus-nri (Stop+Remove: two events).
        let at_once = env
            .plexus
            .nri_log_lines("runtime_answered_at_once=true")
            .len();
        println!(
            "{}: plexus's answer (event in plexus-nri to plexusd's answer), medians: \
             RunPodSandbox {:.2} ms, StopPodSandbox {:.2} ms ({} and {} events, {} of the \
             stops answered to the runtime at once, without waiting for it); \
             the rest of the side's extra time (differences of medians): \
             RunPodSandbox {:.2} ms, Stop+Remove {:.2} ms",
            sides[k].0,
            ms(percentile(&up, 0.5)),
            ms(percentile(&down, 0.5)),
            up.len(),
            down.len(),
            at_once,
            ms(runs[k].0) - ms(base_run) - ms(percentile(&up, 0.5)),
            ms(stops[k].0) - ms(base_stop) - ms(percentile(&down, 0.5)),
        );
    }

    // CPU per pod: what each side's daemons used over the measured pods (the shim side's
    // plexus-cni processes and every side's runc and shims are not counted). On a node
    // where a pod start keeps the cores busy, this is what a side adds to its pods' times.
    let per_pod = (0..sides.len())
        .map(|k| {
            let used = daemons[k].iter().zip(&cpu_before[k]).zip(&cpu_after[k]);
            let each = used
                .map(|(((name, _), before), after)| match (before, after) {
                    (Some(b), Some(a)) => {
                        format!("{name} {:.2}", ms(a.saturating_sub(*b)) / n as f64)
                    }
                    _ => format!("{name} -"),
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!("{}: {each}", sides[k].0)
        })
        .collect::<Vec<_>>()
        .join("; ");
    println!("CPU per pod, ms (user + system, to the clock tick over all pods): {per_pod}");

    // The shim as the image ships it (`make bench` builds it static and names it), else the
    // one built with the other binaries.
    let bin = match std::env::var_os("PLEXUS_SHIM_BIN") {
        Some(path) => std::path::PathBuf::from(path),
        None => plexus::bin_dir()
            .expect("plexus binaries")
            .join("plexus-cni"),
    };
    let linked = match plexus_integration::release_image::needs_loader(&bin) {
        Ok(true) => "dynamically linked",
        Ok(false) => "statically linked",
        Err(_) => "unreadable",
    };
    let runs = 300;
    let mut times: Vec<Duration> = (0..runs).map(|_| shim_version(&bin)).collect();
    times.sort();
    let peak = (0..20).map(|_| shim_peak_rss(&bin)).max().flatten();
    let peak = match peak {
        Some(kib) => format!("{:.1} MiB", kib as f64 / 1024.0),
        None => "- (/usr/bin/time -f %M gave no figure: is GNU time installed? make setup \
                 installs it)"
            .to_owned(),
    };
    println!(
        "\nplexus-cni VERSION ({runs} runs, {} ({linked})): median {:.2} ms, p90 {:.2} ms, \
         peak RSS {peak} (goal <= 1 ms and <= 5 MiB; multus-shim: 6.8 ms / 47 MiB)",
        bin.display(),
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.9).as_secs_f64() * 1e3,
    );
    drop(shim);
    drop(nri);
    drop(base);
}

//! Attach benchmark (prints figures; not a test). Needs root.
//!
//! One pod = a fresh netns with two macvlan secondaries (net1, net2) on a veth uplink in a
//! test "host" netns, host-local IPAM. Per pod, interleaved:
//! - native: `Engine::setup` + `Engine::teardown` in-process (netlink, built-in IPAM,
//!   link-group delete);
//! - exec: the same plan with `DelegationMode::ForceExec` (reference macvlan + host-local
//!   binaries from /usr/lib/cni, two execs per network on ADD and on DEL);
//! - ip floor: the same links and addresses with `ip -batch` (two execs for ADD: links
//!   created straight into the pod from the host netns, then addresses/up in the pod;
//!   one exec for DEL).
//!
//! `PLEXUS_BENCH_PODS` sets the pod count (default 100). Medians in ms.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use plexus_core::plan::{Plan, PlannedAttachment};
use plexus_core::pod::PodIdentity;
use plexus_engine::{DelegationMode, Engine, EngineConfig, SandboxSpec};
use plexus_netlink::netns;
use plexus_netlink::test_util::{TestNetns, unique_name};

fn attachment(index: usize, iface: &str, conf: &serde_json::Value) -> PlannedAttachment {
    serde_json::from_value(serde_json::json!({
        "index": index, "network": format!("default/{}", conf["name"].as_str().unwrap()),
        "interface": iface, "origin": "annotation", "primary": false,
        "source": {"kind": "nad", "namespace": "default", "name": conf["name"]},
        "config": {"form": "conf", "name": conf["name"], "cni_version": "1.0.0",
            "plugin_types": ["macvlan"], "bytes": serde_json::to_vec(conf).unwrap()},
    }))
    .unwrap()
}

fn engine(dir: &std::path::Path, host: &std::path::Path, mode: DelegationMode) -> Engine {
    let mut cfg = EngineConfig::new(dir.join(format!("state-{mode:?}")));
    cfg.cni_bin_dirs = vec!["/usr/lib/cni".into()];
    cfg.cni_cache_dir = dir.join("cache");
    cfg.ipam_data_dir = dir.join("leases");
    cfg.host_netns = Some(host.to_path_buf());
    cfg.delegation = mode;
    Engine::open(cfg).unwrap()
}

fn ip_batch(ns: &str, lines: &str) {
    let mut child = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "ip -batch failed: {lines}");
}

#[derive(Default)]
struct Series {
    add: Vec<Duration>,
    del: Vec<Duration>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(v: &[Duration]) -> f64 {
    let mut v: Vec<f64> = v.iter().map(|d| ms(*d)).collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("attach bench: needs root (network namespaces); nothing measured");
        return;
    }
    let pods: usize = std::env::var("PLEXUS_BENCH_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(bench(pods));
}

async fn bench(pods: usize) {
    let host = TestNetns::new().await;
    let uplink = unique_name("up");
    host.veth_pair(&uplink, &unique_name("pe")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let leases = dir.path().join("leases");
    let conf = |name: &str, subnet: &str| {
        serde_json::json!({"cniVersion":"1.0.0","name":name,"type":"macvlan","master":uplink,
            "ipam":{"type":"host-local","subnet":subnet,"dataDir":leases}})
    };
    let plan = Plan {
        pod: PodIdentity::new("default", "bench", "u"),
        attachments: vec![
            attachment(1, "net1", &conf("bench-a", "10.70.0.0/16")),
            attachment(2, "net2", &conf("bench-b", "10.71.0.0/16")),
        ],
    };
    let native = engine(dir.path(), &host.path(), DelegationMode::Auto);
    let exec = engine(dir.path(), &host.path(), DelegationMode::ForceExec);
    let (mut sn, mut se, mut si) = (Series::default(), Series::default(), Series::default());
    for i in 0..pods {
        for (engine, series) in [(&native, &mut sn), (&exec, &mut se)] {
            let pod = TestNetns::new().await;
            let id = plexus_core::SandboxId::new(format!("bench-{i}")).unwrap();
            let sb = SandboxSpec {
                sandbox_id: id.clone(),
                pod: plan.pod.clone(),
                netns: pod.path(),
            };
            let t = Instant::now();
            engine.setup(sb, plan.clone()).await.unwrap();
            series.add.push(t.elapsed());
            let t = Instant::now();
            engine.teardown(&id).await.unwrap();
            series.del.push(t.elapsed());
            drop(pod);
        }
        // ip floor.
        let name = format!("plexus-bench-{}-{i}", std::process::id());
        netns::create_named(&name).unwrap();
        let a = format!("10.72.{}.{}/16", i / 250, i % 250 + 2);
        let b = format!("10.73.{}.{}/16", i / 250, i % 250 + 2);
        let t = Instant::now();
        ip_batch(
            host.name(),
            &format!(
                "link add net1 link {uplink} netns {name} type macvlan mode bridge\n\
                 link add net2 link {uplink} netns {name} type macvlan mode bridge\n"
            ),
        );
        ip_batch(
            &name,
            &format!(
                "addr add {a} dev net1\naddr add {b} dev net2\nlink set net1 up\nlink set net2 up\n"
            ),
        );
        si.add.push(t.elapsed());
        let t = Instant::now();
        ip_batch(&name, "link del net1\nlink del net2\n");
        si.del.push(t.elapsed());
        netns::delete_named(&name).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let floor = median(&si.add) + median(&si.del);
    let total =
        |s: &Series| -> Vec<Duration> { s.add.iter().zip(&s.del).map(|(a, d)| *a + *d).collect() };
    println!(
        "\nattach bench: {pods} pods, 2 macvlan networks each, host-local IPAM (medians, ms)\n"
    );
    println!(
        "| {:<34} | {:>7} | {:>7} | {:>7} | {:>13} | {:>9} |",
        "scenario", "ADD", "DEL", "ADD+DEL", "min-max", "vs ip"
    );
    println!(
        "|{}|",
        [
            "-".repeat(36),
            "-".repeat(9),
            "-".repeat(9),
            "-".repeat(9),
            "-".repeat(15),
            "-".repeat(11)
        ]
        .join("|")
    );
    for (label, s) in [
        ("plexus native (netlink, group del)", &sn),
        ("plexus exec (reference plugins)", &se),
        ("ip -batch floor (2 execs + 1)", &si),
    ] {
        let t = total(s);
        let min = t.iter().min().map(|d| ms(*d)).unwrap_or(f64::NAN);
        let max = t.iter().max().map(|d| ms(*d)).unwrap_or(f64::NAN);
        println!(
            "| {:<34} | {:>7.2} | {:>7.2} | {:>7.2} | {:>6.1}-{:<6.1} | {:>8.2}x |",
            label,
            median(&s.add),
            median(&s.del),
            median(&t),
            min,
            max,
            median(&t) / floor
        );
    }
    println!(
        "\nnative / ip floor = {:.2}x (target <= 1.5x); exec / native = {:.2}x",
        median(&total(&sn)) / floor,
        median(&total(&se)) / median(&total(&sn))
    );
}

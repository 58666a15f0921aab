//! The crash-loop standing check (privileged; issue 9): plexusd is SIGKILLed at random
//! moments — during start-up recovery, and while setups and teardowns of many pods are in
//! flight — and restarted on the same state, again and again. Every pod gets a native
//! network (macvlan, in-process host-local) and an exec network (the reference bridge
//! plugin behind a wrapper, so the native driver does not take it). In the end a clean
//! plexusd tears every pod down, and nothing may be left: no link or address in any pod or
//! in the host namespace, no host-local lease, no state record, no libcni cache entry, no
//! temp file.
//!
//! The moments come from a seeded generator; the seed is printed and can be replayed with
//! `PLEXUS_CRASH_LOOP_SEED=<n>`. `PLEXUS_CRASH_LOOP_ROUNDS` changes the number of kills.
//! Between kills the test waits for plugins the killed plexusd left running; with
//! `PLEXUS_CRASH_LOOP_RACE_ORPHANS=1` it does not, and they race the next recovery — a
//! known gap (an orphaned exec ADD that finishes after recovery undid its attachment
//! leaves a link and a lease behind).

mod support;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use plexus_client::v1;
use plexus_netlink::test_util::{TestNetns, require_privileged, unique_name};
use plexus_testkit::rng::Rng;
use support::{
    Plexusd, assigned_addresses, files_naming, install_plugin, lease_files, link_names, nad,
    recorded, write_config, write_nads,
};

/// Pods set up and torn down across the kills.
const PODS: usize = 24;
/// Kills by default (each a restart); a few seconds each.
const ROUNDS: usize = 40;
/// Bound on waiting for what must happen; reached only when something is broken.
const HANG_GUARD: Duration = Duration::from_secs(60);

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The exec network's plugin: the reference bridge, run (not exec'd) so the wrapper can
/// record its pid for the duration of the run (`pids/<pid>`).
fn bridge_wrapper(pids: &Path) -> String {
    let pids = pids.display();
    format!(
        "#!/bin/sh\necho $$ > {pids}/$$\n/usr/lib/cni/bridge\nrc=$?\nrm -f {pids}/$$\nexit $rc\n"
    )
}

/// Waits until no plugin started by a killed plexusd is still running: plugins lead their
/// own process group and outlive plexusd by design.
async fn wait_plugins_gone(pids: &Path) {
    let until = Instant::now() + HANG_GUARD;
    loop {
        let running: Vec<i32> = std::fs::read_dir(pids)
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|pid| kill(Pid::from_raw(*pid), None).is_ok())
            .collect();
        if running.is_empty() {
            return;
        }
        assert!(Instant::now() < until, "plugins still running: {running:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn setup_request(i: usize, netns: &Path) -> v1::SetupPodRequest {
    v1::SetupPodRequest {
        pod: Some(v1::PodRef {
            namespace: "default".into(),
            name: format!("loop-{i}"),
            uid: format!("uid-loop-{i}"),
        }),
        sandbox_id: format!("sb-loop-{i}"),
        netns_path: netns.to_string_lossy().into_owned(),
        annotations: HashMap::from([(
            "k8s.v1.cni.cncf.io/networks".to_owned(),
            "mv,xbr".to_owned(),
        )]),
        labels: HashMap::new(),
        may_finish_later: false,
    }
}

fn teardown_request(i: usize, netns: &Path) -> v1::TeardownPodRequest {
    v1::TeardownPodRequest {
        sandbox_id: format!("sb-loop-{i}"),
        netns_path: netns.to_string_lossy().into_owned(),
        ..Default::default()
    }
}

/// Every file below `dir` (recursively), for the final emptiness checks.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    files_naming(dir, "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_then_teardown_leaves_nothing() {
    if !require_privileged() {
        return;
    }
    let seed = env_number("PLEXUS_CRASH_LOOP_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let rounds = env_number("PLEXUS_CRASH_LOOP_ROUNDS").map_or(ROUNDS, |n| n as usize);
    // Known gap, off by default: a plugin orphaned by a kill (plugins lead their own process
    // group) may finish its ADD after the next plexusd's recovery undid the attachment,
    // leaving a link and a lease no record names.
    let race_orphans = env_number("PLEXUS_CRASH_LOOP_RACE_ORPHANS") == Some(1);
    eprintln!(
        "crash loop: seed {seed} (PLEXUS_CRASH_LOOP_SEED={seed} replays it), {rounds} kills, {PODS} pods"
    );
    let mut rng = Rng::new(seed);

    let host = TestNetns::new().await;
    let uplink = unique_name("up");
    host.veth_pair(&uplink, &unique_name("pe")).await.unwrap();
    let bridge = unique_name("br");
    let mut pods = Vec::new();
    for _ in 0..PODS {
        let pod = TestNetns::new().await;
        pod.veth_pair("eth0", "eth0peer").await.unwrap();
        pods.push(pod);
    }
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = write_config(dir.path(), &host);
    let mut text = std::fs::read_to_string(&config).unwrap();
    // Two cores shared with other work: the default NRI budget would turn load into
    // deadline undos rather than the crashes under test (those still happen sometimes).
    text.push_str("nri: {deadlineBudget: 20s}\n");
    std::fs::write(&config, text).unwrap();
    let leases = dir.path().join("leases");
    let state = dir.path().join("state");
    let cache = dir.path().join("cache");
    let pids = dir.path().join("pids");
    std::fs::create_dir_all(&pids).unwrap();
    install_plugin(dir.path(), "xbridge", &bridge_wrapper(&pids));
    let mv = serde_json::json!({"cniVersion": "1.0.0", "type": "macvlan", "master": uplink,
        "mode": "bridge", "ipam": {"type": "host-local", "subnet": "10.250.64.0/24"}});
    let xbr = serde_json::json!({"cniVersion": "1.0.0", "type": "xbridge", "bridge": bridge,
        "isGateway": false,
        "ipam": {"type": "host-local", "subnet": "10.250.65.0/24", "dataDir": leases}});
    write_nads(dir.path(), &[nad("mv", mv), nad("xbr", xbr)]);

    let mut pod_links = Vec::new();
    let mut pod_addrs = Vec::new();
    for pod in &pods {
        pod_links.push(link_names(pod).await);
        pod_addrs.push(assigned_addresses(pod, "").await);
    }
    let host_links = link_names(&host).await;
    let host_addrs = assigned_addresses(&host, &bridge).await;

    let mut set_up_once = BTreeSet::new();
    let mut kills_in_recovery = 0;
    let (mut issued, mut interrupted) = (0, 0);
    for round in 0..rounds {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_plexusd"));
        cmd.arg("--config").arg(&config).env("RUST_LOG", "error");
        let mut daemon = Plexusd::adopt(cmd.spawn().unwrap());
        if rng.below(4) == 0 {
            // Killed during start-up: lock, sweep, recovery.
            kills_in_recovery += 1;
            tokio::time::sleep(Duration::from_millis(rng.below(150))).await;
        } else {
            daemon.wait_serving(&socket, HANG_GUARD).await;
            let mut tasks = Vec::new();
            for (i, pod) in pods.iter().enumerate() {
                let setup = rng.below(3) != 0;
                if setup {
                    set_up_once.insert(i);
                }
                let (request_setup, request_teardown) = (
                    setup_request(i, &pod.path()),
                    teardown_request(i, &pod.path()),
                );
                let socket = socket.clone();
                tasks.push(tokio::spawn(async move {
                    let Ok(mut client) = plexus_client::connect(&socket).await else {
                        return false;
                    };
                    // Answers do not matter beyond counting: the kill interrupts some.
                    if setup {
                        client.setup_pod(request_setup).await.is_ok()
                    } else {
                        client.teardown_pod(request_teardown).await.is_ok()
                    }
                }));
            }
            tokio::time::sleep(Duration::from_millis(20 + rng.below(700))).await;
            // The kill is the point; the requests end with it.
            kill(Pid::from_raw(daemon.pid() as i32), Signal::SIGKILL).unwrap();
            for task in tasks {
                issued += 1;
                if !task.await.unwrap() {
                    interrupted += 1;
                }
            }
        }
        let _ = kill(Pid::from_raw(daemon.pid() as i32), Signal::SIGKILL);
        let status = daemon.wait();
        eprintln!("crash loop: round {round}: plexusd ended: {status}");
        drop(daemon);
        if !race_orphans {
            wait_plugins_gone(&pids).await;
        }
    }
    assert!(
        set_up_once.len() >= 20,
        "only {} pods were set up",
        set_up_once.len()
    );

    // Before the last start orphaned plugins are let finish, so what the final teardown
    // finds is all there is.
    wait_plugins_gone(&pids).await;
    // A clean plexusd recovers and tears everything down.
    let _daemon = Plexusd::start(&config, &socket, None).await;
    let mut client = plexus_client::connect(&socket).await.unwrap();
    for (i, pod) in pods.iter().enumerate() {
        client
            .teardown_pod(teardown_request(i, &pod.path()))
            .await
            .unwrap_or_else(|e| panic!("teardown of pod {i} (seed {seed}): {e:?}"));
    }
    wait_plugins_gone(&pids).await;

    let mut left = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        let links = link_names(pod).await;
        if links != pod_links[i] {
            left.push(format!("pod {i} links {links:?}"));
        }
        let addrs = assigned_addresses(pod, "").await;
        if addrs != pod_addrs[i] {
            left.push(format!("pod {i} addresses {addrs:?}"));
        }
    }
    let mut host_now = link_names(&host).await;
    // The bridge is shared infrastructure: like the reference plugin, it stays.
    host_now.remove(&bridge);
    if host_now != host_links {
        left.push(format!("host links {host_now:?}"));
    }
    if assigned_addresses(&host, &bridge).await != host_addrs {
        left.push(format!(
            "host addresses {:?}",
            assigned_addresses(&host, &bridge).await
        ));
    }
    let lease_left = lease_files(&leases);
    if !lease_left.is_empty() {
        let held: Vec<String> = files_below(&leases)
            .into_iter()
            .filter(|p| lease_left.iter().any(|l| p.ends_with(l)))
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                format!("{} holding {text:?}", p.display())
            })
            .collect();
        left.push(format!("leases {held:?}"));
    }
    let state_left: Vec<PathBuf> = files_below(&state)
        .into_iter()
        .filter(|p| !p.ends_with("plexusd.lock"))
        .collect();
    if !state_left.is_empty() {
        left.push(format!("state {state_left:?}"));
    }
    let cache_left = files_below(&cache);
    if !cache_left.is_empty() {
        left.push(format!("cache {cache_left:?}"));
    }
    let records = recorded(&mut client).await;
    if !records.is_empty() {
        left.push(format!("records {records:?}"));
    }
    eprintln!(
        "crash loop: seed {seed}: {rounds} kills ({kills_in_recovery} during start-up), {interrupted} of {issued} requests cut off, {} pods set up at least once",
        set_up_once.len()
    );
    assert!(
        left.is_empty(),
        "left behind (seed {seed}):\n{}",
        left.join("\n")
    );
}

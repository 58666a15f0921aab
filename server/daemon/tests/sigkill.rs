//! plexusd killed with a real SIGKILL in the middle of a pod's setup (privileged): the pod
//! gets a macvlan (native driver) and a bridge network whose plugin has made its veth,
//! address and host-local lease but not yet answered. plexusd is killed by pid, restarted
//! on the same state directory, and teardown leaves nothing behind: no link on either side,
//! no address, no lease, no state record, no libcni cache entry.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use plexus_client::v1;
use plexus_netlink::test_util::{require_privileged, unique_name};
use support::{
    Namespaces, Plexusd, assigned_addresses, files_naming, install_plugin, lease_files, link_names,
    nad, recorded, setup_request_for, slow_bridge_script, write_config, write_nads,
};

/// How long the slow plugin waits after doing its work: far longer than the test needs to
/// kill plexusd, short enough that the orphaned plugin is gone soon after.
const PLUGIN_SLEEP_SECS: u32 = 4;

/// Waits until `pid` has exited (the orphaned plugin; it was started by our plexusd).
async fn wait_gone(pid: Pid, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if kill(pid, None).is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_setup_then_restart_and_teardown_leaves_nothing() {
    if !require_privileged() {
        return;
    }
    let Namespaces { host, pod, uplink } = Namespaces::new().await;
    let bridge = unique_name("br");
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = write_config(dir.path(), &host);
    let leases = dir.path().join("leases");
    let marker = dir.path().join("slow-add-ran");
    install_plugin(
        dir.path(),
        "slowbridge",
        &slow_bridge_script(&marker, PLUGIN_SLEEP_SECS),
    );
    let mv = serde_json::json!({"cniVersion": "1.0.0", "type": "macvlan", "master": uplink,
        "mode": "bridge", "ipam": {"type": "host-local", "subnet": "10.250.7.0/24"}});
    // The exec path: host-local needs the test's lease directory spelled out.
    let slow = serde_json::json!({"cniVersion": "1.0.0", "type": "slowbridge",
        "bridge": bridge, "isGateway": false,
        "ipam": {"type": "host-local", "subnet": "10.250.8.0/24", "dataDir": leases}});
    write_nads(dir.path(), &[nad("mv", mv), nad("slowbr", slow)]);
    let pod_links = link_names(&pod).await;
    let pod_addrs = assigned_addresses(&pod, "").await;
    let host_links = link_names(&host).await;
    let host_addrs = assigned_addresses(&host, &bridge).await;

    // 1. SetupPod with two networks; SIGKILL plexusd while the second one's plugin runs.
    let mut daemon = Plexusd::start(&config, &socket, None).await;
    let mut client = plexus_client::connect(&socket).await.unwrap();
    let request = setup_request_for("sb-kill", &pod.path(), "mv,slowbr");
    let setup = tokio::spawn(async move { client.setup_pod(request).await });
    let until = Instant::now() + Duration::from_secs(15);
    while !marker.exists() {
        assert!(!setup.is_finished(), "setup ended early: {:?}", setup.await);
        assert!(Instant::now() < until, "the slow plugin never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let plugin: i32 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let killed_at = Instant::now();
    kill(Pid::from_raw(daemon.pid() as i32), Signal::SIGKILL).unwrap();
    let status = daemon.wait();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    let answer = setup.await.unwrap();
    assert!(answer.is_err(), "setup cannot have answered: {answer:?}");
    drop(daemon);

    // The kill left real half-made state: both interfaces and both leases exist, and the
    // record names the sandbox.
    let now = link_names(&pod).await;
    assert!(now.contains("net1") && now.contains("net2"), "{now:?}");
    assert_eq!(lease_files(&leases).len(), 2, "{:?}", lease_files(&leases));
    let state = dir.path().join("state");
    assert!(!files_naming(&state, "sb-kill").is_empty(), "no record");

    // 2. Restart on the same state: recovery undoes the unfinished setup, both networks
    //    (the networks of a pod are made at once and recorded done together: a setup that
    //    never answered is not kept in part); the runtime's eth0 stays recorded, and
    //    teardown removes the rest.
    let restarted = Instant::now();
    let _daemon = Plexusd::start(&config, &socket, None).await;
    let recovered_in = restarted.elapsed();
    let mut client = plexus_client::connect(&socket).await.unwrap();
    assert_eq!(
        recorded(&mut client).await,
        [("sb-kill".to_owned(), "eth0".to_owned())]
    );
    let now = link_names(&pod).await;
    assert!(
        !now.contains("net1") && !now.contains("net2"),
        "recovery undid both: {now:?}"
    );
    assert!(
        lease_files(&leases).is_empty(),
        "{:?}",
        lease_files(&leases)
    );
    let down = client
        .teardown_pod(v1::TeardownPodRequest {
            sandbox_id: "sb-kill".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(down.known);
    assert!(
        down.removed.is_empty(),
        "recovery removed them: {:?}",
        down.removed
    );

    assert_eq!(link_names(&pod).await, pod_links, "pod links left");
    assert_eq!(
        assigned_addresses(&pod, "").await,
        pod_addrs,
        "pod addresses left"
    );
    let mut host_after = link_names(&host).await;
    // The bridge is shared infrastructure: like the reference plugin, it stays (with only
    // its IPv6 link-local address, as isGateway is false).
    host_after.remove(&bridge);
    assert_eq!(host_after, host_links, "host links left");
    assert_eq!(
        assigned_addresses(&host, &bridge).await,
        host_addrs,
        "host addresses left"
    );
    assert!(
        lease_files(&leases).is_empty(),
        "leases left: {:?}",
        lease_files(&leases)
    );
    assert_eq!(
        files_naming(&state, "sb-kill"),
        Vec::<std::path::PathBuf>::new()
    );
    assert_eq!(
        files_naming(&dir.path().join("cache"), "sb-kill"),
        Vec::<std::path::PathBuf>::new()
    );
    assert!(recorded(&mut client).await.is_empty());
    eprintln!(
        "sigkill test: restart and recovery {recovered_in:?}, kill to clean {:?}",
        killed_at.elapsed()
    );

    // The plugin was in its own process group, so it outlived plexusd; it ends by itself.
    let plugin = Pid::from_raw(plugin);
    if !wait_gone(
        plugin,
        Duration::from_secs(u64::from(PLUGIN_SLEEP_SECS) + 5),
    )
    .await
    {
        let _ = kill(plugin, Signal::SIGKILL);
        panic!("the orphaned plugin {plugin} did not exit");
    }
    // Its late exit changed nothing.
    assert!(lease_files(&leases).is_empty());
    assert_eq!(link_names(&pod).await, pod_links);
}

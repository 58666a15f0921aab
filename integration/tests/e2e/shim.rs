//! The CNI shim path on a real containerd with NRI disabled: plexusd wraps the primary
//! bridge conflist in `00-plexus.conflist`, containerd loads it (NetworkReady stays true),
//! pods get eth0 from plexus plus their annotation networks, delete leaves nothing (the
//! primary's lease included), and a DEL while plexusd is down is spooled and completed
//! when it starts again.

use std::time::Duration;

use plexus_integration::containerd::PRIMARY_NETWORK;
use plexus_integration::env::{MACVLAN, NAMESPACE};
use plexus_integration::{Env, PodSpec, require_privileged};

use crate::common::{eventually, wait_nothing_left};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_nri_the_shim_gives_eth0_and_net1_and_delete_leaves_nothing() {
    if !require_privileged() {
        return;
    }
    let env = Env::start_shim().await.unwrap();
    let own = env
        .containerd
        .paths()
        .cni_conf_dir
        .join("00-plexus.conflist");
    let generated: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&own).unwrap()).unwrap();
    assert_eq!(generated["plugins"][0]["delegate"]["name"], PRIMARY_NETWORK);

    let spec = PodSpec::new(NAMESPACE, "shim-pod").networks(MACVLAN);
    let pod = env.containerd.run_pod(&spec).await.unwrap();
    let names: Vec<String> = pod
        .interfaces()
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["lo", "eth0", "net1"]);
    let atts = env.plexus.attachments_of(&pod.id).await.unwrap();
    let eth0 = atts.iter().find(|a| a.interface == "eth0").unwrap();
    // plexus made eth0 itself, with the wrapped primary, through the plugin binaries.
    assert_eq!(
        (
            eth0.driver.as_str(),
            eth0.origin.as_str(),
            eth0.network.as_str()
        ),
        ("exec", "cluster", PRIMARY_NETWORK)
    );
    assert_eq!(eth0.ips, pod.interface("eth0").unwrap().addresses);
    let status: serde_json::Value =
        serde_json::from_str(&env.plexus.network_status(&pod).await.unwrap()).unwrap();
    assert_eq!(status[0]["name"], PRIMARY_NETWORK);
    assert_eq!(status[0]["default"], true);
    assert_eq!(status[1]["name"], format!("{NAMESPACE}/{MACVLAN}"));
    assert_eq!(status[1]["interface"], "net1");
    assert_eq!(env.primary_leases().len(), 1);

    env.containerd.delete_pod(&pod).await.unwrap();
    wait_nothing_left(&env, Duration::from_secs(5)).await;
    assert!(
        env.primary_leases().is_empty(),
        "{:?}",
        env.primary_leases()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_del_while_plexusd_is_down_is_spooled_and_completed_at_start() {
    if !require_privileged() {
        return;
    }
    let mut env = Env::start_shim().await.unwrap();
    let spec = PodSpec::new(NAMESPACE, "spooled").networks(MACVLAN);
    let pod = env.containerd.run_pod(&spec).await.unwrap();
    env.plexus.stop_plexusd();
    // A stopping plexusd leaves its config: pods would fail and retry, not start bare.
    let own = env
        .containerd
        .paths()
        .cni_conf_dir
        .join("00-plexus.conflist");
    assert!(own.exists());

    env.containerd.delete_pod(&pod).await.unwrap();
    let spool = env.plexus.paths().state_dir.join("cni-spool");
    let spooled: Vec<String> = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(spooled, [format!("{}.del", pod.id)]);
    assert_eq!(env.primary_leases().len(), 1, "nothing released yet");

    env.plexus.start_plexusd().await.unwrap();
    // Spooled DELs run before plexusd serves: once it answers, they are done.
    assert!(env.plexus.attachments().await.unwrap().is_empty());
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0);
    wait_nothing_left(&env, Duration::from_secs(5)).await;
    assert!(
        env.primary_leases().is_empty(),
        "{:?}",
        env.primary_leases()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_plexusd_down_a_pod_fails_to_start_and_succeeds_once_it_is_back() {
    if !require_privileged() {
        return;
    }
    let mut env = Env::start_shim().await.unwrap();
    env.plexus.stop_plexusd();
    let spec = PodSpec::new(NAMESPACE, "retried").networks(MACVLAN);
    let err = env.containerd.run_pod(&spec).await.unwrap_err().to_string();
    let socket = env.plexus.paths().socket.display().to_string();
    assert!(
        err.contains("plexusd is not reachable") && err.contains(&socket),
        "{err}"
    );
    assert!(env.primary_leases().is_empty(), "no eth0 was made");

    env.plexus.start_plexusd().await.unwrap();
    let pod = env.containerd.run_pod(&spec).await.unwrap();
    let names: Vec<String> = pod
        .interfaces()
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["lo", "eth0", "net1"]);
    env.containerd.delete_pod(&pod).await.unwrap();
    wait_nothing_left(&env, Duration::from_secs(5)).await;
    assert!(
        env.primary_leases().is_empty(),
        "{:?}",
        env.primary_leases()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nri_enabled_too_a_shim_pod_is_set_up_exactly_once() {
    if !require_privileged() {
        return;
    }
    let c = plexus_integration::containerd::Options {
        private_cni_bin: true,
        ..Default::default()
    };
    let p = plexus_integration::plexus::Options {
        shim: true,
        ..Default::default()
    };
    let mut env = Env::start_with(c, p).await.unwrap();
    env.plexus.start_nri().await.unwrap();
    let loaded = format!("\"Name\":\"{}\"", plexus_integration::env::SHIM_NETWORK);
    env.containerd
        .wait_cni_config(&loaded, Duration::from_secs(15))
        .await
        .unwrap();

    let spec = PodSpec::new(NAMESPACE, "both-paths").networks(MACVLAN);
    let pod = env.containerd.run_pod(&spec).await.unwrap();
    let names: Vec<String> = pod
        .interfaces()
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["lo", "eth0", "net1"]);
    // The NRI event (after the CNI ADD, before RunPodSandbox returned) found the shim's
    // record complete and did nothing: eth0 is still the one plexus executed.
    let atts = env.plexus.attachments_of(&pod.id).await.unwrap();
    let drivers: Vec<(&str, &str)> = atts
        .iter()
        .map(|a| (a.interface.as_str(), a.driver.as_str()))
        .collect();
    assert_eq!(drivers, [("eth0", "exec"), ("net1", "native")]);
    // Logged before plexus-nri answered; written by its log thread a moment later.
    let nri_log = || std::fs::read_to_string(&env.plexus.paths().nri_log).unwrap_or_default();
    eventually(
        "plexus-nri's log of the NRI event",
        Duration::from_secs(5),
        || async { nri_log().contains("pod networks set up") },
    )
    .await;
    env.containerd.delete_pod(&pod).await.unwrap();
    wait_nothing_left(&env, Duration::from_secs(5)).await;
    assert!(
        env.primary_leases().is_empty(),
        "{:?}",
        env.primary_leases()
    );
}

//! Pods whose networks cannot be attached: RunPodSandbox fails with a message naming the
//! network, and nothing is left behind (no sandbox, no link, no lease, no attachment).

use std::time::Duration;

use plexus_integration::env::{BRIDGE, BROKEN, MACVLAN, NAMESPACE, NO_MASTER};
use plexus_integration::{Env, PodSpec, require_privileged};

use crate::common::wait_nothing_left;

pub(crate) async fn assert_pod_fails_naming(env: &Env, name: &str, networks: &str, culprit: &str) {
    let spec = PodSpec::new(NAMESPACE, name).networks(networks);
    let err = env.containerd.run_pod(&spec).await.unwrap_err();
    let msg = err
        .cri_message()
        .unwrap_or_else(|| panic!("not a CRI error: {err}"));
    assert!(
        msg.contains(culprit),
        "message does not name {culprit}: {msg}"
    );
    eprintln!("RunPodSandbox failed as expected: {msg}");
    let left = env.containerd.cri().list_pod_sandboxes().await.unwrap();
    assert!(left.is_empty(), "sandboxes left: {left:?}");
    let primary = plexus_integration::env::leases_under(&env.containerd.paths().primary_ipam_dir);
    assert!(primary.is_empty(), "primary leases left: {primary:?}");
    wait_nothing_left(env, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_network_fails_the_pod_and_leaves_nothing() {
    if !require_privileged() {
        return;
    }
    let env = Env::start().await.unwrap();
    assert_pod_fails_naming(&env, "unknown", "no-such-net", "no-such-net").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_delegate_fails_the_pod_and_undoes_the_networks_before_it() {
    if !require_privileged() {
        return;
    }
    let env = Env::start().await.unwrap();
    let networks = format!("{MACVLAN},{BROKEN}");
    assert_pod_fails_naming(&env, "broken", &networks, BROKEN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_macvlan_master_fails_the_pod_and_undoes_the_networks_before_it() {
    if !require_privileged() {
        return;
    }
    let env = Env::start().await.unwrap();
    let networks = format!("{MACVLAN},{BRIDGE},{NO_MASTER}");
    assert_pod_fails_naming(&env, "no-master", &networks, NO_MASTER).await;
}

//! Bursts (issue 14): many pods started at once through CRI — on the NRI path, and on the
//! shim path where the runtime's CNI calls reach plexusd concurrently — all get their two
//! secondary networks with distinct addresses, and deleting them all at once leaves
//! nothing. Lean on purpose (24 pods per path); `make bench` runs the 200-pod burst and
//! prints its latencies and plexusd's memory.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::join_all;
use plexus_integration::env::{BRIDGE, MACVLAN, NAMESPACE};
use plexus_integration::{Env, PodSpec, require_privileged};

use crate::common::wait_nothing_left;

/// Pods per burst.
const PODS: usize = 24;

async fn burst(env: &Env, prefix: &str) {
    let specs: Vec<PodSpec> = (0..PODS)
        .map(|i| {
            PodSpec::new(NAMESPACE, &format!("{prefix}-{i}"))
                .networks(&format!("{MACVLAN},{BRIDGE}"))
        })
        .collect();
    let started = join_all(specs.iter().map(|s| env.containerd.run_pod(s))).await;
    let failed: Vec<String> = started
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {PODS} failed: {failed:?}",
        failed.len()
    );
    let pods: Vec<_> = started.into_iter().map(Result::unwrap).collect();
    let mut seen = BTreeSet::new();
    for pod in &pods {
        for ifname in ["net1", "net2"] {
            let iface = pod.interface(ifname).unwrap();
            assert_eq!(iface.addresses.len(), 1, "{} {ifname}: {iface:?}", pod.name);
            assert!(
                seen.insert(iface.addresses[0].clone()),
                "{} {ifname}: address {} given twice",
                pod.name,
                iface.addresses[0]
            );
        }
    }
    let recorded: BTreeSet<String> = env
        .plexus
        .attachments()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.sandbox_id)
        .collect();
    assert_eq!(recorded.len(), PODS, "one record per pod");
    let deleted = join_all(pods.iter().map(|p| env.containerd.delete_pod(p))).await;
    for d in deleted {
        d.unwrap();
    }
    wait_nothing_left(env, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_pods_through_nri_all_get_their_networks_and_leave_nothing() {
    if !require_privileged() {
        return;
    }
    let env = Env::start().await.unwrap();
    burst(&env, "burst-nri").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_pods_through_the_shim_all_get_their_networks_and_leave_nothing() {
    if !require_privileged() {
        return;
    }
    let env = Env::start_shim().await.unwrap();
    burst(&env, "burst-shim").await;
    assert!(
        env.primary_leases().is_empty(),
        "{:?}",
        env.primary_leases()
    );
}

//! Restarts under running pods: containerd (the plugin reconnects), plexus-nri (a pod
//! deleted while it was down is reclaimed on Synchronize), plexusd (teardown still
//! removes everything from its recorded state).

use std::time::Duration;

use plexus_integration::env::{BRIDGE, MACVLAN, NAMESPACE};
use plexus_integration::{Env, PodSpec, require_privileged};

use crate::common::{eventually, secondary, wait_nothing_left};

fn two_nets(name: &str) -> PodSpec {
    PodSpec::new(NAMESPACE, name).networks(&format!("{MACVLAN},{BRIDGE}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_restart_under_running_pods_the_plugin_reconnects() {
    if !require_privileged() {
        return;
    }
    let mut env = Env::start().await.unwrap();
    let old = env.containerd.run_pod(&two_nets("before")).await.unwrap();
    let before = env.plexus.nri_connections();

    env.containerd.restart().await.unwrap();
    env.plexus
        .wait_nri_connected(before, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(old.interface("net1").is_ok(), "old pod lost net1");

    let new = env.containerd.run_pod(&two_nets("after")).await.unwrap();
    assert!(new.interface("net1").is_ok() && new.interface("net2").is_ok());
    env.containerd.delete_pod(&new).await.unwrap();
    eventually(
        "the new pod's attachments to go",
        Duration::from_secs(5),
        || async { env.plexus.attachments_of(&new.id).await.unwrap().is_empty() },
    )
    .await;

    // containerd sends no NRI Stop/Remove for pods that predate its restart: the old
    // pod's attachments are reclaimed by the reconcile on the next Synchronize.
    env.containerd.delete_pod(&old).await.unwrap();
    let before = env.plexus.nri_connections();
    env.plexus.stop_nri();
    env.plexus.start_nri().await.unwrap();
    assert!(env.plexus.nri_connections() > before);
    wait_nothing_left(&env, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_deleted_while_the_plugin_was_down_is_reclaimed_on_synchronize() {
    if !require_privileged() {
        return;
    }
    let mut env = Env::start().await.unwrap();
    let keep = env
        .containerd
        .run_pod(&PodSpec::new(NAMESPACE, "survivor").networks(MACVLAN))
        .await
        .unwrap();
    let gone = env.containerd.run_pod(&two_nets("orphan")).await.unwrap();
    assert_eq!(env.plexus_leases().len(), 3);

    env.plexus.stop_nri();
    env.containerd.delete_pod(&gone).await.unwrap();
    let orphaned = secondary(env.plexus.attachments_of(&gone.id).await.unwrap());
    assert_eq!(orphaned.len(), 2, "plexusd cannot know yet: {orphaned:?}");

    env.plexus.start_nri().await.unwrap();
    eventually(
        "the orphan's attachments to be reclaimed",
        Duration::from_secs(10),
        || async {
            env.plexus
                .attachments_of(&gone.id)
                .await
                .unwrap()
                .is_empty()
        },
    )
    .await;
    assert_eq!(env.plexus_leases().len(), 1, "{:?}", env.plexus_leases());
    let kept = secondary(env.plexus.attachments_of(&keep.id).await.unwrap());
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(keep.interface("net1").is_ok());

    env.containerd.delete_pod(&keep).await.unwrap();
    wait_nothing_left(&env, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plexusd_restart_under_running_pods_teardown_still_removes_everything() {
    if !require_privileged() {
        return;
    }
    let mut env = Env::start().await.unwrap();
    let pod = env.containerd.run_pod(&two_nets("steady")).await.unwrap();
    let recorded = env.plexus.attachments_of(&pod.id).await.unwrap();
    assert_eq!(secondary(recorded.clone()).len(), 2, "{recorded:?}");

    env.plexus.crash_plexusd();
    env.plexus.start_plexusd().await.unwrap();
    let reloaded = env.plexus.attachments_of(&pod.id).await.unwrap();
    assert_eq!(reloaded, recorded, "state after restart differs");

    env.containerd.delete_pod(&pod).await.unwrap();
    assert!(!pod.netns_exists());
    wait_nothing_left(&env, Duration::from_secs(5)).await;
}

//! The order containerd 1.7 tears a pod down in, which plexus's link deletion after the
//! answer relies on (`docs/teardown.md`), checked on the real containerd: when CRI
//! StopPodSandbox returns (NRI StopPodSandbox, then containerd's own CNI DEL, then the
//! netns removal), the pod's netns path is already gone. plexus-nri answered that Stop at
//! once (plexusd said so at setup: it holds the pod's netns, `held.rs`), so plexus's
//! teardown runs beside it: moments later plexus lists nothing for the pod, and the leases,
//! released once the addresses are gone from the held netns (`teardown/early.rs`), are
//! free; the links die with the netns when plexusd lets go of it; after
//! RemovePodSandbox nothing of plexus is left, host side included, and the reaper's batch
//! (`removal_batch`, 1 s) removes the pod's record and its teardown mark.

use std::time::Duration;

use plexus_integration::env::{BRIDGE, MACVLAN, NAMESPACE};
use plexus_integration::{Env, PodSpec, require_privileged};

use crate::common::{eventually, wait_nothing_left};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_stop_the_leases_are_released_and_the_netns_is_gone_with_the_links() {
    if !require_privileged() {
        return;
    }
    let env = Env::start().await.unwrap();
    let spec = PodSpec::new(NAMESPACE, "stop-order").networks(&format!("{MACVLAN},{BRIDGE}"));
    let pod = env.containerd.run_pod(&spec).await.unwrap();
    assert!(pod.netns.exists());
    assert_eq!(env.plexus_leases().len(), 2, "{:?}", env.plexus_leases());
    let state = env.plexus.paths().state_dir.clone();
    let (record, mark) = (
        state.join(format!("{}.json", pod.id)),
        state.join(format!("{}.tearing-down", pod.id)),
    );
    assert!(record.is_file(), "{} missing", record.display());

    env.containerd
        .cri()
        .stop_pod_sandbox(&pod.id)
        .await
        .unwrap();
    assert!(
        !pod.netns.exists(),
        "containerd removes the netns within StopPodSandbox, after its CNI DEL"
    );
    eventually(
        "plexusd to tear the pod down beside the stop (nothing listed)",
        Duration::from_secs(5),
        || async { env.plexus.attachments_of(&pod.id).await.unwrap().is_empty() },
    )
    .await;
    eventually(
        "plexusd to release the pod's leases after its answer",
        Duration::from_secs(5),
        || async { env.plexus_leases().is_empty() },
    )
    .await;

    env.containerd
        .cri()
        .remove_pod_sandbox(&pod.id)
        .await
        .unwrap();
    wait_nothing_left(&env, Duration::from_secs(5)).await;
    eventually(
        "plexusd to remove the pod's record and teardown mark",
        Duration::from_secs(10),
        || async { !record.exists() && !mark.exists() },
    )
    .await;
}

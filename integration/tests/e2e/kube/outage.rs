//! API server outages: pods keep starting from the cached NADs, and network-status lands
//! once the API server is back, also when plexusd restarted during the outage.

use std::time::Duration;

use plexus_integration::env::{BRIDGE, MACVLAN, NAMESPACE};
use plexus_integration::{PodSpec, require_privileged};

use super::{AFTER_OUTAGE, KubeEnv, PROMPT};
use crate::common::wait_nothing_left;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_api_down_during_pod_creation_the_pod_starts_and_its_status_lands_later() {
    if !require_privileged() {
        return;
    }
    let k = KubeEnv::start().await;
    // A first pod proves plexusd holds the NADs (an unsynced cache refuses pods).
    let (first, _) = k
        .run_pod(&PodSpec::new(NAMESPACE, "kube-warm").networks(MACVLAN))
        .await
        .unwrap();
    k.api.wait_network_status(&first, PROMPT).await;

    k.api.stop().await;
    let (pod, spec) = k
        .run_pod(&PodSpec::new(NAMESPACE, "kube-dark").networks(&format!("{MACVLAN},{BRIDGE}")))
        .await
        .unwrap();
    assert!(pod.interface("net1").is_ok() && pod.interface("net2").is_ok());
    assert_eq!(k.api.network_status(&pod), None);
    // plexusctl shows the outage and what waits for the API server.
    let deadline = tokio::time::Instant::now() + PROMPT;
    loop {
        let state: serde_json::Value = serde_json::from_str(
            &k.env
                .plexus
                .plexusctl(&["status", "--output", "json"])
                .unwrap(),
        )
        .unwrap();
        let kube = &state["kubernetes"];
        if kube["apiConnected"] == false && kube["statusBacklog"].as_u64() >= Some(1) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{state:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    k.api.restart().await;
    let published = k.api.wait_network_status(&pod, AFTER_OUTAGE).await;
    assert_eq!(published, k.env.plexus.network_status(&pod).await.unwrap());
    k.api
        .wait_events(NAMESPACE, &spec.uid, "AddedInterface", 3, AFTER_OUTAGE)
        .await;

    for p in [&first, &pod] {
        k.env.containerd.delete_pod(p).await.unwrap();
    }
    wait_nothing_left(&k.env, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_plexusd_restarted_during_an_outage_the_status_still_converges() {
    if !require_privileged() {
        return;
    }
    let mut k = KubeEnv::start().await;
    let (first, _) = k
        .run_pod(&PodSpec::new(NAMESPACE, "kube-warm").networks(BRIDGE))
        .await
        .unwrap();
    k.api.wait_network_status(&first, PROMPT).await;

    k.api.stop().await;
    let (pod, _) = k
        .run_pod(&PodSpec::new(NAMESPACE, "kube-lost").networks(MACVLAN))
        .await
        .unwrap();
    // plexusd dies with the status still queued, and comes back while the API is down.
    k.env.plexus.crash_plexusd();
    k.env.plexus.start_plexusd().await.unwrap();
    assert_eq!(k.api.network_status(&pod), None);

    k.api.restart().await;
    let published = k.api.wait_network_status(&pod, AFTER_OUTAGE).await;
    assert_eq!(published, k.env.plexus.network_status(&pod).await.unwrap());
    assert!(
        published.contains(&format!("\"{NAMESPACE}/{MACVLAN}\"")),
        "{published}"
    );

    for p in [&first, &pod] {
        k.env.containerd.delete_pod(p).await.unwrap();
    }
    wait_nothing_left(&k.env, Duration::from_secs(5)).await;
}

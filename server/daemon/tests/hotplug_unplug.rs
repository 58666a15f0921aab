//! A hot-unplug that fails is a Warning naming the interface, the network and the cause, is
//! retried, and converges once the cause is gone.

mod hotplug_support;

use std::time::Duration;

use hotplug_support::*;

#[tokio::test]
async fn a_failing_hot_unplug_is_a_warning_and_is_retried_until_it_converges() {
    let s = setup().await;
    for n in ["a", "b"] {
        nad(&s, n);
    }
    s.cluster.nads.wait_synced().await;
    running_pod(&s, "web", "a,b").await;
    s.node
        .attacher()
        .fail_detach(Some(("net2", "device or resource busy")));
    annotate(&s, "web", "a");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !warnings(&s, "web").iter().any(|w| {
        w.contains("removing net2 (network default/b) failed") && w.contains("resource busy")
    }) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no Warning about net2: {:?}",
            warnings(&s, "web")
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(record(&s, "web")[1..], ["default/a@net1", "default/b@net2"]);
    s.node.attacher().fail_detach(None);
    let got = wait_record(&s, "web", |r| r.len() == 2).await;
    assert_eq!(got[1..], ["default/a@net1"]);
    wait_status(&s, "web", &["net1"]).await;
}

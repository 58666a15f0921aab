//! A retried setup of the same sandbox (the kubelet retries RunPodSandbox; plexus-nri and
//! the shim retry SetupPod) is answered from the record only when the sandbox is already set
//! up exactly as planned; after a NAD change it is redone with the new config. The engine is
//! the one owner of that decision (`setup_locked`). Privileged: real netns and macvlans.

mod common;

use common::{Fixture, attachment, plan, sid};
use plexus_engine::DelegationMode;
use plexus_netlink::test_util::require_privileged;

#[tokio::test]
async fn a_retry_is_reused_only_while_the_plan_is_unchanged() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let engine = fx.engine(DelegationMode::Auto);
    let first = plan(vec![attachment(
        1,
        "net1",
        &fx.macvlan("mv-r", "bridge", "10.41.0.0/24"),
    )]);
    // The daemon's way: the sandbox's lock first, then the work under it.
    let lock = engine.lock(&sid("sb-retry")).await;
    let made = engine
        .setup_locked(&lock, fx.sandbox("sb-retry"), first.clone(), None)
        .await
        .expect("setup");
    assert!(!made.reused);
    let address = |rec: &plexus_engine::SandboxRecord| {
        rec.attachments[0].result.as_ref().unwrap().ips[0]
            .address
            .to_string()
    };
    assert_eq!(address(&made.record), "10.41.0.2/24");
    // The same plan again: nothing is done (no second lease, same link).
    let again = engine
        .setup_locked(&lock, fx.sandbox("sb-retry"), first, None)
        .await
        .expect("retry");
    assert!(again.reused);
    assert_eq!(again.record, made.record);
    assert_eq!(fx.lease_files(), vec!["mv-r/10.41.0.2"]);
    // The NAD changed (same network and interface, another subnet): redone with it.
    let changed = plan(vec![attachment(
        1,
        "net1",
        &fx.macvlan("mv-r", "bridge", "10.42.0.0/24"),
    )]);
    let redone = engine
        .setup_locked(&lock, fx.sandbox("sb-retry"), changed, None)
        .await
        .expect("setup after the NAD changed");
    assert!(!redone.reused);
    assert_eq!(address(&redone.record), "10.42.0.2/24");
    assert_eq!(fx.pod_links().await, vec!["net1"]);
    assert_eq!(fx.lease_files(), vec!["mv-r/10.42.0.2"]);
    engine.teardown_locked(&lock).await.expect("teardown");
    assert!(fx.pod_links().await.is_empty());
    assert!(fx.lease_files().is_empty());
}

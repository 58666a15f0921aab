//! The pod netns plexusd holds from a setup to its teardown (`held.rs`): a teardown that
//! comes after the runtime removed the netns path still reaches the pod's links through it,
//! and `Engine::stop_at_once` says when a runtime's stop need not wait for plexusd.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use plexus_engine::LinkDeletion;

use super::*;

/// A named netns of the test's own, and a file of its own holding it (so the test can look
/// inside once the name is gone).
fn own_netns(prefix: &str) -> (String, PathBuf, std::fs::File) {
    let name = plexus_netlink::test_util::unique_name(prefix);
    let path = plexus_netlink::netns::create_named(&name)
        .expect("pod netns")
        .path()
        .to_path_buf();
    let file = std::fs::File::open(&path).expect("open the pod netns");
    (name, path, file)
}

/// The links (besides `lo`) and global IPv4 addresses in the netns `file` holds.
async fn inside(file: &std::fs::File) -> (Vec<String>, Vec<String>) {
    let path = format!("/proc/self/fd/{}", file.as_raw_fd());
    let h = plexus_netlink::Handle::open_path(Path::new(&path))
        .await
        .expect("open the held netns");
    let links = h.links().await.unwrap().into_iter().map(|l| l.name);
    let addrs = h.addresses(None).await.unwrap().into_iter();
    (
        links.filter(|n| n != "lo").collect(),
        addrs
            .filter(|a| !a.addr.addr().is_loopback() && !a.addr.addr().is_ipv6())
            .map(|a| a.addr.to_string())
            .collect(),
    )
}

#[tokio::test]
async fn a_teardown_after_the_netns_path_is_gone_reaches_the_pod_through_the_held_netns() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let engine = fx.engine(DelegationMode::Auto);
    // NRI's answer once marked (AfterMark), and the sweep's teardown (BeforeAnswer).
    for (id, links) in [
        ("sb-held-nri", LinkDeletion::AfterMark),
        ("sb-held-sweep", LinkDeletion::BeforeAnswer),
    ] {
        let (name, path, file) = own_netns("plexus-t-held-");
        let mut sb = fx.sandbox(id);
        sb.netns = path;
        let net = fx.macvlan(&format!("mv-{id}"), "bridge", "10.74.0.0/24");
        engine
            .setup(sb, plan(vec![attachment(1, "net1", &net)]))
            .await
            .expect("setup");
        assert!(engine.stop_at_once(&sid(id)), "{id}: a native macvlan");
        assert_eq!(engine.held_netns(), 1);
        // What containerd does after a stop answered at once: the path goes first.
        plexus_netlink::netns::delete_named(&name).expect("remove the pod netns path");
        assert_eq!(
            inside(&file).await,
            (vec!["net1".into()], vec!["10.74.0.2/24".into()])
        );
        let lock = engine.lock(&sid(id)).await;
        let report = engine
            .teardown_locked_as(&lock, links)
            .await
            .expect("teardown");
        assert_eq!(report.removed, ["net1"], "{id}");
        drop(lock);
        tokio::time::timeout(Duration::from_secs(30), engine.reaped())
            .await
            .expect("the reaper finished");
        assert!(fx.lease_files().is_empty(), "{id}: {:?}", fx.lease_files());
        let (left, addrs) = inside(&file).await;
        assert!(
            addrs.is_empty(),
            "{id}: address left on a link whose lease is free: {addrs:?}"
        );
        if links == LinkDeletion::BeforeAnswer {
            assert!(
                left.is_empty(),
                "{id}: the sweep deletes the links: {left:?}"
            );
        }
        assert_eq!(engine.held_netns(), 0, "{id}: let go after the teardown");
        assert!(!engine.stop_at_once(&sid(id)));
    }
}

#[tokio::test]
async fn a_stop_waits_for_an_exec_plugin_and_recovery_holds_the_netns_again() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let exec = fx.engine(DelegationMode::ForceExec);
    let net = fx.macvlan("mv-held-exec", "bridge", "10.75.0.0/24");
    exec.setup(
        fx.sandbox("sb-exec"),
        plan(vec![attachment(1, "net1", &net)]),
    )
    .await
    .expect("setup");
    assert_eq!(exec.held_netns(), 1);
    assert!(
        !exec.stop_at_once(&sid("sb-exec")),
        "an exec'd plugin is given the netns path, gone after the stop"
    );
    assert!(!exec.stop_at_once(&sid("sb-unknown")));
    exec.teardown(&sid("sb-exec")).await.expect("teardown");
    assert_eq!(exec.held_netns(), 0);

    let engine = fx.engine(DelegationMode::Auto);
    engine
        .setup(
            fx.sandbox("sb-restart"),
            plan(vec![attachment(1, "net1", &net)]),
        )
        .await
        .expect("setup");
    drop(engine);
    // A restarted plexusd holds the netns of every pod it keeps.
    let restarted = fx.engine(DelegationMode::Auto);
    assert_eq!(restarted.held_netns(), 0);
    restarted.recover().await.expect("recover");
    assert_eq!(restarted.held_netns(), 1);
    assert!(restarted.stop_at_once(&sid("sb-restart")));
    restarted
        .teardown(&sid("sb-restart"))
        .await
        .expect("teardown");
    assert_eq!(restarted.held_netns(), 0);
    assert!(fx.pod_links().await.is_empty() && fx.lease_files().is_empty());
}

#[tokio::test]
async fn a_plugin_hot_plugged_after_an_at_once_setup_is_deleted_through_the_held_netns() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let engine = fx.engine(DelegationMode::Auto);
    let (name, path, file) = own_netns("plexus-t-heldx-");
    let mut sb = fx.sandbox("sb-hot");
    sb.netns = path;
    let native = fx.macvlan("mv-hot-n", "bridge", "10.76.0.0/24");
    engine
        .setup(sb, plan(vec![attachment(1, "net1", &native)]))
        .await
        .expect("setup");
    assert!(engine.stop_at_once(&sid("sb-hot")));
    // A key the native path does not know: the reference macvlan plugin makes this one.
    let mut exec = fx.macvlan("mv-hot-x", "bridge", "10.77.0.0/24");
    exec["x-test-only"] = serde_json::json!(true);
    let hot = engine
        .attach(&sid("sb-hot"), attachment(2, "net2", &exec))
        .await
        .expect("hot-plug");
    assert_eq!(hot.driver, Driver::Exec);
    assert!(
        !engine.stop_at_once(&sid("sb-hot")),
        "a plugin needs the stop to wait"
    );
    // A runtime told at setup may still answer the stop at once: the path goes first.
    plexus_netlink::netns::delete_named(&name).expect("remove the pod netns path");
    let lock = engine.lock(&sid("sb-hot")).await;
    let report = engine
        .teardown_locked_as(&lock, LinkDeletion::AfterMark)
        .await
        .expect("teardown");
    assert_eq!(report.removed, ["net2", "net1"]);
    drop(lock);
    tokio::time::timeout(Duration::from_secs(30), engine.reaped())
        .await
        .expect("the reaper finished");
    let (links, addrs) = inside(&file).await;
    assert!(
        !links.contains(&"net2".to_owned()),
        "the plugin's DEL reached the held netns: {links:?}"
    );
    assert!(addrs.is_empty(), "{addrs:?}");
    assert!(fx.lease_files().is_empty(), "{:?}", fx.lease_files());
    assert_eq!(engine.held_netns(), 0);
}

//! NRI StopPodSandbox's teardown (`LinkDeletion::AfterMark`, `teardown/early.rs`): it
//! answers once the record is marked and the pod's netns held open, then, once the runtime
//! has removed the netns path, removes the addresses and releases the leases in the
//! background, before the links go.

use std::time::Duration;

use plexus_engine::LinkDeletion;

use super::*;

/// The pod's global IPv4 addresses in the netns at `netns` (a path, or an open fd's
/// `/proc/self/fd/N`), through plexus's own netlink handle.
async fn addresses_in(netns: &std::path::Path) -> Vec<String> {
    let h = plexus_netlink::Handle::open_path(netns)
        .await
        .expect("open the pod netns");
    h.addresses(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| !a.addr.addr().is_loopback() && !a.addr.addr().is_ipv6())
        .map(|a| a.addr.to_string())
        .collect()
}

#[tokio::test]
async fn an_nri_stop_answers_once_marked_and_releases_leases_only_after_the_addresses() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let mut cfg = fx.config(DelegationMode::Auto);
    // The releases and the reaper wait for the runtime to remove the netns path.
    cfg.links_grace = Duration::from_secs(600);
    let engine = plexus_engine::Engine::open(cfg).unwrap();
    engine
        .setup(
            fx.sandbox("sb-early"),
            plan(vec![
                attachment(1, "net1", &fx.macvlan("mv-e1", "bridge", "10.71.0.0/24")),
                attachment(2, "net2", &fx.macvlan("mv-e2", "bridge", "10.72.0.0/24")),
            ]),
        )
        .await
        .expect("setup");
    let netns = fx.pod.path();
    assert_eq!(addresses_in(&netns).await.len(), 2);
    let lock = engine.lock(&sid("sb-early")).await;
    let report = engine
        .teardown_locked_as(&lock, LinkDeletion::AfterMark)
        .await
        .expect("teardown");
    assert!(report.known);
    assert_eq!(report.removed, ["net2", "net1"], "reverse plan order");
    // What the answer guarantees: the record is marked, and the sandbox is pending.
    let mark = fx.dir.path().join("state/sb-early.tearing-down");
    assert!(mark.is_file(), "{} missing", mark.display());
    assert!(engine.sandbox(&sid("sb-early")).unwrap().is_none());
    assert!(engine.sandboxes().unwrap().is_empty());
    let again = engine
        .teardown_locked_as(&lock, LinkDeletion::AfterMark)
        .await
        .expect("second teardown");
    assert!(again.known && again.removed.is_empty(), "{again:?}");
    drop(lock);
    // Nothing is released while the runtime still has the netns path (its own CNI DEL).
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        (fx.lease_files().len(), addresses_in(&netns).await.len()),
        (2, 2),
        "released before the runtime removed the netns"
    );
    // What containerd does after its CNI DEL; the test looks on through a file of its own.
    let own = std::fs::File::open(&netns).expect("open the pod netns");
    let inside = std::path::PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&own)
    ));
    plexus_netlink::netns::delete_named(fx.pod.name()).expect("remove the pod netns path");
    // Then, in the background: a lease goes only once no address is left on a link.
    let mut seen = Vec::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let leases = fx.lease_files();
        seen.push((leases.len(), addresses_in(&inside).await.len()));
        if leases.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "leases not released within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(addresses_in(&inside).await.is_empty());
    assert!(
        seen.iter()
            .all(|(leases, addrs)| *addrs == 0 || *leases == 2),
        "a lease was released while an address was still on a link: {seen:?}"
    );
    tokio::time::timeout(Duration::from_secs(30), engine.reaped())
        .await
        .expect("the reaper finished");
    assert_eq!(
        fx.pod_links().await.len(),
        2,
        "the links are left to the netns (held here by the test)"
    );
    assert!(
        !mark.exists(),
        "the record goes once the netns path is gone"
    );
}

#[tokio::test]
async fn an_nri_stop_removes_the_addresses_through_the_netns_it_held_when_the_path_is_gone() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let name = plexus_netlink::test_util::unique_name("plexus-t-early-");
    let pod_path = plexus_netlink::netns::create_named(&name)
        .expect("pod netns")
        .path()
        .to_path_buf();
    let engine = fx.engine(DelegationMode::Auto);
    let mut sb = fx.sandbox("sb-gone");
    sb.netns = pod_path.clone();
    let net = fx.macvlan("mv-g1", "bridge", "10.73.0.0/24");
    engine
        .setup(sb, plan(vec![attachment(1, "net1", &net)]))
        .await
        .expect("setup");
    // Held open from here: the netns (and its links) outlives its path.
    let held = std::fs::File::open(&pod_path).expect("open the pod netns");
    let lock = engine.lock(&sid("sb-gone")).await;
    let report = engine
        .teardown_locked_as(&lock, LinkDeletion::AfterMark)
        .await
        .expect("teardown");
    assert_eq!(report.removed, ["net1"]);
    // What containerd does right after the answer (and its CNI DEL).
    plexus_netlink::netns::delete_named(&name).expect("remove the pod netns");
    drop(lock);
    tokio::time::timeout(Duration::from_secs(30), engine.reaped())
        .await
        .expect("the reaper finished");
    assert!(fx.lease_files().is_empty(), "{:?}", fx.lease_files());
    let fd = std::os::fd::AsRawFd::as_raw_fd(&held);
    let held_path = format!("/proc/self/fd/{fd}");
    assert!(
        addresses_in(std::path::Path::new(&held_path))
            .await
            .is_empty(),
        "the address was removed through the netns the teardown held, not left on the link"
    );
    assert!(engine.sandbox(&sid("sb-gone")).unwrap().is_none());
    assert!(!fx.dir.path().join("state/sb-gone.json").exists());
    assert!(!fx.dir.path().join("state/sb-gone.tearing-down").exists());
}

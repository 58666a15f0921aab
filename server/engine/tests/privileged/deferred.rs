//! A runtime's teardown (`LinkDeletion::AfterAnswer`: containerd removes the netns right
//! after) answers once the leases are released and the addresses removed, and the links go
//! afterwards (`reap.rs`): with the namespace when the runtime removes it, else deleted by
//! plexus after the grace (50 ms in these tests). The tests hold the sandbox's lock across
//! the answer, so the reaper cannot remove the record before they look: what they see is
//! what the answer guaranteed, whatever the timing.

use plexus_engine::{LinkDeletion, Phase};

use super::*;

async fn pod_addresses(fx: &Fixture) -> Vec<String> {
    let h = fx.pod.handle().await;
    let mut out: Vec<String> = h
        .addresses(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| !a.addr.addr().is_loopback() && !a.addr.addr().is_ipv6())
        .map(|a| a.addr.to_string())
        .collect();
    out.sort();
    out
}

async fn host_links(fx: &Fixture) -> Vec<String> {
    let h = fx.host.handle().await;
    h.links()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect()
}

#[tokio::test]
async fn a_runtime_teardown_answers_with_leases_and_addresses_gone_and_deletes_links_after() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let engine = fx.engine(DelegationMode::Auto);
    let bridge = serde_json::json!({"cniVersion":"1.0.0","name":"br-d","type":"bridge",
        "bridge": plexus_netlink::test_util::unique_name("br"),
        "ipam":{"type":"host-local","subnet":"10.63.0.0/24","dataDir":fx.leases()}});
    let host_before = host_links(&fx).await;
    // The runtime's eth0, recorded as the runtime's (as on the NRI path): never removed by
    // plexus, and no reason for a second record write before the answer.
    fx.pod.veth_pair("eth0", "eth0peer").await.expect("eth0");
    let mut primary = attachment(0, "eth0", &fx.macvlan("cluster", "bridge", "10.60.0.0/24"));
    primary.primary = true;
    primary.runtime_managed = true;
    engine
        .setup(
            fx.sandbox("sb-defer"),
            plan(vec![
                primary,
                attachment(1, "net1", &fx.macvlan("mv-d1", "bridge", "10.61.0.0/24")),
                attachment(2, "net2", &fx.macvlan("mv-d2", "bridge", "10.62.0.0/24")),
                attachment(3, "net3", &bridge),
            ]),
        )
        .await
        .expect("setup");
    assert_eq!(pod_addresses(&fx).await.len(), 3);
    let state = fx.dir.path().join("state/sb-defer.json");

    // The setup's done write may still owe its directory fsync: not the teardown's to count.
    engine.flush_state();
    let lock = engine.lock(&sid("sb-defer")).await;
    let fsyncs = plexus_engine::state::fsyncs();
    let report = engine
        .teardown_locked_as(&lock, LinkDeletion::AfterAnswer)
        .await
        .expect("teardown");
    let mut removed = report.removed.clone();
    removed.sort();
    assert_eq!(removed, ["net1", "net2", "net3"]);
    assert_eq!(
        plexus_engine::state::fsyncs() - fsyncs,
        0,
        "no fsync before the answer: the mark is a file of its own, the lease releases are \
         synced by the reaper's removal of the record"
    );
    // What the answer guarantees: no lease, no address; the sandbox is no longer listed.
    assert!(fx.lease_files().is_empty(), "{:?}", fx.lease_files());
    assert!(pod_addresses(&fx).await.is_empty());
    assert!(engine.sandbox(&sid("sb-defer")).unwrap().is_none());
    assert!(engine.sandboxes().unwrap().is_empty());
    // The record stays, tearing down, until the links are gone (a crash redoes it): not
    // rewritten, but marked by the file next to it, which every read applies.
    let text = std::fs::read_to_string(&state).expect("record kept for the reaper");
    assert!(!text.contains("tearing_down"), "{text}");
    let mark = fx.dir.path().join("state/sb-defer.tearing-down");
    assert!(mark.is_file(), "{} missing", mark.display());
    let store = plexus_engine::state::Store::open(fx.dir.path().join("state")).unwrap();
    let read = store.load(&sid("sb-defer")).unwrap().expect("record");
    assert!(read.tearing_down, "{read:?}");
    let phases: Vec<_> = read
        .attachments
        .iter()
        .map(|a| (a.interface.to_string(), a.phase))
        .collect();
    assert_eq!(
        phases,
        [
            ("eth0".to_owned(), Phase::Done),
            ("net1".to_owned(), Phase::Removing),
            ("net2".to_owned(), Phase::Removing),
            ("net3".to_owned(), Phase::Removing),
        ],
        "the runtime's eth0 is not plexus's to remove"
    );
    // RemovePodSandbox after StopPodSandbox: nothing left to do, nothing done again.
    let again = engine
        .teardown_locked_as(&lock, LinkDeletion::AfterAnswer)
        .await
        .expect("second teardown");
    assert!(again.known && again.removed.is_empty(), "{again:?}");

    drop(lock);
    engine.reaped().await;
    let mut left = fx.pod_links().await;
    left.retain(|l| l.starts_with("net"));
    assert!(left.is_empty(), "{left:?}");
    assert!(
        fx.pod_links().await.contains(&"eth0".to_owned()),
        "the runtime's eth0 is left alone"
    );
    let mut host_after = host_links(&fx).await;
    host_after.retain(|l| !l.starts_with("br"));
    let mut host_expected = host_before.clone();
    host_expected.retain(|l| !l.starts_with("br"));
    assert_eq!(
        host_after, host_expected,
        "the bridge's host veth end is deleted"
    );
    assert!(!state.exists(), "the reaper removed the record");
    assert!(!mark.exists(), "and its mark after it");
    assert_eq!(engine.locked(), 0);
}

#[tokio::test]
async fn a_new_setup_of_a_sandbox_being_reaped_takes_its_record_over() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let engine = fx.engine(DelegationMode::Auto);
    let first = plan(vec![attachment(
        1,
        "net1",
        &fx.macvlan("mv-t1", "bridge", "10.64.0.0/24"),
    )]);
    engine
        .setup(fx.sandbox("sb-over"), first)
        .await
        .expect("setup");
    let lock = engine.lock(&sid("sb-over")).await;
    engine
        .teardown_locked_as(&lock, LinkDeletion::AfterAnswer)
        .await
        .expect("teardown");
    // Same sandbox, same netns, set up again before the reaper is done with it.
    let second = plan(vec![attachment(
        1,
        "net1",
        &fx.macvlan("mv-t2", "bridge", "10.65.0.0/24"),
    )]);
    let done = engine
        .setup_locked(&lock, fx.sandbox("sb-over"), second, None)
        .await
        .expect("setup again");
    assert!(!done.reused);
    drop(lock);
    engine.reaped().await;
    // The old reaper left the new record and link alone.
    let rec = engine
        .sandbox(&sid("sb-over"))
        .unwrap()
        .expect("new record");
    assert_eq!(rec.attachments.len(), 1);
    assert_eq!(rec.attachments[0].phase, plexus_engine::Phase::Done);
    assert_eq!(fx.pod_links().await, ["net1"]);
    assert_eq!(pod_addresses(&fx).await, ["10.65.0.2/24"]);
    assert_eq!(fx.lease_files(), ["mv-t2/10.65.0.2"]);
    engine.teardown(&sid("sb-over")).await.expect("teardown");
    assert!(fx.pod_links().await.is_empty());
    assert!(fx.lease_files().is_empty());
}

#[tokio::test]
async fn links_go_with_the_namespace_the_runtime_removes() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let name = plexus_netlink::test_util::unique_name("plexus-t-rm-");
    let pod_path = plexus_netlink::netns::create_named(&name)
        .expect("pod netns")
        .path()
        .to_path_buf();
    let mut cfg = fx.config(DelegationMode::Auto);
    // Long enough that only the namespace's removal can be what took the links.
    cfg.links_grace = std::time::Duration::from_secs(600);
    let engine = plexus_engine::Engine::open(cfg).unwrap();
    let bridge = serde_json::json!({"cniVersion":"1.0.0","name":"br-rm","type":"bridge",
        "bridge": plexus_netlink::test_util::unique_name("br"),
        "ipam":{"type":"host-local","subnet":"10.66.0.0/24","dataDir":fx.leases()}});
    let host_before = host_links(&fx).await;
    let mut sb = fx.sandbox("sb-rm");
    sb.netns = pod_path.clone();
    engine
        .setup(
            sb,
            plan(vec![
                attachment(1, "net1", &fx.macvlan("mv-rm", "bridge", "10.67.0.0/24")),
                attachment(2, "net2", &bridge),
            ]),
        )
        .await
        .expect("setup");
    let lock = engine.lock(&sid("sb-rm")).await;
    engine
        .teardown_locked_as(&lock, LinkDeletion::AfterAnswer)
        .await
        .expect("teardown");
    drop(lock);
    assert!(fx.lease_files().is_empty());
    // What containerd does right after its CNI DEL.
    plexus_netlink::netns::delete_named(&name).expect("remove the pod netns");
    tokio::time::timeout(std::time::Duration::from_secs(30), engine.reaped())
        .await
        .expect("the reaper finished without waiting out its grace");
    let mut host_after = host_links(&fx).await;
    host_after.retain(|l| !l.starts_with("br"));
    let mut expected = host_before;
    expected.retain(|l| !l.starts_with("br"));
    assert_eq!(
        host_after, expected,
        "the bridge's host veth end went with the pod's"
    );
    assert!(engine.sandbox(&sid("sb-rm")).unwrap().is_none());
    assert!(!fx.dir.path().join("state/sb-rm.json").exists());
}

/// A sandbox whose teardown answered is never listed again, not even for the moment
/// between the reaper letting go of it and removing its record (an e2e test once saw the
/// record come back, `detaching`, after the runtime's teardown had answered).
#[tokio::test]
async fn a_reaped_sandbox_is_never_listed_again() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let engine = fx.engine(DelegationMode::Auto);
    for round in 0..20 {
        let id = format!("sb-list-{round}");
        let net = fx.macvlan(&format!("mv-l{round}"), "bridge", "10.68.0.0/24");
        engine
            .setup(fx.sandbox(&id), plan(vec![attachment(1, "net1", &net)]))
            .await
            .expect("setup");
        let lock = engine.lock(&sid(&id)).await;
        engine
            .teardown_locked_as(&lock, LinkDeletion::AfterAnswer)
            .await
            .expect("teardown");
        drop(lock);
        // Look as often as possible until the reaper is done.
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let looker = {
            let (engine, done) = (engine.clone(), done.clone());
            std::thread::spawn(move || {
                let mut looks = 0u64;
                while !done.load(std::sync::atomic::Ordering::Acquire) {
                    let listed = engine.sandboxes().unwrap();
                    assert!(listed.is_empty(), "round {round}, look {looks}: {listed:?}");
                    looks += 1;
                }
                looks
            })
        };
        engine.reaped().await;
        done.store(true, std::sync::atomic::Ordering::Release);
        let looks = looker.join().expect("the sandbox was listed again");
        assert!(looks > 0);
        assert!(!fx.dir.path().join(format!("state/{id}.json")).exists());
    }
}

/// Reapers that finish within one [`EngineConfig::removal_batch`] remove their records
/// together: one fsync of the lease directory they all released from and one of the state
/// directory, not two per record.
///
/// [`EngineConfig::removal_batch`]: plexus_engine::EngineConfig::removal_batch
#[tokio::test]
async fn reaped_records_are_removed_in_one_batch_sharing_their_fsyncs() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let mut cfg = fx.config(DelegationMode::Auto);
    // Every reaper waits out the 50 ms grace (no runtime removes the tests' netns) and
    // then joins the first one's batch, unless the four teardowns ran a second apart.
    cfg.removal_batch = std::time::Duration::from_secs(1);
    let engine = plexus_engine::Engine::open(cfg).unwrap();
    let net = fx.macvlan("mv-batch", "bridge", "10.69.0.0/24");
    let ids: Vec<String> = (1..=4).map(|i| format!("sb-batch-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let ifname = format!("net{}", i + 1);
        let p = plan(vec![attachment(1, &ifname, &net)]);
        engine.setup(fx.sandbox(id), p).await.expect("setup");
    }
    assert_eq!(fx.lease_files().len(), 4);
    engine.flush_state();
    let fsyncs = plexus_engine::state::fsyncs();
    for id in &ids {
        let lock = engine.lock(&sid(id)).await;
        engine
            .teardown_locked_as(&lock, LinkDeletion::AfterAnswer)
            .await
            .expect("teardown");
    }
    assert!(fx.lease_files().is_empty());
    engine.reaped().await;
    assert_eq!(
        plexus_engine::state::fsyncs() - fsyncs,
        2,
        "one fsync of the lease directory, one of the state directory"
    );
    assert!(fx.pod_links().await.is_empty());
    for id in &ids {
        assert!(!fx.dir.path().join(format!("state/{id}.json")).exists());
        assert!(
            !fx.dir
                .path()
                .join(format!("state/{id}.tearing-down"))
                .exists()
        );
    }
    assert!(engine.sandboxes().unwrap().is_empty());
}

/// A batch whose wait is over waits again while some sandbox's lock is held (a setup or a
/// teardown in flight), so that its fsyncs do not queue in front of that operation's own;
/// but at most [`EngineConfig::removal_batch`] more, so a node that is never idle still
/// removes its records.
///
/// [`EngineConfig::removal_batch`]: plexus_engine::EngineConfig::removal_batch
#[tokio::test]
async fn a_due_batch_waits_while_a_sandbox_is_locked_but_not_past_its_bound() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let mut cfg = fx.config(DelegationMode::Auto);
    cfg.removal_batch = std::time::Duration::from_millis(300);
    let engine = plexus_engine::Engine::open(cfg).unwrap();
    let net = fx.macvlan("mv-quiet", "bridge", "10.69.1.0/24");
    let id = "sb-quiet-1";
    let p = plan(vec![attachment(1, "net1", &net)]);
    engine.setup(fx.sandbox(id), p).await.expect("setup");
    let record = fx.dir.path().join(format!("state/{id}.json"));
    // Another sandbox's operation, in flight from before the teardown to the end.
    let busy = engine.lock(&sid("sb-quiet-busy")).await;
    let started = tokio::time::Instant::now();
    {
        let lock = engine.lock(&sid(id)).await;
        engine
            .teardown_locked_as(&lock, LinkDeletion::AfterAnswer)
            .await
            .expect("teardown");
    }
    // The reaper joins a batch after the 50 ms grace, the batch is due 300 ms later: from
    // then on only the held lock keeps the record.
    tokio::time::sleep_until(started + std::time::Duration::from_millis(500)).await;
    assert!(
        record.exists(),
        "the batch removed the record while a sandbox was locked"
    );
    tokio::time::timeout(std::time::Duration::from_secs(10), engine.reaped())
        .await
        .expect("the batch waited past its bound for the lock");
    assert!(!record.exists(), "the reaped record is still there");
    assert_eq!(engine.lock_users(&sid("sb-quiet-busy")), 1);
    drop(busy);
}

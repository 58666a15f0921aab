//! Setup: native and exec paths, rollback, refusals, deadlines, the primary.

use super::*;

#[tokio::test]
async fn native_two_macvlans_setup_teardown_twice() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let engine = fx.engine(DelegationMode::Auto);
    let p = plan(vec![
        attachment(1, "net1", &fx.macvlan("mv-a", "bridge", "10.31.0.0/24")),
        attachment(2, "net2", &fx.macvlan("mv-b", "private", "10.32.0.0/24")),
    ]);
    let (fsyncs, deferred) = (
        plexus_engine::state::fsyncs(),
        plexus_engine::state::deferred_fsyncs(),
    );
    let rec = engine
        .setup(fx.sandbox("sb-native"), p.clone())
        .await
        .expect("setup");
    // The done write's directory fsync runs after the answer, on the blocking pool; a
    // flush waits for it (an fsync of its own only when none has run yet).
    engine.flush_state();
    assert_eq!(
        plexus_engine::state::fsyncs() - fsyncs,
        4,
        "an intent and a done write (temp file and directory each; the done write's directory \
         after the answer); the leases ride on them"
    );
    assert!(plexus_engine::state::deferred_fsyncs() - deferred <= 1);
    assert!(rec.attachments.iter().all(|a| a.driver == Driver::Native));
    let r1 = rec.attachments[0].result.as_ref().unwrap();
    assert_eq!(r1.ips[0].address.to_string(), "10.31.0.2/24");
    assert_eq!(fx.pod_links().await, vec!["net1", "net2"]);
    assert_eq!(fx.lease_files(), vec!["mv-a/10.31.0.2", "mv-b/10.32.0.2"]);
    // Same plan again: idempotent, nothing new made.
    let again = engine
        .setup(fx.sandbox("sb-native"), p)
        .await
        .expect("setup again");
    assert_eq!(again, rec);

    let report = engine.teardown(&sid("sb-native")).await.expect("teardown");
    assert!(report.known);
    assert_eq!(report.removed, vec!["net2", "net1"]);
    assert!(fx.pod_links().await.is_empty());
    assert!(fx.lease_files().is_empty());
    let twice = engine
        .teardown(&sid("sb-native"))
        .await
        .expect("teardown twice");
    assert!(!twice.known);
}

#[tokio::test]
async fn exec_path_conflist_chain_and_teardown_after_restart_without_nad() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let chain = serde_json::json!({
        "cniVersion":"1.0.0","name":"chain","plugins":[
            {"type":"macvlan","master":fx.uplink,"ipam":{"type":"host-local","subnet":"10.33.0.0/24","dataDir":fx.leases()}},
            {"type":"tuning","sysctl":{"net.ipv4.conf.net1.arp_ignore":"1"}}
        ]
    });
    let engine = fx.engine(DelegationMode::Auto);
    let rec = engine
        .setup(
            fx.sandbox("sb-exec"),
            plan(vec![attachment(1, "net1", &chain)]),
        )
        .await
        .expect("setup");
    assert_eq!(rec.attachments[0].driver, Driver::Exec);
    assert_eq!(fx.pod_links().await, vec!["net1"]);
    let pod = fx.pod.handle().await;
    assert_eq!(
        pod.sysctl("net/ipv4/conf/net1/arp_ignore")
            .await
            .unwrap()
            .trim(),
        "1"
    );
    drop(engine);
    // A new engine (daemon restart); the NAD no longer exists anywhere but in the record.
    let engine = fx.engine(DelegationMode::Auto);
    let report = engine.teardown(&sid("sb-exec")).await.expect("teardown");
    assert_eq!(report.removed, vec!["net1"]);
    assert!(fx.pod_links().await.is_empty());
    assert!(fx.lease_files().is_empty());
}

#[tokio::test]
async fn second_network_failure_rolls_back_the_first_and_names_the_network() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    for mode in [DelegationMode::Auto, DelegationMode::ForceExec] {
        let engine = fx.engine(mode);
        let mut bad = fx.macvlan("mv-bad", "bridge", "10.35.0.0/24");
        bad["master"] = "no-such-link".into();
        let err = engine
            .setup(
                fx.sandbox("sb-rollback"),
                plan(vec![
                    attachment(1, "net1", &fx.macvlan("mv-ok", "bridge", "10.34.0.0/24")),
                    attachment(2, "net2", &bad),
                ]),
            )
            .await
            .expect_err("second network must fail");
        match &err {
            SetupError::Attach {
                network,
                interface,
                undone,
                undo_failures,
                ..
            } => {
                assert_eq!(network, "default/mv-bad");
                assert_eq!(interface, "net2");
                match mode {
                    // The native driver's removal of what it did not make succeeds.
                    DelegationMode::Auto => {
                        assert_eq!(undone, &["net2", "net1"], "{undo_failures:?}");
                        assert!(undo_failures.is_empty(), "{undo_failures:?}");
                    }
                    // The macvlan plugin's DEL fails like its ADD (no master): reported
                    // as such, not as undone, and nothing is left recorded to retry.
                    _ => {
                        assert_eq!(undone, &["net1"], "{undo_failures:?}");
                        assert_eq!(undo_failures.len(), 1, "{undo_failures:?}");
                        assert!(
                            undo_failures[0].starts_with("net2: DEL after its failed ADD"),
                            "{undo_failures:?}"
                        );
                    }
                }
            }
            other => panic!("unexpected error {other}"),
        }
        let cause = match mode {
            DelegationMode::Auto => "no-such-link",
            DelegationMode::ForceExec => "Link not found",
        };
        assert!(err.to_string().contains(cause), "{err}");
        assert!(fx.pod_links().await.is_empty(), "{mode:?}");
        assert!(fx.lease_files().is_empty(), "{mode:?}");
        assert_eq!(engine.sandbox(&sid("sb-rollback")).unwrap(), None);
    }
}

/// A native bridge allocates its addresses while its links are made (without
/// `isGateway`): when the links cannot be made, the lease it took is released by the undo.
#[tokio::test]
async fn a_bridge_whose_links_fail_gives_back_the_lease_taken_meanwhile() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let engine = fx.engine(DelegationMode::Auto);
    // The uplink exists and is no bridge: the driver refuses it after the lease is taken.
    let bad = serde_json::json!({"cniVersion":"1.0.0","name":"br-bad","type":"bridge",
        "bridge": fx.uplink,
        "ipam":{"type":"host-local","subnet":"10.36.0.0/24","dataDir":fx.leases()}});
    let err = engine
        .setup(
            fx.sandbox("sb-br-rollback"),
            plan(vec![attachment(1, "net1", &bad)]),
        )
        .await
        .expect_err("a bridge on a non-bridge link must fail");
    assert!(err.to_string().contains("not a bridge"), "{err}");
    assert!(fx.pod_links().await.is_empty());
    assert!(fx.lease_files().is_empty(), "{:?}", fx.lease_files());
    assert_eq!(engine.sandbox(&sid("sb-br-rollback")).unwrap(), None);
}

#[tokio::test]
async fn interface_name_collision_is_refused_before_anything_is_made() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let engine = fx.engine(DelegationMode::Auto);
    let err = engine
        .setup(
            fx.sandbox("sb-f8"),
            plan(vec![
                attachment(1, "net1", &fx.macvlan("mv-a", "bridge", "10.36.0.0/24")),
                attachment(2, "net1", &fx.macvlan("mv-b", "bridge", "10.37.0.0/24")),
            ]),
        )
        .await
        .expect_err("duplicate interface");
    assert!(
        err.to_string()
            .contains("validateIfName: interface name net1 already exists"),
        "{err}"
    );
    assert!(fx.pod_links().await.is_empty());
    assert!(fx.lease_files().is_empty());
}

#[tokio::test]
async fn deadline_undoes_what_was_made() {
    if !require_privileged() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let fx = Fixture::new().await;
    // A plugin that hangs on ADD (and answers DEL at once).
    let bin = fx.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let slow = bin.join("slow");
    let pid_file = fx.dir.path().join("slow.pid");
    std::fs::write(&slow, slow_plugin(&pid_file)).unwrap();
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cfg = fx.config(DelegationMode::Auto);
    cfg.cni_bin_dirs.insert(0, bin);
    let engine = plexus_engine::Engine::open(cfg).unwrap();
    let slow_conf = serde_json::json!({"cniVersion":"1.0.0","name":"slow","type":"slow"});
    // The plugin never answers by itself: the error kind and the killed plugin show the
    // deadline was honoured (no clock reading).
    let err = engine
        .setup_with_deadline(
            fx.sandbox("sb-deadline"),
            plan(vec![
                attachment(1, "net1", &fx.macvlan("mv-d1", "bridge", "10.39.0.0/24")),
                attachment(2, "net2", &slow_conf),
            ]),
            plexus_core::deadline::Deadline::from_now(std::time::Duration::from_millis(700)),
        )
        .await
        .expect_err("deadline");
    wait_gone(&pid_file).await;
    match &err {
        SetupError::DeadlineExceeded {
            network, undone, ..
        } => {
            assert_eq!(network, "default/slow");
            assert_eq!(undone, &vec!["net2".to_string(), "net1".to_string()]);
        }
        other => panic!("unexpected {other}"),
    }
    assert!(fx.pod_links().await.is_empty());
    assert!(fx.lease_files().is_empty());
    assert_eq!(engine.sandbox(&sid("sb-deadline")).unwrap(), None);
}

/// A setup cut by its deadline while its allocation waits for the lease directory's lock
/// (held here, as a reference host-local plugin sharing the directory could): the error
/// says how far the attachment got; the undo, which needs that lock too, leaves the
/// attachment recorded; once the lock is free, the abandoned allocation takes nothing and
/// a teardown leaves nothing behind. (That an abandoned allocation takes nothing even when
/// the undo got the lock first is `ipam::tests::an_abandoned_allocation_takes_nothing`.)
#[tokio::test]
async fn an_allocation_cut_by_the_deadline_says_so_and_leaves_nothing() {
    if !require_privileged() {
        return;
    }
    use std::time::Duration;
    let fx = Fixture::new().await;
    let engine = fx.engine(DelegationMode::Auto);
    let dir = fx.leases().join("mv-held");
    std::fs::create_dir_all(&dir).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join("lock"))
        .unwrap();
    let held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap();
    let conf = fx.macvlan("mv-held", "bridge", "10.37.0.0/24");
    let err = engine
        .setup_with_deadline(
            fx.sandbox("sb-held"),
            plan(vec![attachment(1, "net1", &conf)]),
            plexus_core::deadline::Deadline::from_now(Duration::from_millis(400)),
        )
        .await
        .expect_err("the allocation cannot finish while the lock is held");
    match &err {
        SetupError::DeadlineExceeded {
            network,
            stage,
            undone,
            ..
        } => {
            assert_eq!(network, "default/mv-held");
            assert!(
                stage.contains("its link was made, its addresses were being taken"),
                "{stage}"
            );
            assert!(undone.is_empty(), "{undone:?}");
            assert!(err.to_string().contains("net1 left to teardown"), "{err}");
        }
        other => panic!("unexpected {other}"),
    }
    assert!(engine.sandbox(&sid("sb-held")).unwrap().is_some());
    drop(held);
    // The blocked allocation takes the lock now and gives up.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(fx.lease_files().is_empty(), "{:?}", fx.lease_files());
    }
    engine.teardown(&sid("sb-held")).await.unwrap();
    assert!(fx.lease_files().is_empty(), "{:?}", fx.lease_files());
    assert!(fx.pod_links().await.is_empty());
    assert_eq!(engine.sandbox(&sid("sb-held")).unwrap(), None);
}

#[tokio::test]
async fn the_hosts_netns_is_refused_as_a_pods_and_nothing_is_made() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let engine = fx.engine(DelegationMode::Auto);
    let own_pid = format!("/proc/{}/ns/net", std::process::id());
    let refused = [
        ("/proc/self/ns/net".into(), "plexusd's own"),
        (own_pid.into(), "plexusd's own"),
        (fx.host.path(), "configured as hostNetns"),
        ("/proc/self/ns/uts".into(), "not a network namespace"),
        ("/proc/self/status".into(), "not a namespace file"),
    ];
    for (path, why) in refused {
        let err = engine.check_pod_netns(&path).unwrap_err();
        assert!(
            matches!(err, plexus_engine::Error::PodNetnsRefused { .. }),
            "{err}"
        );
        assert!(err.to_string().contains(why), "{err}");
        let mut sb = fx.sandbox("sb-hostns");
        sb.netns = path.clone();
        let attach = attachment(
            1,
            "net1",
            &fx.macvlan("mv-hostns", "bridge", "10.48.0.0/24"),
        );
        let err = engine.setup(sb, plan(vec![attach])).await.unwrap_err();
        assert!(err.to_string().contains(why), "{err}");
        assert_eq!(engine.sandbox(&sid("sb-hostns")).unwrap(), None);
    }
    let missing = std::path::Path::new("/var/run/netns/plexus-no-such-netns");
    assert!(matches!(
        engine.check_pod_netns(missing),
        Err(plexus_engine::Error::NetnsMissing { .. })
    ));
    engine.check_pod_netns(&fx.pod.path()).unwrap();
    assert!(fx.lease_files().is_empty());
    let host_links = fx.host.handle().await.links().await.unwrap();
    assert!(!host_links.iter().any(|l| l.name == "net1"));
}

#[tokio::test]
async fn default_route_plan_and_runtime_managed_primary() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    // The runtime's eth0 with its own default route.
    fx.pod.veth_pair("eth0", "eth0peer").await.expect("eth0");
    let pod = fx.pod.handle().await;
    let eth0 = pod.find_link("eth0").await.unwrap();
    pod.add_address(&eth0, "10.48.0.5/24".parse().unwrap())
        .await
        .unwrap();
    pod.add_route(
        &eth0,
        &plexus_netlink::RouteSpec::new("0.0.0.0/0".parse().unwrap())
            .via("10.48.0.1".parse().unwrap()),
        plexus_netlink::OnExists::Fail,
    )
    .await
    .unwrap();
    let mut primary = attachment(0, "eth0", &fx.macvlan("cluster", "bridge", "10.48.0.0/24"));
    primary.primary = true;
    primary.runtime_managed = true;
    primary.route_plan.remove_v4 = true;
    let mut conf = fx.macvlan("mv-gw", "bridge", "10.49.0.0/24");
    conf["ipam"]["routes"] = serde_json::json!([{"dst":"0.0.0.0/0"}]);
    let mut second = attachment(1, "net1", &conf);
    second.route_plan.remove_v4 = true;
    second.route_plan.install = vec!["10.49.0.254".parse().unwrap()];
    let engine = fx.engine(DelegationMode::Auto);
    let rec = engine
        .setup(fx.sandbox("sb-route"), plan(vec![primary, second]))
        .await
        .expect("setup");
    assert_eq!(rec.attachments[0].driver, Driver::Runtime);
    let defaults: Vec<String> = pod
        .routes()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.is_default() && r.dst.addr().is_ipv4())
        .map(|r| r.gateway.unwrap().to_string())
        .collect();
    assert_eq!(defaults, vec!["10.49.0.254"]);
    let result = rec.attachments[1].result.as_ref().unwrap();
    let routes: Vec<String> = result
        .routes
        .iter()
        .map(|r| format!("{} {:?}", r.dst, r.gw))
        .collect();
    assert_eq!(routes, vec!["0.0.0.0/0 Some(10.49.0.254)"]);
    engine.teardown(&sid("sb-route")).await.expect("teardown");
    assert_eq!(
        fx.pod_links().await,
        vec!["eth0", "eth0peer"],
        "runtime's eth0 untouched"
    );
    assert!(fx.lease_files().is_empty());
}

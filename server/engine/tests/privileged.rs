//! Privileged engine tests in real network namespaces with the reference CNI plugins:
//! native macvlan, the exec path with a conflist chain, rollback, teardown twice,
//! teardown after a restart without the NAD, corrupt records.

mod common;

use common::{Fixture, attachment, plan};
use plexus_engine::{DelegationMode, Driver, SetupError};
use plexus_netlink::test_util::require_privileged;

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
    let rec = engine
        .setup(fx.sandbox("sb-native"), p.clone())
        .await
        .expect("setup");
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

    let report = engine.teardown("sb-native").await.expect("teardown");
    assert!(report.known);
    assert_eq!(report.removed, vec!["net2", "net1"]);
    assert!(fx.pod_links().await.is_empty());
    assert!(fx.lease_files().is_empty());
    let twice = engine.teardown("sb-native").await.expect("teardown twice");
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
    let report = engine.teardown("sb-exec").await.expect("teardown");
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
                assert_eq!(
                    undone,
                    &vec!["net2".to_string(), "net1".to_string()],
                    "{mode:?} {undo_failures:?}"
                );
                assert!(undo_failures.is_empty(), "{undo_failures:?}");
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
        assert_eq!(engine.sandbox("sb-rollback").unwrap(), None);
    }
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
async fn corrupt_record_teardown_falls_back_and_is_not_silent() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let engine = fx.engine(DelegationMode::Auto);
    engine
        .setup(
            fx.sandbox("sb-corrupt"),
            plan(vec![attachment(
                1,
                "net1",
                &fx.macvlan("mv-c", "bridge", "10.38.0.0/24"),
            )]),
        )
        .await
        .expect("setup");
    let path = fx.dir.path().join("state/sb-corrupt.json");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() * 2 / 3]).unwrap();
    // Leases under the engine's default lease dir are found by content; this config's
    // own dataDir is the temp lease dir, which is that default here.
    let report = engine
        .teardown("sb-corrupt")
        .await
        .expect("fallback teardown");
    assert!(report.known && report.fallback);
    assert!(!report.unresolved.is_empty());
    assert!(
        fx.pod_links().await.is_empty(),
        "group delete removed the pod links"
    );
    assert!(fx.lease_files().is_empty());
    assert!(!path.exists());
}

#[tokio::test]
async fn deadline_undoes_what_was_made() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let engine = fx.engine(DelegationMode::ForceExec);
    let err = engine
        .setup_with_deadline(
            fx.sandbox("sb-deadline"),
            plan(vec![
                attachment(1, "net1", &fx.macvlan("mv-d1", "bridge", "10.39.0.0/24")),
                attachment(2, "net2", &fx.macvlan("mv-d2", "bridge", "10.40.0.0/24")),
            ]),
            std::time::Duration::from_millis(1),
        )
        .await
        .expect_err("deadline");
    assert!(matches!(err, SetupError::DeadlineExceeded { .. }), "{err}");
    assert!(fx.pod_links().await.is_empty());
    assert!(fx.lease_files().is_empty());
}

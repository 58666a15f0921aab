//! Privileged tests of native `dhcp` IPAM against busybox `udhcpd` running in a server
//! netns the test made. Topology: host netns with veth `up*` (macvlan master) whose peer
//! is moved into the server netns and carries 10.77.0.1/24; the pod's macvlan reaches the
//! server through it. Nothing leaves these namespaces.

mod common;

use std::time::Duration;

use common::dhcp_server::{
    conf, dhcp_store, pod_addrs, pod_routes, start_server, wait_for, wait_server_lease,
};
use common::{Fixture, attachment, plan};
use plexus_engine::ipam::dhcp::{LeaseStore, run_renewer};
use plexus_engine::{DelegationMode, Driver};
use plexus_netlink::test_util::require_privileged;
use plexus_netlink::test_util::udhcpd::RESERVED_MAC;

#[tokio::test]
async fn dhcp_macvlan_gets_pool_address_route_dns_and_releases_on_teardown() {
    if !require_privileged() {
        return;
    }
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let fx = Fixture::new().await;
    let server = start_server(&fx, 3600).await;
    let engine = fx.engine(DelegationMode::Auto);
    let rec = engine
        .setup(
            fx.sandbox("sb-dhcp"),
            plan(vec![attachment(1, "net1", &conf(&fx, "lan", None, 10))]),
        )
        .await
        .expect("setup with dhcp");
    assert_eq!(rec.attachments[0].driver, Driver::Native);
    let r = rec.attachments[0].result.as_ref().unwrap();
    let addr = r.ips[0].address;
    let ip = addr.addr().to_string();
    assert!(ip.starts_with("10.77.0.1"), "pool address, got {addr}");
    assert_eq!(addr.prefix_len(), 24);
    assert_eq!(r.dns.nameservers, ["10.77.0.53"]);
    assert!(
        pod_addrs(&fx).contains(&format!("{addr}")),
        "{}",
        pod_addrs(&fx)
    );
    assert!(
        pod_routes(&fx).contains("default via 10.77.0.1 dev net1"),
        "{}",
        pod_routes(&fx)
    );
    let lease = dhcp_store(&fx)
        .load("sb-dhcp", "net1")
        .unwrap()
        .expect("lease file");
    assert_eq!(lease.granted.lease_secs, 3600);
    wait_server_lease(&server, &ip, false, "the server to record the lease").await;

    engine
        .teardown(&plexus_core::id::SandboxId::new("sb-dhcp").unwrap())
        .await
        .expect("teardown");
    assert_eq!(dhcp_store(&fx).load("sb-dhcp", "net1").unwrap(), None);
    wait_server_lease(&server, &ip, true, "RELEASE to free the lease").await;
}

#[tokio::test]
async fn dhcp_honours_a_static_reservation_for_the_runtime_mac() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let _server = start_server(&fx, 3600).await;
    let engine = fx.engine(DelegationMode::Auto);
    let c = conf(&fx, "lan", Some(RESERVED_MAC), 10);
    let rec = engine
        .setup(fx.sandbox("sb-resv"), plan(vec![attachment(1, "net1", &c)]))
        .await
        .expect("setup with dhcp");
    let r = rec.attachments[0].result.as_ref().unwrap();
    assert_eq!(r.ips[0].address.to_string(), "10.77.0.42/24");
    assert_eq!(r.interfaces[0].mac, RESERVED_MAC);
    engine
        .teardown(&plexus_core::id::SandboxId::new("sb-resv").unwrap())
        .await
        .expect("teardown");
}

#[tokio::test]
async fn dhcp_lease_is_renewed_and_a_restarted_renewer_keeps_renewing() {
    if !require_privileged() {
        return;
    }
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let fx = Fixture::new().await;
    let _server = start_server(&fx, 6).await;
    let engine = fx.engine(DelegationMode::Auto);
    engine
        .setup(
            fx.sandbox("sb-renew"),
            plan(vec![attachment(1, "net1", &conf(&fx, "lan", None, 3))]),
        )
        .await
        .expect("setup with dhcp");
    let store = dhcp_store(&fx);
    let renewals = |s: &LeaseStore| {
        s.load("sb-renew", "net1")
            .unwrap()
            .map(|l| l.renewals)
            .unwrap_or(0)
    };
    let first = tokio::spawn(run_renewer(store.clone()));
    wait_for(
        "a first renewal (T1 = 3 s)",
        Duration::from_secs(20),
        || renewals(&store) >= 1,
    )
    .await;
    // plexusd restarts: a new renewer reads the lease file and carries on.
    first.abort();
    let _ = first.await;
    let seen = renewals(&store);
    let second = tokio::spawn(run_renewer(store.clone()));
    wait_for(
        "a renewal by the restarted renewer",
        Duration::from_secs(20),
        || renewals(&store) > seen,
    )
    .await;
    second.abort();
    let lease = store.load("sb-renew", "net1").unwrap().unwrap();
    assert_eq!(lease.granted.lease_secs, 6);
    assert!(pod_addrs(&fx).contains(&lease.granted.address.to_string()));
    engine
        .teardown(&plexus_core::id::SandboxId::new("sb-renew").unwrap())
        .await
        .expect("teardown");
}

#[tokio::test]
async fn dhcp_without_a_server_fails_within_the_timeout_naming_interface_and_network() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let engine = fx.engine(DelegationMode::Auto);
    let err = engine
        .setup(
            fx.sandbox("sb-none"),
            plan(vec![attachment(
                1,
                "net1",
                &conf(&fx, "lan-noserver", None, 2),
            )]),
        )
        .await
        .expect_err("no server must fail");
    let msg = err.to_string();
    assert!(
        msg.contains("interface net1 of network lan-noserver"),
        "{msg}"
    );
    assert!(msg.contains("no DHCP OFFER within 2s"), "{msg}");
    assert!(fx.pod_links().await.is_empty(), "the macvlan is undone");
    assert!(dhcp_store(&fx).list().is_empty());
}

#[tokio::test]
async fn dhcp_expired_lease_leaves_the_interface_and_is_acquired_again() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let mut server = start_server(&fx, 6).await;
    let engine = fx.engine(DelegationMode::Auto);
    engine
        .setup(
            fx.sandbox("sb-exp"),
            plan(vec![attachment(1, "net1", &conf(&fx, "lan", None, 3))]),
        )
        .await
        .expect("setup with dhcp");
    let store = dhcp_store(&fx);
    let first = store.load("sb-exp", "net1").unwrap().unwrap();
    let addr = first.granted.address_net().to_string();
    assert!(pod_addrs(&fx).contains(&addr));
    server.stop();
    let renewer = tokio::spawn(run_renewer(store.clone()));
    // No server to renew with: at expiry (6 s) the address must leave the interface.
    wait_for(
        "the expired address to be removed",
        Duration::from_secs(20),
        || !pod_addrs(&fx).contains(&addr),
    )
    .await;
    server.start();
    wait_for(
        "a new lease after the server returns",
        Duration::from_secs(20),
        || {
            store
                .load("sb-exp", "net1")
                .unwrap()
                .is_some_and(|l| l.granted.lease_secs == 6 && l.bound_at > first.bound_at)
        },
    )
    .await;
    renewer.abort();
    let again = store.load("sb-exp", "net1").unwrap().unwrap();
    let new_addr = again.granted.address_net().to_string();
    assert!(pod_addrs(&fx).contains(&new_addr), "{}", pod_addrs(&fx));
    assert!(
        pod_routes(&fx).contains("default via 10.77.0.1 dev net1"),
        "{}",
        pod_routes(&fx)
    );
    engine
        .teardown(&plexus_core::id::SandboxId::new("sb-exp").unwrap())
        .await
        .expect("teardown");
}

#[tokio::test]
async fn dhcp_exec_path_gets_an_address_through_the_daemon_plexus_runs() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let server = start_server(&fx, 3600).await;
    let bin = plexus_engine::dhcp_daemon::find_binary(&["/usr/lib/cni".into()])
        .expect("the reference dhcp plugin in /usr/lib/cni");
    let socket = fx.dir.path().join("run/dhcp.sock");
    let daemon = plexus_engine::dhcp_daemon::DhcpDaemon::start(&bin, &socket)
        .await
        .expect("start dhcp daemon")
        .expect("nothing else serves a fresh socket");
    // A second start finds the socket served and leaves it alone.
    assert!(
        plexus_engine::dhcp_daemon::DhcpDaemon::start(&bin, &socket)
            .await
            .unwrap()
            .is_none()
    );
    let mut c = conf(&fx, "lan-exec", None, 10);
    c["ipam"] = serde_json::json!({"type": "dhcp", "daemonSocketPath": socket});
    let engine = fx.engine(DelegationMode::Auto);
    let rec = engine
        .setup(fx.sandbox("sb-exec"), plan(vec![attachment(1, "net1", &c)]))
        .await
        .expect("exec setup with the dhcp daemon");
    assert_eq!(rec.attachments[0].driver, Driver::Exec);
    let addr = rec.attachments[0].result.as_ref().unwrap().ips[0].address;
    let ip = addr.addr().to_string();
    assert!(ip.starts_with("10.77.0.1"), "pool address, got {addr}");
    assert!(pod_addrs(&fx).contains(&addr.to_string()));
    engine
        .teardown(&plexus_core::id::SandboxId::new("sb-exec").unwrap())
        .await
        .expect("teardown");
    wait_server_lease(&server, &ip, true, "the daemon's RELEASE").await;
    drop(daemon);
}

#[tokio::test]
async fn a_dhcp_network_hot_plugged_after_an_at_once_setup_is_released_through_the_held_netns() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let server = start_server(&fx, 3600).await;
    let engine = fx.engine(DelegationMode::Auto);
    let id = plexus_core::id::SandboxId::new("sb-dhcp-held").unwrap();
    let static_net = fx.macvlan("mv-static", "bridge", "10.78.0.0/24");
    engine
        .setup(
            fx.sandbox("sb-dhcp-held"),
            plan(vec![attachment(1, "net1", &static_net)]),
        )
        .await
        .expect("setup");
    assert!(engine.stop_at_once(&id), "a static macvlan");
    let hot = engine
        .attach(&id, attachment(2, "net2", &conf(&fx, "lan", None, 10)))
        .await
        .expect("hot-plug a dhcp network");
    assert!(
        !engine.stop_at_once(&id),
        "a DHCP lease needs the stop to wait"
    );
    let ip = hot.result.as_ref().unwrap().ips[0]
        .address
        .addr()
        .to_string();
    wait_server_lease(&server, &ip, false, "the server to record the lease").await;
    // A runtime told stop_at_once at setup answers at once: the path is gone first.
    plexus_netlink::netns::delete_named(fx.pod.name()).expect("remove the pod netns path");
    let lock = engine.lock(&id).await;
    engine
        .teardown_locked_as(&lock, plexus_engine::LinkDeletion::AfterMark)
        .await
        .expect("teardown");
    drop(lock);
    assert_eq!(dhcp_store(&fx).load("sb-dhcp-held", "net2").unwrap(), None);
    wait_server_lease(&server, &ip, true, "RELEASE through the held netns").await;
}

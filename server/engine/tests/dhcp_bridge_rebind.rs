//! Privileged tests of native `dhcp` IPAM beyond macvlan: a bridge + veth attachment
//! leasing through the bridge, and REBINDING (T2) when the server that granted the lease
//! has gone and another one on the link answers the broadcast. The server is busybox
//! `udhcpd` in a netns the test made (see `common::dhcp_server`); nothing leaves these
//! namespaces.

mod common;

use std::process::Command;
use std::time::Duration;

use common::dhcp_server::{conf, dhcp_store, pod_addrs, pod_routes, start_server, wait_for};
use common::{Fixture, attachment, plan};
use plexus_core::id::SandboxId;
use plexus_engine::ipam::dhcp::run_renewer;
use plexus_engine::{DelegationMode, Driver};
use plexus_netlink::test_util::{require_privileged, unique_name};

/// Runs `ip -n <netns> <args>` and fails the test naming the command when it fails.
fn ip(netns: &str, args: &[&str]) {
    let out = Command::new("ip")
        .arg("-n")
        .arg(netns)
        .args(args)
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip -n {netns} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn dhcp_on_a_native_bridge_leases_through_the_bridge_and_releases() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let server = start_server(&fx, 3600).await;
    // The uplink becomes a port of a test bridge; the pod's veth joins the same bridge.
    let br = unique_name("brd");
    let host = fx.host.name();
    ip(host, &["link", "add", &br, "type", "bridge"]);
    ip(host, &["link", "set", &fx.uplink, "master", &br]);
    ip(host, &["link", "set", &fx.uplink, "up"]);
    ip(host, &["link", "set", &br, "up"]);
    let c = serde_json::json!({
        "cniVersion": "1.0.0", "name": "lan-br", "type": "bridge", "bridge": br,
        "ipam": {"type": "dhcp", "timeout": 10}
    });
    let engine = fx.engine(DelegationMode::Auto);
    let rec = engine
        .setup(
            fx.sandbox("sb-brdhcp"),
            plan(vec![attachment(1, "net1", &c)]),
        )
        .await
        .expect("bridge setup with dhcp");
    let a = &rec.attachments[0];
    assert_eq!(a.driver, Driver::Native, "bridge + dhcp runs natively");
    let r = a.result.as_ref().unwrap();
    assert_eq!(r.interfaces.len(), 3, "bridge, host veth, pod veth: {r:?}");
    let addr = r.ips[0].address;
    assert_eq!(
        r.ips[0].interface,
        Some(2),
        "the address is on the pod's veth"
    );
    assert!(
        addr.addr().to_string().starts_with("10.77.0.1"),
        "pool address, got {addr}"
    );
    assert_eq!(r.dns.nameservers, ["10.77.0.53"], "the lease's DNS");
    assert!(
        pod_addrs(&fx).contains(&addr.to_string()),
        "{}",
        pod_addrs(&fx)
    );
    assert!(
        pod_routes(&fx).contains("default via 10.77.0.1 dev net1"),
        "{}",
        pod_routes(&fx)
    );
    let ip_s = addr.addr().to_string();
    assert!(dhcp_store(&fx).load("sb-brdhcp", "net1").unwrap().is_some());

    engine
        .teardown(&SandboxId::new("sb-brdhcp").unwrap())
        .await
        .expect("teardown");
    assert_eq!(dhcp_store(&fx).load("sb-brdhcp", "net1").unwrap(), None);
    assert!(fx.pod_links().await.is_empty(), "the pod veth is gone");
    wait_for("RELEASE to free the lease", Duration::from_secs(10), || {
        server
            .leases()
            .iter()
            .any(|(_, i, e)| *i == ip_s && e == "expired")
    })
    .await;
}

#[tokio::test]
async fn dhcp_rebinds_by_broadcast_when_the_granting_server_is_gone() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let mut server = start_server(&fx, 10).await;
    let engine = fx.engine(DelegationMode::Auto);
    engine
        .setup(
            fx.sandbox("sb-rebind"),
            plan(vec![attachment(1, "net1", &conf(&fx, "lan", None, 2))]),
        )
        .await
        .expect("setup with dhcp");
    let store = dhcp_store(&fx);
    let first = store.load("sb-rebind", "net1").unwrap().unwrap();
    assert_eq!(first.granted.server_id.to_string(), "10.77.0.1");
    let ip_s = first.granted.address.to_string();
    wait_for(
        "udhcpd to write its lease file",
        Duration::from_secs(10),
        || server.leases().iter().any(|(_, i, _)| *i == ip_s),
    )
    .await;
    // The server moves to 10.77.0.2 (same lease file): unicast RENEWING to 10.77.0.1
    // finds nobody, so only the broadcast REQUEST of REBINDING can keep the lease.
    server.stop();
    let peer = server.link.clone();
    let srv = server.srv.name().to_string();
    ip(&srv, &["addr", "del", "10.77.0.1/24", "dev", &peer]);
    ip(&srv, &["addr", "add", "10.77.0.2/24", "dev", &peer]);
    server.start();
    let renewer = tokio::spawn(run_renewer(store.clone()));
    wait_for(
        "a rebind ACK from the server at 10.77.0.2",
        Duration::from_secs(30),
        || {
            store
                .load("sb-rebind", "net1")
                .unwrap()
                .is_some_and(|l| l.granted.server_id.to_string() == "10.77.0.2" && l.renewals >= 1)
        },
    )
    .await;
    renewer.abort();
    let now = store.load("sb-rebind", "net1").unwrap().unwrap();
    assert_eq!(
        now.granted.address, first.granted.address,
        "same address kept"
    );
    assert!(pod_addrs(&fx).contains(&now.granted.address_net().to_string()));
    engine
        .teardown(&SandboxId::new("sb-rebind").unwrap())
        .await
        .expect("teardown");
}

//! The DHCP side of the privileged DHCP tests: the `udhcpd` fixture of
//! `plexus_netlink::test_util` on the fixture's uplink veth (its peer is moved into the
//! server netns and carries 10.77.0.1/24), plus what the tests inspect in the pod.

use std::process::Command;
use std::time::Duration;

use plexus_engine::DelegationMode;
use plexus_engine::ipam::dhcp::LeaseStore;

use super::Fixture;

pub use plexus_netlink::test_util::udhcpd::Udhcpd as Server;

/// Moves the uplink's peer into a new server netns, addresses it and starts udhcpd on it.
pub async fn start_server(fx: &Fixture, lease_secs: u32) -> Server {
    let peer = peer_of(fx).await;
    Server::start_on(&fx.host, &peer, &fx.dir.path().join("udhcpd"), lease_secs).await
}

/// The veth peer of the fixture's uplink (the fixture names it `pe*`).
pub async fn peer_of(fx: &Fixture) -> String {
    let host = fx.host.handle().await;
    host.links()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .find(|n| n.starts_with("pe"))
        .expect("uplink peer")
}

pub fn conf(fx: &Fixture, name: &str, mac: Option<&str>, timeout: u64) -> serde_json::Value {
    let mut c = serde_json::json!({
        "cniVersion":"1.0.0","name":name,"type":"macvlan","master":fx.uplink,
        "ipam":{"type":"dhcp","timeout":timeout}
    });
    if let Some(m) = mac {
        c["runtimeConfig"] = serde_json::json!({ "mac": m });
    }
    c
}

/// Polls `check` every 100 ms until it holds; panics naming `what` after `limit`.
pub async fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let until = tokio::time::Instant::now() + limit;
    while !check() {
        assert!(
            tokio::time::Instant::now() < until,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn dhcp_store(fx: &Fixture) -> LeaseStore {
    LeaseStore::new(fx.config(DelegationMode::Auto).dhcp_lease_dir)
}

pub fn pod_addrs(fx: &Fixture) -> String {
    let out = Command::new("ip")
        .args([
            "-n",
            fx.pod.name(),
            "-4",
            "-o",
            "addr",
            "show",
            "dev",
            "net1",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn pod_routes(fx: &Fixture) -> String {
    let out = Command::new("ip")
        .args(["-n", fx.pod.name(), "-4", "route"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until `server` lists the lease of `ip` as held (`expired == false`) or as expired,
/// which a 3600 s lease can only be this soon because of a RELEASE.
pub async fn wait_server_lease(server: &Server, ip: &str, expired: bool, what: &str) {
    wait_for(what, Duration::from_secs(10), || {
        server
            .leases()
            .iter()
            .any(|(_, i, e)| i == ip && (e == "expired") == expired)
    })
    .await;
}

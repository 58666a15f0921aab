//! plexusd's own DHCP client across a real process restart (privileged): a pod's macvlan
//! leases from busybox `udhcpd` (in a server netns the test made), plexusd renews it, is
//! killed with SIGKILL mid-lease, and the next plexusd on the same state directory keeps
//! renewing from the lease file; teardown then sends RELEASE. Nothing leaves the test's
//! namespaces.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use plexus_client::v1;
use plexus_netlink::test_util::require_privileged;
use plexus_netlink::test_util::udhcpd::Udhcpd;
use support::{Namespaces, Plexusd, nad, setup_request_for, write_config, write_nads};

/// The `renewals` counter and the address of the lease file of `net1`, if there is one.
fn lease(state: &Path, sandbox: &str) -> Option<(u64, String)> {
    let bytes = std::fs::read(state.join("dhcp").join(sandbox).join("net1.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).expect("lease file is JSON");
    Some((
        v["renewals"].as_u64().expect("renewals"),
        v["granted"]["address"]
            .as_str()
            .expect("address")
            .to_string(),
    ))
}

/// Polls `check` every 100 ms until it holds; fails naming `what` after `limit`.
async fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plexusd_killed_mid_lease_keeps_renewing_after_restart_and_releases_on_teardown() {
    if !require_privileged() {
        return;
    }
    let Namespaces { host, pod, uplink } = Namespaces::new().await;
    let peer = host
        .handle()
        .await
        .links()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .find(|n| n.starts_with("pe"))
        .expect("the uplink's peer");
    let dir = tempfile::tempdir().unwrap();
    // T1 = 3 s: a renewal every few seconds while the test runs.
    let server = Udhcpd::start_on(&host, &peer, &dir.path().join("udhcpd"), 6).await;
    let (config, socket) = write_config(dir.path(), &host);
    let conf = serde_json::json!({"cniVersion": "1.0.0", "type": "macvlan", "master": uplink,
        "mode": "bridge", "ipam": {"type": "dhcp", "timeout": 3}});
    write_nads(dir.path(), &[nad("lan", conf)]);
    let state = dir.path().join("state");

    let first = Plexusd::start(&config, &socket, None).await;
    let mut client = plexus_client::connect(&socket).await.unwrap();
    client
        .setup_pod(setup_request_for("sb-dhcp", &pod.path(), "lan"))
        .await
        .expect("setup with a dhcp lease");
    let (_, address) = lease(&state, "sb-dhcp").expect("a lease file after setup");
    assert!(
        address.starts_with("10.77.0.1"),
        "pool address, got {address}"
    );
    wait_for(
        "a renewal by the first plexusd",
        Duration::from_secs(20),
        || lease(&state, "sb-dhcp").is_some_and(|(n, _)| n >= 1),
    )
    .await;
    drop(client);
    drop(first); // SIGKILL, reaped
    let (seen, _) = lease(&state, "sb-dhcp").unwrap();

    let _second = Plexusd::start(&config, &socket, None).await;
    wait_for(
        "a renewal by the restarted plexusd",
        Duration::from_secs(20),
        || lease(&state, "sb-dhcp").is_some_and(|(n, _)| n > seen),
    )
    .await;
    let (_, still) = lease(&state, "sb-dhcp").unwrap();
    assert_eq!(still, address, "the renewed lease keeps the address");

    let mut client = plexus_client::connect(&socket).await.unwrap();
    client
        .teardown_pod(v1::TeardownPodRequest {
            sandbox_id: "sb-dhcp".into(),
            ..Default::default()
        })
        .await
        .expect("teardown");
    assert_eq!(lease(&state, "sb-dhcp"), None, "the lease file is gone");
    // A 6 s lease renewed moments ago shows expired this soon only because of RELEASE.
    wait_for("RELEASE to free the lease", Duration::from_secs(10), || {
        server.shows(&address, true)
    })
    .await;
}

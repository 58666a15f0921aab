//! Privileged: one network's host-local leases live in one place whatever the driver. The
//! native allocator and the reference `host-local` binary (`/usr/lib/cni`, forced with
//! `plexus.io/delegation: exec`) share the engine's `ipamDataDir` (not the plugin's own
//! default `/var/lib/cni/networks`, as in the shipped example config), so they never hand
//! out the same address; a NAD's own `dataDir` is honoured by both and validated.

mod common;

use std::path::PathBuf;

use common::{Fixture, attachment, plan};
use plexus_engine::{DelegationMode, Driver, SandboxSpec};
use plexus_netlink::test_util::{TestNetns, require_privileged, unique_name};

/// The plugin's own default lease root, which must stay untouched.
const PLUGIN_DEFAULT: &str = "/var/lib/cni/networks";

/// Removes `/var/lib/cni/networks/<network>` if a failing run made it (only that directory,
/// named after this test's unique network).
struct DefaultDirGuard(PathBuf);

impl Drop for DefaultDirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sid(id: &str) -> plexus_core::id::SandboxId {
    plexus_core::id::SandboxId::new(id).expect("a valid sandbox id")
}

fn sandbox(id: &str, netns: &TestNetns) -> SandboxSpec {
    SandboxSpec {
        sandbox_id: sid(id),
        pod: plexus_core::pod::PodIdentity::new("default", id, "uid"),
        netns: netns.path(),
    }
}

fn first_ip(rec: &plexus_engine::SandboxRecord) -> String {
    rec.attachments[0].result.as_ref().unwrap().ips[0]
        .address
        .to_string()
}

#[tokio::test]
async fn native_and_exec_host_local_never_share_an_address() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let pods = [
        TestNetns::new().await,
        TestNetns::new().await,
        TestNetns::new().await,
    ];
    let network = unique_name("hl");
    let _guard = DefaultDirGuard(PathBuf::from(PLUGIN_DEFAULT).join(&network));
    // No dataDir in the NAD: the engine's ipamDataDir applies to both drivers.
    let conf = serde_json::json!({
        "cniVersion": "1.0.0", "name": network, "type": "macvlan", "master": fx.uplink,
        "ipam": {"type": "host-local", "subnet": "10.61.0.0/28"}
    });
    let engine = fx.engine(DelegationMode::Auto);
    let mut ips = Vec::new();
    for (i, (pod, exec)) in pods.iter().zip([false, true, false]).enumerate() {
        let mut att = attachment(1, "net1", &conf);
        att.force_exec = exec;
        let rec = engine
            .setup(sandbox(&format!("sb-hl-{i}"), pod), plan(vec![att]))
            .await
            .expect("setup");
        let want = if exec { Driver::Exec } else { Driver::Native };
        assert_eq!(rec.attachments[0].driver, want);
        ips.push(first_ip(&rec));
    }
    assert_eq!(ips, ["10.61.0.2/28", "10.61.0.3/28", "10.61.0.4/28"]);
    assert_eq!(
        fx.lease_files(),
        [
            format!("{network}/10.61.0.2"),
            format!("{network}/10.61.0.3"),
            format!("{network}/10.61.0.4"),
        ]
    );
    assert!(
        !PathBuf::from(PLUGIN_DEFAULT).join(&network).exists(),
        "the exec'd plugin used its own default lease directory"
    );
    // Each driver releases its own lease from the shared place.
    for i in 0..pods.len() {
        engine
            .teardown(&sid(&format!("sb-hl-{i}")))
            .await
            .expect("teardown");
    }
    assert!(fx.lease_files().is_empty(), "{:?}", fx.lease_files());
}

#[tokio::test]
async fn a_nad_data_dir_is_honoured_by_both_drivers_and_validated() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let other = TestNetns::new().await;
    let custom = fx.dir.path().join("custom");
    let network = unique_name("hd");
    let conf = |data_dir: serde_json::Value| {
        serde_json::json!({
            "cniVersion": "1.0.0", "name": network, "type": "macvlan", "master": fx.uplink,
            "ipam": {"type": "host-local", "subnet": "10.62.0.0/28", "dataDir": data_dir}
        })
    };
    let engine = fx.engine(DelegationMode::Auto);
    let native = engine
        .setup(
            sandbox("sb-hd-n", &fx.pod),
            plan(vec![attachment(
                1,
                "net1",
                &conf(custom.display().to_string().into()),
            )]),
        )
        .await
        .expect("native setup");
    assert_eq!(native.attachments[0].driver, Driver::Native);
    let mut att = attachment(1, "net1", &conf(custom.display().to_string().into()));
    att.force_exec = true;
    let exec = engine
        .setup(sandbox("sb-hd-e", &other), plan(vec![att]))
        .await
        .expect("exec setup");
    assert_eq!(exec.attachments[0].driver, Driver::Exec);
    assert_eq!(first_ip(&native), "10.62.0.2/28");
    assert_eq!(first_ip(&exec), "10.62.0.3/28");
    assert_eq!(
        common::lease_files(&custom),
        [
            format!("{network}/10.62.0.2"),
            format!("{network}/10.62.0.3")
        ]
    );
    assert!(fx.lease_files().is_empty(), "nothing under ipamDataDir");
    engine.teardown(&sid("sb-hd-n")).await.expect("teardown");
    engine.teardown(&sid("sb-hd-e")).await.expect("teardown");
    assert!(common::lease_files(&custom).is_empty());

    // A dataDir from a NAD must be absolute and free of `..`, on either driver.
    for (bad, why) in [
        ("relative/leases", "is not an absolute path"),
        ("/var/lib/../../tmp/x", "contains '..'"),
    ] {
        for exec in [false, true] {
            let mut att = attachment(1, "net1", &conf(bad.into()));
            att.force_exec = exec;
            let err = engine
                .setup(sandbox("sb-hd-bad", &fx.pod), plan(vec![att]))
                .await
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("ipam.dataDir") && err.contains(why),
                "{bad} (exec {exec}): {err}"
            );
        }
    }
    assert!(fx.pod_links().await.is_empty());
}

//! Teardown, hot-plug, corrupt records and cancelled setups.

use super::*;

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
        .teardown(&sid("sb-corrupt"))
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
async fn teardown_without_netns_releases_leases_and_host_side() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let name = plexus_netlink::test_util::unique_name("plexus-t-gone-");
    let pod_path = {
        let ns = plexus_netlink::netns::create_named(&name).expect("pod netns");
        ns.path().to_path_buf()
    };
    let engine = fx.engine(DelegationMode::Auto);
    let bridge = serde_json::json!({"cniVersion":"1.0.0","name":"br-gone","type":"bridge",
        "bridge": plexus_netlink::test_util::unique_name("br"),
        "ipam":{"type":"host-local","subnet":"10.43.0.0/24","dataDir":fx.leases()}});
    let mut sb = fx.sandbox("sb-gone");
    sb.netns = pod_path.clone();
    engine
        .setup(
            sb,
            plan(vec![
                attachment(1, "net1", &fx.macvlan("mv-gone", "bridge", "10.44.0.0/24")),
                attachment(2, "net2", &bridge),
            ]),
        )
        .await
        .expect("setup");
    let host = fx.host.handle().await;
    let veths = |links: Vec<plexus_netlink::Link>| {
        links
            .into_iter()
            .filter(|l| l.kind.as_deref() == Some("veth") && l.name.starts_with("veth"))
            .count()
    };
    assert_eq!(veths(host.links().await.unwrap()), 1);
    plexus_netlink::netns::delete_named(&name).expect("delete pod netns");
    let report = engine
        .teardown(&sid("sb-gone"))
        .await
        .expect("teardown without netns");
    assert_eq!(report.removed, vec!["net2", "net1"]);
    assert!(fx.lease_files().is_empty());
    // The kernel destroys the veth pair with the netns (asynchronously).
    let mut left = usize::MAX;
    for _ in 0..40 {
        left = veths(host.links().await.unwrap());
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(left, 0, "host veth left behind");
    assert_eq!(engine.sandbox(&sid("sb-gone")).unwrap(), None);
}

#[tokio::test]
async fn hotplug_attach_and_detach() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let engine = fx.engine(DelegationMode::Auto);
    engine
        .setup(
            fx.sandbox("sb-hot"),
            plan(vec![attachment(
                1,
                "net1",
                &fx.macvlan("mv-h1", "bridge", "10.45.0.0/24"),
            )]),
        )
        .await
        .expect("setup");
    let added = engine
        .attach(
            &sid("sb-hot"),
            attachment(2, "net2", &fx.macvlan("mv-h2", "private", "10.46.0.0/24")),
        )
        .await
        .expect("hot attach");
    assert_eq!(added.interface, "net2");
    assert_eq!(fx.pod_links().await, vec!["net1", "net2"]);
    // A colliding hot-plug is refused and leaves the sandbox as it was.
    let err = engine
        .attach(
            &sid("sb-hot"),
            attachment(3, "net2", &fx.macvlan("mv-h3", "bridge", "10.47.0.0/24")),
        )
        .await
        .expect_err("collision");
    assert!(err.to_string().contains("already exists"), "{err}");
    let removed = engine
        .detach(&sid("sb-hot"), &ifn("net2"))
        .await
        .expect("detach");
    assert_eq!(removed.interface, "net2");
    assert_eq!(fx.pod_links().await, vec!["net1"]);
    assert_eq!(fx.lease_files(), vec!["mv-h1/10.45.0.2"]);
    assert!(engine.detach(&sid("sb-hot"), &ifn("net2")).await.is_err());
    let rec = engine.sandbox(&sid("sb-hot")).unwrap().unwrap();
    assert_eq!(rec.attachments.len(), 1);
    engine.teardown(&sid("sb-hot")).await.expect("teardown");
    assert!(fx.pod_links().await.is_empty());
    assert!(fx.lease_files().is_empty());
}

#[tokio::test]
async fn cancelled_setup_leaves_a_record_that_tears_down_exactly() {
    if !require_privileged() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let fx = Fixture::new().await;
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
    let task = {
        let engine = engine.clone();
        let sb = fx.sandbox("sb-cancel");
        let p = plan(vec![
            attachment(1, "net1", &fx.macvlan("mv-cx", "bridge", "10.50.0.0/24")),
            attachment(2, "net2", &slow_conf),
        ]);
        tokio::spawn(async move { engine.setup(sb, p).await })
    };
    // Cancel while net2's plugin runs (it has written its pid), net1 made.
    wait_written(&pid_file).await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    // The dropped future left intent/done records: net1 made, net2 intended.
    let rec = engine.sandbox(&sid("sb-cancel")).unwrap().expect("record");
    assert_eq!(rec.attachments.len(), 2);
    assert_eq!(fx.pod_links().await, vec!["net1"]);
    let report = engine.teardown(&sid("sb-cancel")).await.expect("teardown");
    assert_eq!(report.removed, vec!["net2", "net1"]);
    assert!(fx.pod_links().await.is_empty());
    assert!(fx.lease_files().is_empty());
}

#[tokio::test]
async fn teardown_removes_links_even_when_the_link_group_setting_changed() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let engine = fx.engine(DelegationMode::Auto);
    engine
        .setup(
            fx.sandbox("sb-group"),
            plan(vec![attachment(
                1,
                "net1",
                &fx.macvlan("mv-g", "bridge", "10.63.0.0/24"),
            )]),
        )
        .await
        .expect("setup");
    drop(engine);
    let mut cfg = fx.config(DelegationMode::Auto);
    cfg.link_group = 0x0070_6c79;
    let engine = plexus_engine::Engine::open(cfg).unwrap();
    engine.teardown(&sid("sb-group")).await.expect("teardown");
    assert!(fx.pod_links().await.is_empty());
    assert!(fx.lease_files().is_empty());
}

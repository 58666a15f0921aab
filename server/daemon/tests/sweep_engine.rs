//! The netns sweep with the real engine and plexusd as a process (privileged): two pods get
//! a macvlan and a bridge network; one pod's named netns is deleted (as containerd does on
//! StopPodSandbox) and no teardown is ever sent. Within a few `reconcile.interval`s its
//! record, leases, result-cache files and host-side links are gone; the live pod is kept.

mod support;

use std::time::{Duration, Instant};

use plexus_client::v1;
use plexus_netlink::test_util::{TestNetns, require_privileged, unique_name};
use support::{
    Namespaces, Plexusd, files_naming, lease_files, link_names, nad, recorded, setup_request_for,
    write_config, write_nads,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_netns_is_reclaimed_by_the_sweep() {
    if !require_privileged() {
        return;
    }
    let Namespaces { host, pod, uplink } = Namespaces::new().await;
    let live_pod = TestNetns::new().await;
    live_pod.veth_pair("eth0", "eth0peer").await.unwrap();
    let bridge = unique_name("br");
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = write_config(dir.path(), &host);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("reconcile: {interval: 1s}\n");
    std::fs::write(&config, text).unwrap();
    let leases = dir.path().join("leases");
    let mv = serde_json::json!({"cniVersion": "1.0.0", "type": "macvlan", "master": uplink,
        "mode": "bridge", "ipam": {"type": "host-local", "subnet": "10.250.5.0/24"}});
    let br = serde_json::json!({"cniVersion": "1.0.0", "type": "bridge", "bridge": bridge,
        "isGateway": false, "ipam": {"type": "host-local", "subnet": "10.250.6.0/24"}});
    write_nads(dir.path(), &[nad("mv", mv), nad("br", br)]);
    let host_before = link_names(&host).await;

    let _daemon = Plexusd::start(&config, &socket, None).await;
    let mut client = plexus_client::connect(&socket).await.unwrap();
    let dead_id = format!("sb-dead-{}", std::process::id());
    let live_id = format!("sb-live-{}", std::process::id());
    for (id, ns, nets) in [(&dead_id, &pod, "mv,br"), (&live_id, &live_pod, "mv")] {
        let answer = client
            .setup_pod(setup_request_for(id, &ns.path(), nets))
            .await
            .unwrap()
            .into_inner();
        assert!(answer.attachments.len() > 1, "{answer:?}");
    }
    assert_eq!(lease_files(&leases).len(), 3);
    let host_with_pods = link_names(&host).await;
    assert!(
        host_with_pods.len() > host_before.len() + 1,
        "bridge and a veth host end expected: {host_with_pods:?}"
    );
    let mut watch = client
        .watch(v1::WatchRequest { target: None })
        .await
        .unwrap()
        .into_inner();

    // containerd's StopPodSandbox removes the netns bind mount; no teardown follows.
    let netns_path = pod.path();
    drop(pod);
    assert!(!netns_path.exists());

    let until = Instant::now() + Duration::from_secs(15);
    while recorded(&mut client)
        .await
        .iter()
        .any(|(id, _)| *id == dead_id)
    {
        assert!(
            Instant::now() < until,
            "the sweep did not reclaim {dead_id}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left: Vec<String> = recorded(&mut client)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert!(
        !left.is_empty() && left.iter().all(|id| *id == live_id),
        "{left:?}"
    );
    // One lease left: the live pod's macvlan.
    assert_eq!(
        lease_files(&leases).len(),
        1,
        "leases: {:?}",
        lease_files(&leases)
    );
    assert!(
        files_naming(&dir.path().join("cache"), &dead_id).is_empty(),
        "{:?}",
        files_naming(&dir.path().join("cache"), &dead_id)
    );
    assert!(
        files_naming(&dir.path().join("state"), &dead_id).is_empty(),
        "{:?}",
        files_naming(&dir.path().join("state"), &dead_id)
    );
    let mut host_after = link_names(&host).await;
    host_after.remove(&bridge);
    assert_eq!(host_after, host_before, "host links left");

    // Watch subscribers saw the sweep's detaches.
    let mut detached = Vec::new();
    while detached.len() < 2 {
        let event = tokio::time::timeout(Duration::from_secs(5), watch.message())
            .await
            .expect("detach events")
            .unwrap()
            .expect("stream open");
        if event
            .attachment
            .as_ref()
            .is_some_and(|a| a.sandbox_id == dead_id)
        {
            detached.push(event.kind);
        }
    }
    assert!(
        detached
            .iter()
            .all(|k| *k == v1::watch_event::Kind::Detached as i32),
        "{detached:?}"
    );
    assert!(live_pod.path().exists());
}

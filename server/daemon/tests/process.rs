//! plexusd as a process with the real engine (privileged): a pod netns gets a macvlan and a
//! bridge network through the API; plexusd is killed (abort at a crash point) in the middle
//! of the second attachment, restarted on the same state, and teardown leaves nothing: no
//! link in the pod or host namespace, no host-local lease. Deadlines with the real engine:
//! a setup and a hot-plug that outlast them are undone. (A real SIGKILL: `sigkill.rs`.)

mod support;

use std::time::Duration;

use plexus_client::v1;
use plexus_netlink::test_util::{require_privileged, unique_name};
use support::{
    Namespaces, Plexusd, install_plugin, lease_files, link_names, nad, pid_in, recorded,
    setup_request_for, slow_bridge_script, wait_process_gone, write_config, write_nads,
};

fn setup_request(sandbox: &str, netns: &std::path::Path) -> v1::SetupPodRequest {
    setup_request_for(sandbox, netns, "mv,br")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_mid_setup_then_restart_and_teardown_leaves_nothing() {
    if !require_privileged() {
        return;
    }
    let Namespaces { host, pod, uplink } = Namespaces::new().await;
    let bridge = unique_name("br");
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = write_config(dir.path(), &host);
    let leases = dir.path().join("leases");
    let mv = serde_json::json!({"cniVersion": "1.0.0", "type": "macvlan", "master": uplink,
        "mode": "bridge", "ipam": {"type": "host-local", "subnet": "10.250.1.0/24"}});
    let br = serde_json::json!({"cniVersion": "1.0.0", "type": "bridge", "bridge": bridge,
        "isGateway": false, "ipam": {"type": "host-local", "subnet": "10.250.2.0/24"}});
    write_nads(dir.path(), &[nad("mv", mv), nad("br", br)]);
    let host_before = link_names(&host).await;
    let pod_before = link_names(&pod).await;

    // 1. A clean setup and teardown through the API.
    let mut daemon = Plexusd::start(&config, &socket, None).await;
    let mut client = plexus_client::connect(&socket).await.unwrap();
    let answer = client
        .setup_pod(setup_request("sb-clean", &pod.path()))
        .await
        .unwrap()
        .into_inner();
    let ifaces: Vec<&str> = answer
        .attachments
        .iter()
        .map(|a| a.interface.as_str())
        .collect();
    assert_eq!(ifaces, ["eth0", "net1", "net2"], "{answer:?}");
    // Native links only: plexusd holds the netns, so a runtime's stop need not wait.
    assert!(answer.stop_at_once, "{answer:?}");
    assert!(
        answer.network_status.contains("default/mv"),
        "{}",
        answer.network_status
    );
    let now = link_names(&pod).await;
    assert!(now.contains("net1") && now.contains("net2"), "{now:?}");
    assert_eq!(lease_files(&leases).len(), 2);
    let listed = client
        .list_attachments(v1::ListAttachmentsRequest {
            target: Some(v1::PodSelector {
                sandbox_id: "sb-clean".into(),
                pod: None,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let status: serde_json::Value =
        serde_json::from_str(&listed.network_status["sb-clean"]).unwrap();
    assert_eq!(status[0]["name"], "default/mv", "{status}");
    assert_eq!(status[0]["interface"], "net1", "{status}");
    assert_eq!(status[1]["name"], "default/br", "{status}");
    let down = client
        .teardown_pod(v1::TeardownPodRequest {
            sandbox_id: "sb-clean".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(down.known);
    assert_eq!(link_names(&pod).await, pod_before);
    assert!(lease_files(&leases).is_empty());
    drop(client);
    drop(daemon);

    // 2. Killed in the middle of the second network (address step of attachment 2).
    daemon = Plexusd::start(&config, &socket, Some("setup.2.addr")).await;
    let mut client = plexus_client::connect(&socket).await.unwrap();
    let err = client
        .setup_pod(setup_request("sb-crash", &pod.path()))
        .await
        .unwrap_err();
    assert_ne!(err.code(), tonic::Code::Ok);
    let status = daemon.wait();
    assert!(!status.success(), "plexusd must have aborted: {status}");
    drop(client);
    drop(daemon);

    // 3. Restart on the same state: recovery undoes the unfinished setup whole (the pod's
    //    networks are recorded done together: the finished net1 goes with the half-made
    //    net2); teardown then finds nothing left to remove.
    let _daemon = Plexusd::start(&config, &socket, None).await;
    let mut client = plexus_client::connect(&socket).await.unwrap();
    let listed = client
        .list_attachments(v1::ListAttachmentsRequest { target: None })
        .await
        .unwrap()
        .into_inner()
        .attachments;
    assert!(
        !listed
            .iter()
            .any(|a| a.sandbox_id == "sb-crash" && a.interface.starts_with("net")),
        "{listed:?}"
    );
    assert!(
        lease_files(&leases).is_empty(),
        "{:?}",
        lease_files(&leases)
    );
    let down = client
        .teardown_pod(v1::TeardownPodRequest {
            sandbox_id: "sb-crash".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(down.removed.is_empty(), "{:?}", down.removed);
    assert_eq!(link_names(&pod).await, pod_before, "pod links left");
    let mut host_after = link_names(&host).await;
    // The bridge is shared infrastructure: like the reference plugin, it stays.
    host_after.remove(&bridge);
    assert_eq!(host_after, host_before, "host links left");
    assert!(
        lease_files(&leases).is_empty(),
        "leases left: {:?}",
        lease_files(&leases)
    );
    let empty = client
        .list_attachments(v1::ListAttachmentsRequest { target: None })
        .await
        .unwrap()
        .into_inner();
    assert!(empty.attachments.is_empty());
}

/// A CNI plugin that takes 5 s to ADD (and DELs at once): the request deadline passes first.
/// A plugin whose ADD writes its pid to `pid_file` and then sleeps far past any deadline:
/// only a kill ends it.
fn slow_plugin(pid_file: &std::path::Path) -> String {
    format!(
        "#!/bin/sh\ncat >/dev/null\n\
         if [ \"$CNI_COMMAND\" = ADD ]; then echo $$ > {p}.tmp && mv {p}.tmp {p}; exec sleep 600; fi\n\
         if [ \"$CNI_COMMAND\" = VERSION ]; then echo '{{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"1.0.0\"]}}'; fi\n\
         exit 0\n",
        p = pid_file.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_with_the_real_engine_undoes_what_was_made() {
    if !require_privileged() {
        return;
    }
    let Namespaces { host, pod, uplink } = Namespaces::new().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = write_config(dir.path(), &host);
    let pid_file = dir.path().join("slowplug.pid");
    install_plugin(dir.path(), "slowplug", &slow_plugin(&pid_file));
    let mv = serde_json::json!({"cniVersion": "1.0.0", "type": "macvlan", "master": uplink,
        "mode": "bridge", "ipam": {"type": "host-local", "subnet": "10.250.3.0/24"}});
    let slow = serde_json::json!({"cniVersion": "1.0.0", "type": "slowplug"});
    write_nads(dir.path(), &[nad("mv", mv), nad("slow", slow)]);
    let pod_before = link_names(&pod).await;
    let _daemon = Plexusd::start(&config, &socket, None).await;
    let mut client = plexus_client::connect(&socket).await.unwrap();
    let mut request = tonic::Request::new(setup_request_for("sb-slow", &pod.path(), "mv,slow"));
    request.set_timeout(Duration::from_millis(1500));
    // The plugin never answers by itself: an answer at all, DEADLINE_EXCEEDED, with the
    // plugin killed, is the deadline honoured (no clock reading).
    let err = client.setup_pod(request).await.unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::DeadlineExceeded,
        "{}",
        err.message()
    );
    assert!(
        err.message().contains("net1"),
        "names what was undone: {}",
        err.message()
    );
    wait_process_gone(pid_in(&pid_file)).await;
    assert_eq!(
        link_names(&pod).await,
        pod_before,
        "nothing half-made in the pod"
    );
    assert!(
        lease_files(&dir.path().join("leases")).is_empty(),
        "lease released"
    );
    let listed = client
        .list_attachments(v1::ListAttachmentsRequest { target: None })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.attachments.is_empty(), "{listed:?}");

    // An interface name already taken in the pod (Multus F8): FAILED_PRECONDITION, nothing kept.
    pod.veth_pair("net1", "net1peer").await.unwrap();
    let err = client
        .setup_pod(setup_request_for("sb-taken", &pod.path(), "mv"))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::FailedPrecondition,
        "{}",
        err.message()
    );
    assert!(err.message().contains("net1"), "{}", err.message());
    assert!(lease_files(&dir.path().join("leases")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_plug_past_its_deadline_is_undone_with_the_real_engine() {
    if !require_privileged() {
        return;
    }
    let Namespaces { host, pod, uplink } = Namespaces::new().await;
    let bridge = unique_name("br");
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = write_config(dir.path(), &host);
    let leases = dir.path().join("leases");
    let marker = dir.path().join("slow-add-ran");
    // The plugin makes the veth, address and lease, then sleeps until killed.
    install_plugin(dir.path(), "slowbridge", &slow_bridge_script(&marker, 600));
    let mv = serde_json::json!({"cniVersion": "1.0.0", "type": "macvlan", "master": uplink,
        "mode": "bridge", "ipam": {"type": "host-local", "subnet": "10.250.5.0/24"}});
    // The exec path: host-local needs the test's lease directory spelled out.
    let slow = serde_json::json!({"cniVersion": "1.0.0", "type": "slowbridge",
        "bridge": bridge, "isGateway": false,
        "ipam": {"type": "host-local", "subnet": "10.250.6.0/24", "dataDir": leases}});
    write_nads(dir.path(), &[nad("mv", mv), nad("slowbr", slow)]);
    let _daemon = Plexusd::start(&config, &socket, None).await;
    let mut client = plexus_client::connect(&socket).await.unwrap();
    client
        .setup_pod(setup_request_for("sb-hot", &pod.path(), "mv"))
        .await
        .unwrap();
    let pod_links = link_names(&pod).await;
    let host_links = link_names(&host).await;
    assert!(pod_links.contains("net1"), "{pod_links:?}");

    let mut request = tonic::Request::new(v1::AttachRequest {
        target: Some(v1::PodSelector {
            sandbox_id: "sb-hot".into(),
            pod: None,
        }),
        selection: "slowbr".into(),
        via_annotation: false,
    });
    request.set_timeout(Duration::from_millis(1500));
    let err = client.attach(request).await.unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::DeadlineExceeded,
        "{}",
        err.message()
    );
    assert!(
        marker.exists(),
        "the plugin had made its part before the deadline"
    );
    // The marker holds the plugin shell's pid; it (and its sleep) were killed.
    wait_process_gone(pid_in(&marker)).await;
    assert!(
        err.message().contains("undid net2 (default/slowbr)"),
        "{}",
        err.message()
    );
    assert_eq!(link_names(&pod).await, pod_links, "pod links left");
    let mut host_after = link_names(&host).await;
    // The bridge is shared infrastructure: like the reference plugin, it stays.
    host_after.remove(&bridge);
    assert_eq!(host_after, host_links, "host links left");
    assert_eq!(lease_files(&leases).len(), 1, "only net1's lease");
    assert_eq!(
        recorded(&mut client).await,
        [
            ("sb-hot".to_owned(), "eth0".to_owned()),
            ("sb-hot".to_owned(), "net1".to_owned())
        ]
    );

    let down = client
        .teardown_pod(v1::TeardownPodRequest {
            sandbox_id: "sb-hot".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(down.known);
    assert!(lease_files(&leases).is_empty());
}

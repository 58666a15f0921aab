//! plexusd as a process with the real engine (privileged): a pod netns gets a macvlan and a
//! bridge network through the API; plexusd is killed (abort at a crash point) in the middle
//! of the second attachment, restarted on the same state, and teardown leaves nothing: no
//! link in the pod or host namespace, no host-local lease.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use plexus_client::v1;
use plexus_netlink::test_util::{TestNetns, require_privileged, unique_name};

struct Plexusd {
    child: Child,
}

impl Plexusd {
    async fn start(config: &Path, socket: &Path, crash_at: Option<&str>) -> Plexusd {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_plexusd"));
        cmd.arg("--config").arg(config).env("RUST_LOG", "warn");
        match crash_at {
            Some(point) => cmd.env("PLEXUS_CRASH_AT", point),
            None => cmd.env_remove("PLEXUS_CRASH_AT"),
        };
        let mut daemon = Plexusd {
            child: cmd.spawn().expect("spawn plexusd"),
        };
        let until = Instant::now() + Duration::from_secs(20);
        while plexus_client::connect(socket).await.is_err() {
            if let Some(status) = daemon.child.try_wait().unwrap() {
                panic!("plexusd exited at start: {status}");
            }
            assert!(Instant::now() < until, "plexusd did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        daemon
    }

    fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }
}

impl Drop for Plexusd {
    fn drop(&mut self) {
        // Only the child this test started.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn link_names(ns: &TestNetns) -> BTreeSet<String> {
    let h = ns.handle().await;
    h.links()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect()
}

fn lease_files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for net in std::fs::read_dir(root).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(net.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.parse::<std::net::IpAddr>().is_ok() {
                out.push(name);
            }
        }
    }
    out
}

fn nad(name: &str, config: serde_json::Value) -> String {
    format!(
        "apiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  config: '{}'\n",
        config
    )
}

fn setup_request(sandbox: &str, netns: &Path) -> v1::SetupPodRequest {
    setup_request_for(sandbox, netns, "mv,br")
}

fn setup_request_for(sandbox: &str, netns: &Path, networks: &str) -> v1::SetupPodRequest {
    v1::SetupPodRequest {
        pod: Some(v1::PodRef {
            namespace: "default".into(),
            name: "two-nets".into(),
            uid: "uid-two-nets".into(),
        }),
        sandbox_id: sandbox.into(),
        netns_path: netns.to_string_lossy().into_owned(),
        annotations: HashMap::from([(
            "k8s.v1.cni.cncf.io/networks".to_owned(),
            networks.to_owned(),
        )]),
        labels: HashMap::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_mid_setup_then_restart_and_teardown_leaves_nothing() {
    if !require_privileged() {
        return;
    }
    let host = TestNetns::new().await;
    let uplink = unique_name("up");
    host.veth_pair(&uplink, &unique_name("pe")).await.unwrap();
    let pod = TestNetns::new().await;
    // The runtime's eth0 (NRI path): plexus adds net1/net2 next to it.
    pod.veth_pair("eth0", "eth0peer").await.unwrap();
    let bridge = unique_name("br");

    let dir = tempfile::tempdir().unwrap();
    let leases = dir.path().join("leases");
    let networks = dir.path().join("networks.d");
    std::fs::create_dir_all(&networks).unwrap();
    let mv = serde_json::json!({"cniVersion": "1.0.0", "type": "macvlan", "master": uplink,
        "mode": "bridge", "ipam": {"type": "host-local", "subnet": "10.250.1.0/24"}});
    let br = serde_json::json!({"cniVersion": "1.0.0", "type": "bridge", "bridge": bridge,
        "isGateway": false, "ipam": {"type": "host-local", "subnet": "10.250.2.0/24"}});
    std::fs::write(
        networks.join("nets.yaml"),
        nad("mv", mv) + "---\n" + &nad("br", br),
    )
    .unwrap();
    let socket = dir.path().join("run/plexus.sock");
    let config = dir.path().join("plexusd.yaml");
    std::fs::write(
        &config,
        format!(
            "socket: {}\nstateDir: state\ncniBinDirs: [/usr/lib/cni]\ncniCacheDir: cache\n\
             ipamDataDir: leases\ncniConfDir: conf\nnadSource: {{directory: networks.d}}\n\
             hostNetns: {}\n",
            socket.display(),
            host.path().display()
        ),
    )
    .unwrap();
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

    // 3. Restart on the same state: recovery undoes the half-made attachment; the record
    //    survives with what was finished; teardown removes everything.
    let _daemon = Plexusd::start(&config, &socket, None).await;
    let mut client = plexus_client::connect(&socket).await.unwrap();
    let listed = client
        .list_attachments(v1::ListAttachmentsRequest { target: None })
        .await
        .unwrap()
        .into_inner()
        .attachments;
    assert!(
        listed
            .iter()
            .any(|a| a.sandbox_id == "sb-crash" && a.interface == "net1"),
        "{listed:?}"
    );
    assert!(!listed.iter().any(|a| a.interface == "net2"), "{listed:?}");
    let down = client
        .teardown_pod(v1::TeardownPodRequest {
            sandbox_id: "sb-crash".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(down.known);
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
    let _: PathBuf = dir.path().to_path_buf();
}

/// A CNI plugin that takes 5 s to ADD (and DELs at once): the request deadline passes first.
const SLOW_PLUGIN: &str = "#!/bin/sh\ncat >/dev/null\nif [ \"$CNI_COMMAND\" = ADD ]; then sleep 5; fi\nif [ \"$CNI_COMMAND\" = VERSION ]; then echo '{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"1.0.0\"]}'; fi\nexit 0\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_with_the_real_engine_undoes_what_was_made() {
    use std::os::unix::fs::PermissionsExt;
    if !require_privileged() {
        return;
    }
    let host = TestNetns::new().await;
    let uplink = unique_name("up");
    host.veth_pair(&uplink, &unique_name("pe")).await.unwrap();
    let pod = TestNetns::new().await;
    pod.veth_pair("eth0", "eth0peer").await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let plugin = bin.join("slowplug");
    std::fs::write(&plugin, SLOW_PLUGIN).unwrap();
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let networks = dir.path().join("networks.d");
    std::fs::create_dir_all(&networks).unwrap();
    let mv = serde_json::json!({"cniVersion": "1.0.0", "type": "macvlan", "master": uplink,
        "mode": "bridge", "ipam": {"type": "host-local", "subnet": "10.250.3.0/24"}});
    let slow = serde_json::json!({"cniVersion": "1.0.0", "type": "slowplug"});
    std::fs::write(
        networks.join("nets.yaml"),
        nad("mv", mv) + "---\n" + &nad("slow", slow),
    )
    .unwrap();
    let socket = dir.path().join("run/plexus.sock");
    let config = dir.path().join("plexusd.yaml");
    std::fs::write(
        &config,
        format!(
            "socket: {}\nstateDir: state\ncniBinDirs: [bin, /usr/lib/cni]\ncniCacheDir: cache\n\
             ipamDataDir: leases\ncniConfDir: conf\nnadSource: {{directory: networks.d}}\n\
             hostNetns: {}\n",
            socket.display(),
            host.path().display()
        ),
    )
    .unwrap();
    let pod_before = link_names(&pod).await;
    let _daemon = Plexusd::start(&config, &socket, None).await;
    let mut client = plexus_client::connect(&socket).await.unwrap();
    let mut request = tonic::Request::new(setup_request_for("sb-slow", &pod.path(), "mv,slow"));
    request.set_timeout(Duration::from_millis(1500));
    let started = Instant::now();
    let err = client.setup_pod(request).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the deadline was not honoured"
    );
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

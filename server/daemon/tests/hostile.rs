//! Hostile input against the node API (a standing check of issue 9): plexusd as a real
//! process over its unix socket, with the real engine, fed every id, path, name and size a
//! caller should not be able to use. Each is answered with the right gRPC code and a short
//! message naming the rule, and nothing is written, renamed or created outside the state
//! directory — nor any link in the host's namespace.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use plexus_client::v1;
use plexus_core::id::SANDBOX_ID_RULE;
use plexus_netlink::test_util::require_privileged;
use support::{
    Namespaces, Plexusd, files_naming, link_names, nad, recorded, setup_request_for, write_config,
    write_nads,
};
use tonic::Code;
use tonic::transport::Channel;

type Client = v1::node_client::NodeClient<Channel>;

/// No error message may be long enough to hide the cause or break `grpc-message`.
const MAX_MESSAGE: usize = 1024;

/// A plexusd over test namespaces with one macvlan NAD `mv`, and a client.
struct Rig {
    ns: Namespaces,
    dir: tempfile::TempDir,
    daemon: Plexusd,
    client: Client,
}

impl Rig {
    async fn start() -> Rig {
        let ns = Namespaces::new().await;
        let dir = tempfile::tempdir().unwrap();
        let (config, socket) = write_config(dir.path(), &ns.host);
        let mv = serde_json::json!({"cniVersion": "1.0.0", "type": "macvlan",
            "master": ns.uplink, "mode": "bridge",
            "ipam": {"type": "host-local", "subnet": "10.251.7.0/24"}});
        write_nads(dir.path(), &[nad("mv", mv)]);
        let daemon = Plexusd::start(&config, &socket, None).await;
        let client = plexus_client::connect(&socket).await.unwrap();
        Rig {
            ns,
            dir,
            daemon,
            client,
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Temp files of the state directory (there must never be one left).
    fn temp_files(&self) -> Vec<PathBuf> {
        files_naming(&self.state(), ".tmp")
    }
}

/// Asserts `result` failed with `code` and a short message containing every `needle`.
fn refused<T: std::fmt::Debug>(
    what: &str,
    result: Result<tonic::Response<T>, tonic::Status>,
    code: Code,
    needles: &[&str],
) {
    let status = result.expect_err(what);
    let message = status.message();
    assert_eq!(status.code(), code, "{what}: {message}");
    assert!(
        message.len() <= MAX_MESSAGE,
        "{what}: {} byte message",
        message.len()
    );
    for needle in needles {
        assert!(
            message.contains(needle),
            "{what}: {message:?} lacks {needle:?}"
        );
    }
}

fn by_sandbox(id: &str) -> Option<v1::PodSelector> {
    Some(v1::PodSelector {
        sandbox_id: id.to_owned(),
        pod: None,
    })
}

/// Ids that would name files outside the state dir (or that no runtime generates), with
/// what the refusal must say. `outside` is where a path-built id would land.
fn hostile_ids(outside: &Path) -> Vec<(String, &'static str)> {
    let rel = outside.join("rel");
    let climb = "../".repeat(12);
    vec![
        (
            format!("{climb}{}", rel.to_string_lossy().trim_start_matches('/')),
            "it starts with '.'",
        ),
        (
            outside.join("abs").to_string_lossy().into_owned(),
            "it starts with '/'",
        ),
        (
            outside.join("victim").to_string_lossy().into_owned(),
            "it starts with '/'",
        ),
        ("a/b".to_owned(), "it contains '/' at byte 1"),
        (".".to_owned(), "it starts with '.'"),
        ("..".to_owned(), "it starts with '.'"),
        ("sb\0nul".to_owned(), "it contains '\\0' at byte 2"),
        (
            "x".repeat(1 << 20),
            "it is 1048576 bytes long, more than 128",
        ),
        (String::new(), "it is empty"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_ids_that_name_other_files_are_refused_by_every_rpc() {
    if !require_privileged() {
        return;
    }
    let mut rig = Rig::start().await;
    let outside = rig.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    // A record-shaped file a TeardownPod with an absolute id used to rename to `.corrupt`.
    let victim = outside.join("victim.json");
    std::fs::write(&victim, b"{\"not\": \"a record\"}").unwrap();
    let pod = rig.ns.pod.path();

    for (id, why) in hostile_ids(&outside) {
        let shown: String = id.chars().take(12).collect();
        let what = |rpc: &str| format!("{rpc} {shown:?}");
        let needles = ["sandbox id", why, SANDBOX_ID_RULE];
        let c = &mut rig.client;
        refused(
            &what("SetupPod"),
            c.setup_pod(setup_request_for(&id, &pod, "mv")).await,
            Code::InvalidArgument,
            &needles,
        );
        refused(
            &what("TeardownPod"),
            c.teardown_pod(v1::TeardownPodRequest {
                sandbox_id: id.clone(),
                ..Default::default()
            })
            .await,
            Code::InvalidArgument,
            &needles,
        );
        refused(
            &what("Reconcile"),
            c.reconcile(v1::ReconcileRequest {
                live_sandbox_ids: vec!["fine".to_owned(), id.clone()],
                live_pods: Vec::new(),
                all_listed: false,
            })
            .await,
            Code::InvalidArgument,
            &needles,
        );
        if id.is_empty() {
            // An empty selector id means "not given" (proto3): not a sandbox id at all.
            continue;
        }
        refused(
            &what("Attach"),
            c.attach(v1::AttachRequest {
                target: by_sandbox(&id),
                selection: "mv".into(),
                via_annotation: false,
            })
            .await,
            Code::InvalidArgument,
            &needles,
        );
        refused(
            &what("Detach"),
            c.detach(v1::DetachRequest {
                target: by_sandbox(&id),
                interface: "net1".into(),
                via_annotation: false,
            })
            .await,
            Code::InvalidArgument,
            &needles,
        );
        refused(
            &what("ListAttachments"),
            c.list_attachments(v1::ListAttachmentsRequest {
                target: by_sandbox(&id),
            })
            .await,
            Code::InvalidArgument,
            &needles,
        );
    }

    // Nothing landed outside the state dir, nothing was renamed, nothing was made.
    let names: BTreeSet<String> = std::fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, BTreeSet::from(["victim.json".to_owned()]));
    assert_eq!(std::fs::read(&victim).unwrap(), b"{\"not\": \"a record\"}");
    assert!(rig.temp_files().is_empty(), "{:?}", rig.temp_files());
    assert!(
        files_naming(&rig.state(), "json").is_empty(),
        "a record was written"
    );
    assert!(!link_names(&rig.ns.pod).await.contains("net1"));
    assert!(recorded(&mut rig.client).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netns_paths_other_than_the_pods_own_are_refused_and_nothing_is_made() {
    if !require_privileged() {
        return;
    }
    let mut rig = Rig::start().await;
    let host_before = link_names(&rig.ns.host).await;
    let own = plexus_netlink::Handle::current().await.unwrap();
    let own_has_net1 = |links: &[plexus_netlink::Link]| links.iter().any(|l| l.name == "net1");
    let had_net1 = own_has_net1(&own.links().await.unwrap());
    let plain = rig.dir.path().join("plain-file");
    std::fs::write(&plain, b"").unwrap();
    let missing = PathBuf::from(format!("/var/run/netns/plexus-none-{}", std::process::id()));
    let pid = rig.daemon.pid();
    let host_path = rig.ns.host.path();
    let cases: Vec<(String, Code, &str)> = vec![
        (
            "relative/ns".into(),
            Code::InvalidArgument,
            "it is relative",
        ),
        (
            format!("{}/../x", rig.ns.pod.path().display()),
            Code::InvalidArgument,
            "'.' or '..' component",
        ),
        (
            "/proc/self/ns/net".into(),
            Code::InvalidArgument,
            "plexusd's own network namespace",
        ),
        (
            format!("/proc/{pid}/ns/net"),
            Code::InvalidArgument,
            "plexusd's own network namespace",
        ),
        (
            host_path.to_string_lossy().into_owned(),
            Code::InvalidArgument,
            "configured as hostNetns",
        ),
        (
            plain.to_string_lossy().into_owned(),
            Code::InvalidArgument,
            "not a namespace file",
        ),
        (
            "/proc/self/ns/mnt".into(),
            Code::InvalidArgument,
            "not a network namespace",
        ),
        (
            missing.to_string_lossy().into_owned(),
            Code::FailedPrecondition,
            "does not exist",
        ),
        (
            format!("/{}", "a".repeat(5000)),
            Code::InvalidArgument,
            "5001 bytes long",
        ),
        ("/var/run/netns/a\0b".into(), Code::InvalidArgument, "NUL"),
    ];
    for (i, (path, code, why)) in cases.into_iter().enumerate() {
        let mut req = setup_request_for(&format!("sb-ns-{i}"), Path::new(""), "mv");
        req.netns_path = path.clone();
        let shown: String = path.chars().take(40).collect();
        refused(
            &format!("SetupPod netns {shown:?}"),
            rig.client.setup_pod(req).await,
            code,
            &["netns", why],
        );
    }
    // No macvlan went to the host, no lease, no record.
    assert!(
        had_net1 || !own_has_net1(&own.links().await.unwrap()),
        "net1 in the host netns"
    );
    assert_eq!(link_names(&rig.ns.host).await, host_before);
    assert!(support::lease_files(&rig.dir.path().join("leases")).is_empty());
    assert!(recorded(&mut rig.client).await.is_empty());
    assert!(rig.temp_files().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtimes_primary_and_bad_interface_names_cannot_be_detached() {
    if !require_privileged() {
        return;
    }
    let mut rig = Rig::start().await;
    let pod = rig.ns.pod.path();
    let setup = rig
        .client
        .setup_pod(setup_request_for("sb-primary", &pod, "mv"))
        .await
        .unwrap()
        .into_inner();
    let before = rig
        .client
        .list_attachments(v1::ListAttachmentsRequest {
            target: by_sandbox("sb-primary"),
        })
        .await
        .unwrap()
        .into_inner();
    let ifaces: Vec<&str> = before
        .attachments
        .iter()
        .map(|a| a.interface.as_str())
        .collect();
    assert_eq!(ifaces, ["eth0", "net1"]);

    refused(
        "Detach eth0",
        rig.client
            .detach(v1::DetachRequest {
                target: by_sandbox("sb-primary"),
                interface: "eth0".into(),
                via_annotation: false,
            })
            .await,
        Code::FailedPrecondition,
        &["eth0", "primary interface", "the container runtime owns it"],
    );
    for (name, why) in [
        ("", "interface name is empty"),
        ("abcdefghijklmnop", "interface name is too long"),
        ("a/b", "contains / or :"),
        ("..", "interface name is . or .."),
        (".", "interface name is . or .."),
        ("a\0b", "contains NUL"),
    ] {
        refused(
            &format!("Detach {name:?}"),
            rig.client
                .detach(v1::DetachRequest {
                    target: by_sandbox("sb-primary"),
                    interface: name.into(),
                    via_annotation: false,
                })
                .await,
            Code::InvalidArgument,
            &[why, "1 to 15 bytes"],
        );
    }
    let after = rig
        .client
        .list_attachments(v1::ListAttachmentsRequest {
            target: by_sandbox("sb-primary"),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after, before, "record or network-status changed");
    assert_eq!(
        after.network_status["sb-primary"], setup.network_status,
        "network-status changed"
    );
    assert!(link_names(&rig.ns.pod).await.contains("eth0"));

    let down = rig
        .client
        .teardown_pod(v1::TeardownPodRequest {
            sandbox_id: "sb-primary".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let removed: Vec<&str> = down.removed.iter().map(|a| a.interface.as_str()).collect();
    assert_eq!(removed, ["net1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_annotations_and_requests_are_refused() {
    if !require_privileged() {
        return;
    }
    let mut rig = Rig::start().await;
    let pod = rig.ns.pod.path();
    let big = format!("mv,{}", "m".repeat(64 * 1024));
    refused(
        "SetupPod with a 64 KiB annotation",
        rig.client
            .setup_pod(setup_request_for("sb-big", &pod, &big))
            .await,
        Code::InvalidArgument,
        &[
            "k8s.v1.cni.cncf.io/networks",
            "more than the 65536 accepted",
        ],
    );
    let mut many = setup_request_for("sb-many", &pod, "mv");
    many.annotations = (0..2000)
        .map(|i| (format!("example.com/k{i}"), "v".repeat(64)))
        .chain([("k8s.v1.cni.cncf.io/networks".to_owned(), "mv".to_owned())])
        .collect::<HashMap<_, _>>();
    // Unrelated annotations are not plexus's to judge: they are accepted and ignored.
    rig.client.setup_pod(many).await.unwrap();
    rig.client
        .teardown_pod(v1::TeardownPodRequest {
            sandbox_id: "sb-many".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // Past the gRPC message limit nothing is decoded at all.
    let huge = setup_request_for("sb-huge", &pod, &"m".repeat(5 << 20));
    let status = rig.client.setup_pod(huge).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{status:?}"
    );
    assert!(recorded(&mut rig.client).await.is_empty());
    assert!(rig.temp_files().is_empty());
}

#[test]
fn plexusctl_states_the_same_sandbox_id_rule_as_plexusd() {
    assert_eq!(plexus_client::sandbox::RULE, SANDBOX_ID_RULE);
    let dir = tempfile::tempdir().unwrap();
    let mut samples: Vec<String> = hostile_ids(dir.path())
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    samples.extend(["sb1", "Pod_1.a-b", "-x", "_x", "a b", "sbé"].map(str::to_owned));
    samples.push("f".repeat(64));
    samples.push("f".repeat(129));
    for id in samples {
        let server = plexus_core::SandboxId::new(id.as_str()).map_err(|e| e.to_string());
        let client = plexus_client::sandbox::check(&id);
        assert_eq!(server.is_ok(), client.is_ok(), "{id:?}");
        if let (Err(s), Err(c)) = (server, client) {
            assert_eq!(s, c, "same text for {id:?}");
        }
    }
}

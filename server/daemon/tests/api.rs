//! The node API over a real unix socket, with the fake attacher and planner: every RPC,
//! peer-credential rejection, deadlines, the concurrency bound, restart, reconcile, watch.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use plexus_client::v1;
use plexus_client::v1::node_client::NodeClient;
use plexus_server::node::{Limits, Node};
use plexus_server::server::{Access, Socket, serve};
use plexus_server::test_util::{Call, FakeAttacher, FakePlanner};
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::Channel;

const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";

struct Daemon {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    attacher: Arc<FakeAttacher>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<plexus_server::Result<()>>>,
}

impl Daemon {
    async fn start(attacher: FakeAttacher, limits: Limits, access: Access) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, attacher, limits, access).await
    }

    async fn start_in(
        dir: tempfile::TempDir,
        attacher: FakeAttacher,
        limits: Limits,
        access: Access,
    ) -> Daemon {
        let socket = dir.path().join("run").join("plexus.sock");
        let attacher = Arc::new(attacher);
        let node = Node::new(Arc::clone(&attacher), Arc::new(FakePlanner), limits);
        let bound = Socket::bind(&socket).await.unwrap();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(serve(bound, node, access, Default::default(), async {
            let _ = stopped.await;
        }));
        Daemon {
            _dir: dir,
            socket,
            attacher,
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn client(&self) -> NodeClient<Channel> {
        plexus_client::connect(&self.socket).await.unwrap()
    }

    async fn stop(mut self) -> tempfile::TempDir {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
        assert!(!self.socket.exists(), "socket removed at shutdown");
        let Daemon { _dir, .. } = self;
        _dir
    }
}

fn me() -> Access {
    Access {
        allow_root: true,
        allowed_uids: vec![nix::unistd::getuid().as_raw()],
    }
}

fn wide() -> Limits {
    Limits {
        max_parallel: 8,
        max_queued: 64,
        setup_budget: None,
    }
}

fn setup_request(id: &str, name: &str, networks: &str) -> v1::SetupPodRequest {
    let mut annotations = HashMap::new();
    if !networks.is_empty() {
        annotations.insert(NETWORKS.to_owned(), networks.to_owned());
    }
    v1::SetupPodRequest {
        pod: Some(v1::PodRef {
            namespace: "iot".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
        }),
        sandbox_id: id.into(),
        netns_path: format!("/run/netns/{id}"),
        annotations,
        labels: HashMap::new(),
    }
}

fn pod_target(name: &str) -> Option<v1::PodSelector> {
    Some(v1::PodSelector {
        sandbox_id: String::new(),
        pod: Some(v1::PodRef {
            namespace: "iot".into(),
            name: name.into(),
            uid: String::new(),
        }),
    })
}

#[tokio::test]
async fn setup_list_attach_detach_teardown() {
    let d = Daemon::start(FakeAttacher::new(), wide(), me()).await;
    let mut c = d.client().await;

    let setup = c
        .setup_pod(setup_request("sb1", "ha", "lan, other/wan@uplink"))
        .await
        .unwrap()
        .into_inner();
    let ifaces: Vec<&str> = setup
        .attachments
        .iter()
        .map(|a| a.interface.as_str())
        .collect();
    assert_eq!(ifaces, ["net1", "uplink"]);
    assert_eq!(setup.attachments[0].network, "iot/lan");
    assert_eq!(setup.attachments[0].state, "attached");
    assert_eq!(setup.attachments[1].netns_path, "/run/netns/sb1");
    assert_eq!(setup.network_status, r#"["iot/lan","other/wan"]"#);

    // A retried setup answers what is recorded, without attaching again.
    let again = c
        .setup_pod(setup_request("sb1", "ha", "lan, other/wan@uplink"))
        .await
        .unwrap();
    assert_eq!(again.into_inner().attachments.len(), 2);

    let attached = c
        .attach(v1::AttachRequest {
            target: pod_target("ha"),
            selection: "iot/extra".into(),
            via_annotation: false,
        })
        .await
        .unwrap()
        .into_inner();
    let hot = attached.attachment.unwrap();
    assert_eq!(
        (hot.interface.as_str(), hot.origin.as_str()),
        ("net3", "hotplug")
    );
    assert_eq!(
        attached.network_status,
        r#"["iot/lan","other/wan","iot/extra"]"#
    );

    let list = c
        .list_attachments(v1::ListAttachmentsRequest {
            target: Some(v1::PodSelector {
                sandbox_id: "sb1".into(),
                pod: None,
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .attachments;
    assert_eq!(list.len(), 3);
    assert_eq!(list[2].pod.as_ref().unwrap().name, "ha");

    let detached = c
        .detach(v1::DetachRequest {
            target: pod_target("ha"),
            interface: "net1".into(),
            via_annotation: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(detached.removed.unwrap().network, "iot/lan");
    let missing = c
        .detach(v1::DetachRequest {
            target: pod_target("ha"),
            interface: "net1".into(),
            via_annotation: false,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{}", missing.message());

    let down = c
        .teardown_pod(v1::TeardownPodRequest {
            sandbox_id: "sb1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(down.known);
    let removed: Vec<&str> = down.removed.iter().map(|a| a.interface.as_str()).collect();
    assert_eq!(removed, ["net3", "uplink"]);
    let unknown = c
        .teardown_pod(v1::TeardownPodRequest {
            sandbox_id: "sb1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!unknown.known && unknown.removed.is_empty());
    let all = c
        .list_attachments(v1::ListAttachmentsRequest { target: None })
        .await
        .unwrap()
        .into_inner();
    assert!(all.attachments.is_empty());
    assert!(
        d.attacher
            .calls()
            .contains(&Call::Detach("sb1".into(), "net1".into()))
    );
    d.stop().await;
}

#[tokio::test]
async fn bad_requests_get_the_documented_codes() {
    let d = Daemon::start(FakeAttacher::new(), wide(), me()).await;
    let mut c = d.client().await;
    let cases = [
        (setup_request("sb1", "p", "missing-net"), Code::NotFound),
        (
            setup_request("sb1", "p", "forbidden-net"),
            Code::PermissionDenied,
        ),
        (setup_request("sb1", "p", "a b"), Code::InvalidArgument),
        (setup_request("", "p", "lan"), Code::InvalidArgument),
    ];
    for (req, code) in cases {
        let err = c.setup_pod(req).await.unwrap_err();
        assert_eq!(err.code(), code, "{}", err.message());
    }
    let err = c
        .setup_pod(setup_request("sb1", "p", "missing-net"))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("iot/missing-net"),
        "{}",
        err.message()
    );

    let err = c
        .attach(v1::AttachRequest {
            target: pod_target("nobody"),
            selection: "lan".into(),
            via_annotation: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("iot/nobody"), "{}", err.message());

    // A CNI call without CNI_COMMAND is a CNI error object (code 4, invalid environment),
    // not a gRPC failure: the shim prints it for the runtime.
    let answer = c.cni(v1::CniRequest::default()).await.unwrap().into_inner();
    match answer.outcome {
        Some(v1::cni_response::Outcome::Error(e)) => {
            assert_eq!(e.code, 4);
            assert!(e.details.contains("accepted: ADD"), "{}", e.details);
        }
        other => panic!("{other:?}"),
    }

    // Host-network pods and pods without networks return at once, nothing recorded.
    let mut host = setup_request("host", "h", "lan");
    host.netns_path.clear();
    assert!(
        c.setup_pod(host)
            .await
            .unwrap()
            .into_inner()
            .attachments
            .is_empty()
    );
    let none = c
        .setup_pod(setup_request("plain", "plain", ""))
        .await
        .unwrap();
    assert!(none.into_inner().attachments.is_empty());
    assert!(
        d.attacher
            .calls()
            .iter()
            .all(|call| !matches!(call, Call::Setup(..)))
    );
    d.stop().await;
}

#[tokio::test]
async fn explain_over_the_api() {
    let d = Daemon::start(FakeAttacher::new(), wide(), me()).await;
    let mut c = d.client().await;
    let manifest = "kind: Pod\nmetadata:\n  name: ha\n  namespace: iot\n  annotations:\n    k8s.v1.cni.cncf.io/networks: lan,wan\n";
    let ok = c
        .explain(v1::ExplainRequest {
            pod_manifest: manifest.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.text, "iot/ha: 2 attachments");
    let bad = c
        .explain(v1::ExplainRequest {
            pod_manifest: "kind: Service\nmetadata: {name: x}".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    d.stop().await;
}

#[tokio::test]
async fn callers_not_allowed_are_closed_at_accept_on_every_service() {
    let d = Daemon::start(
        FakeAttacher::new(),
        wide(),
        Access {
            allow_root: false,
            allowed_uids: vec![],
        },
    )
    .await;
    // The connection is closed before any byte is read: connecting (the HTTP/2 handshake)
    // or the first call fails, and never with an answer from a service.
    let refused = |code: Code| matches!(code, Code::Unavailable | Code::Unknown | Code::Internal);
    if let Ok(mut c) = plexus_client::connect(&d.socket).await {
        let err = c
            .list_attachments(v1::ListAttachmentsRequest { target: None })
            .await
            .unwrap_err();
        assert!(refused(err.code()), "{err:?}");
    }
    if let Ok(channel) = plexus_client::channel(&d.socket).await {
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let err = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap_err();
        assert!(refused(err.code()), "{err:?}");
    }
    assert!(d.attacher.calls().is_empty());
    d.stop().await;
}

#[tokio::test]
async fn socket_is_private_and_a_live_daemon_is_not_stolen() {
    use std::os::unix::fs::PermissionsExt;
    let d = Daemon::start(FakeAttacher::new(), wide(), me()).await;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&d.socket), 0o600);
    assert_eq!(mode(d.socket.parent().unwrap()), 0o700);
    let err = Socket::bind(&d.socket).await.unwrap_err();
    assert!(err.to_string().contains("another plexusd"), "{err}");
    d.stop().await;
}

#[tokio::test]
async fn deadline_undoes_and_reports() {
    let fake = FakeAttacher::new();
    // The first attachment is made at once, the second hangs: only the deadline ends it.
    fake.hold_work_after(1);
    let d = Daemon::start(fake, wide(), me()).await;
    let mut c = d.client().await;
    // The first is made, the second outlives the 250 ms: the first is undone.
    let mut req = tonic::Request::new(setup_request("slow", "slow", "lan,wan"));
    req.set_timeout(Duration::from_millis(250));
    let err = c.setup_pod(req).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{}", err.message());
    assert!(
        err.message().contains("undid net1 (iot/lan)"),
        "{}",
        err.message()
    );
    assert!(
        d.attacher
            .calls()
            .contains(&Call::Undone("slow".into(), "net1".into()))
    );
    let list = c
        .list_attachments(v1::ListAttachmentsRequest { target: None })
        .await
        .unwrap()
        .into_inner();
    assert!(list.attachments.is_empty(), "nothing half-made is recorded");
    d.stop().await;
}

#[tokio::test]
async fn concurrency_is_bounded_and_overflow_is_refused() {
    let fake = FakeAttacher::new();
    // Setups cannot finish until released: two run, one queues, three are refused, by
    // the order of events rather than by how long a setup takes.
    fake.hold_work();
    let d = Daemon::start(
        fake,
        Limits {
            max_parallel: 2,
            max_queued: 1,
            setup_budget: None,
        },
        me(),
    )
    .await;
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(d.client().await);
    }
    let mut clients = clients.into_iter().enumerate();
    let mut spawn = || {
        let (i, mut c) = clients.next().expect("six clients");
        tokio::spawn(async move {
            c.setup_pod(setup_request(&format!("sb{i}"), &format!("p{i}"), "lan"))
                .await
        })
    };
    let mut tasks = vec![spawn(), spawn()];
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while d.attacher.in_flight() < 2 {
        assert!(std::time::Instant::now() < until, "two setups never ran");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 2..6 {
        tasks.push(spawn());
    }
    // The three refusals answer while the others are held.
    let mut refused = 0;
    while refused < 3 {
        assert!(std::time::Instant::now() < until, "no three refusals");
        refused = tasks.iter().filter(|t| t.is_finished()).count();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    d.attacher.release_work();
    let mut ok = 0;
    let mut exhausted = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(s) if s.code() == Code::ResourceExhausted => {
                assert!(s.message().contains("maxQueued"), "{}", s.message());
                exhausted += 1;
            }
            Err(s) => panic!("unexpected {s:?}"),
        }
    }
    assert_eq!((ok, exhausted), (3, 3));
    assert_eq!(d.attacher.max_in_flight(), 2);
    d.stop().await;
}

#[tokio::test]
async fn same_sandbox_is_serialised() {
    let fake = FakeAttacher::new();
    fake.set_delay(Duration::from_millis(100));
    let d = Daemon::start(fake, wide(), me()).await;
    let mut c1 = d.client().await;
    let mut c2 = d.client().await;
    let a = tokio::spawn(async move { c1.setup_pod(setup_request("one", "one", "lan")).await });
    let b = tokio::spawn(async move { c2.setup_pod(setup_request("one", "one", "lan")).await });
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    assert_eq!(d.attacher.max_in_flight(), 1);
    let setups = d
        .attacher
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Setup(..)))
        .count();
    assert_eq!(setups, 1, "the second request found the first one's record");
    d.stop().await;
}

#[tokio::test]
async fn records_survive_a_restart_and_reconcile_removes_the_dead() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let d = Daemon::start_in(dir, FakeAttacher::persistent(state.clone()), wide(), me()).await;
    let mut c = d.client().await;
    for (id, name) in [("live", "a"), ("dead", "b")] {
        c.setup_pod(setup_request(id, name, "lan")).await.unwrap();
    }
    drop(c);
    let dir = d.stop().await;

    let d = Daemon::start_in(dir, FakeAttacher::persistent(state), wide(), me()).await;
    let mut c = d.client().await;
    let list = c
        .list_attachments(v1::ListAttachmentsRequest { target: None })
        .await
        .unwrap()
        .into_inner()
        .attachments;
    assert_eq!(list.len(), 2);
    // An empty live list would take every pod's networks: refused unless confirmed.
    let refused = c
        .reconcile(v1::ReconcileRequest::default())
        .await
        .expect_err("an unconfirmed empty live list is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("all_listed"), "{refused:?}");
    let out = c
        .reconcile(v1::ReconcileRequest {
            live_sandbox_ids: vec!["live".into()],
            live_pods: Vec::new(),
            all_listed: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(out.torn_down, ["dead"]);
    assert!(out.failed.is_empty());
    let list = c
        .list_attachments(v1::ListAttachmentsRequest { target: None })
        .await
        .unwrap()
        .into_inner()
        .attachments;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].sandbox_id, "live");
    d.stop().await;
}

#[tokio::test]
async fn watch_streams_events_for_the_selected_pod() {
    let d = Daemon::start(FakeAttacher::new(), wide(), me()).await;
    let mut watcher = d.client().await;
    let mut stream = watcher
        .watch(v1::WatchRequest {
            target: pod_target("w"),
        })
        .await
        .unwrap()
        .into_inner();
    let mut c = d.client().await;
    c.setup_pod(setup_request("other", "other", "lan"))
        .await
        .unwrap();
    c.setup_pod(setup_request("w1", "w", "lan")).await.unwrap();
    c.teardown_pod(v1::TeardownPodRequest {
        sandbox_id: "w1".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.kind, v1::watch_event::Kind::Attached as i32);
    let a = first.attachment.unwrap();
    assert_eq!(
        (a.sandbox_id.as_str(), a.interface.as_str()),
        ("w1", "net1")
    );
    let second = stream.message().await.unwrap().unwrap();
    assert_eq!(second.kind, v1::watch_event::Kind::Detached as i32);
    assert!(second.unix_nanos > 0);
    d.stop().await;
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    let d = Daemon::start(FakeAttacher::new(), wide(), me()).await;
    let channel = plexus_client::channel(&d.socket).await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "plexus.v1.Node".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        answer.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("unexpected reflection answer {answer:?}");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"plexus.v1.Node"), "{names:?}");
    drop(answers);
    d.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_failures_and_attachments() {
    let mut registry = plexus_telemetry::Registry::default();
    let metrics = plexus_telemetry::Metrics::new(&mut registry);
    let node = Node::with_metrics(
        Arc::new(FakeAttacher::new()),
        Arc::new(FakePlanner),
        wide(),
        metrics,
    );
    let spec = |id: &str| plexus_server::model::SandboxSpec {
        sandbox_id: plexus_core::SandboxId::new(id).unwrap(),
        pod: plexus_core::pod::PodIdentity::new("iot", id, ""),
        netns: format!("/run/netns/{id}").into(),
    };
    let ann = |v: &str| std::collections::BTreeMap::from([(NETWORKS.to_owned(), v.to_owned())]);
    node.setup_pod(spec("m1"), ann("lan,wan"), None)
        .await
        .unwrap();
    node.setup_pod(spec("m2"), ann("lan"), None).await.unwrap();
    let fake = Arc::new(FakeAttacher::new());
    fake.set_delay(Duration::from_millis(50));
    let mut slow_registry = plexus_telemetry::Registry::default();
    let slow = Node::with_metrics(
        fake,
        Arc::new(FakePlanner),
        wide(),
        plexus_telemetry::Metrics::new(&mut slow_registry),
    );
    let err = slow
        .setup_pod(spec("m3"), ann("lan"), Some(Duration::from_millis(30)))
        .await
        .unwrap_err();
    assert!(matches!(err, plexus_server::Error::DeadlineExceeded { .. }));
    node.refresh_attachment_gauge().unwrap();
    let text = plexus_telemetry::render(&registry);
    assert!(text.contains("network=\"iot/lan\"} 2"), "{text}");
    assert!(text.contains("network=\"iot/wan\"} 1"), "{text}");
    assert!(!text.contains("deadline_exceeded"), "{text}");
    let slow_text = plexus_telemetry::render(&slow_registry);
    assert!(slow_text.contains("deadline_exceeded"), "{slow_text}");
}

#[tokio::test]
async fn a_partial_record_is_set_up_again() {
    let d = Daemon::start(FakeAttacher::new(), wide(), me()).await;
    let mut c = d.client().await;
    c.setup_pod(setup_request("sbp", "p", "lan")).await.unwrap();
    // Same sandbox, a plan the record does not match: the attacher is asked again.
    let again = c
        .setup_pod(setup_request("sbp", "p", "lan,wan"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.attachments.len(), 2);
    let setups = d
        .attacher
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Setup(..)))
        .count();
    assert_eq!(setups, 2);
    d.stop().await;
}

#[tokio::test]
async fn allowing_non_root_uids_opens_the_socket_file_to_them() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared").join("plexus.sock");
    let socket = Socket::bind_for(&path, &Access::root_and(vec![1000]))
        .await
        .unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o666);
    assert_eq!(mode(path.parent().unwrap()), 0o711);
    drop(socket);
    assert!(!path.exists(), "socket removed on drop");
    let private = Socket::bind_for(&path, &Access::root_and(vec![0]))
        .await
        .unwrap();
    assert_eq!(mode(private.path()), 0o600);
}

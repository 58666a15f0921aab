//! Deadlines over the real socket with the fake attacher: SetupPod is bounded by the setup
//! budget (`nri.deadlineBudget`) even without a `grpc-timeout`; teardown and detach run to
//! the end past the caller's deadline (and when the caller has gone), answering
//! `DEADLINE_EXCEEDED` that says so, and a retry waits for them and sees the result.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plexus_client::v1;
use plexus_client::v1::node_client::NodeClient;
use plexus_server::node::{Limits, Node};
use plexus_server::server::{Access, Socket, serve};
use plexus_server::test_util::{Call, FakeAttacher, FakePlanner};
use tonic::Code;
use tonic::transport::Channel;

struct Daemon {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    attacher: Arc<FakeAttacher>,
    task: tokio::task::JoinHandle<plexus_server::Result<()>>,
}

impl Daemon {
    async fn start(attacher: FakeAttacher, setup_budget: Option<Duration>) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("plexus.sock");
        let attacher = Arc::new(attacher);
        let limits = Limits {
            max_parallel: 4,
            max_queued: 16,
            setup_budget,
        };
        let node = Node::new(Arc::clone(&attacher), Arc::new(FakePlanner), limits);
        let bound = Socket::bind(&socket).await.unwrap();
        let access = Access {
            allow_root: true,
            allowed_uids: vec![nix::unistd::getuid().as_raw()],
        };
        let task = tokio::spawn(serve(
            bound,
            node,
            access,
            Default::default(),
            std::future::pending(),
        ));
        Daemon {
            _dir: dir,
            socket,
            attacher,
            task,
        }
    }

    async fn client(&self) -> NodeClient<Channel> {
        plexus_client::connect(&self.socket).await.unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn setup_request(id: &str, networks: &str) -> v1::SetupPodRequest {
    v1::SetupPodRequest {
        pod: Some(v1::PodRef {
            namespace: "iot".into(),
            name: id.into(),
            uid: format!("uid-{id}"),
        }),
        sandbox_id: id.into(),
        netns_path: format!("/run/netns/{id}"),
        annotations: HashMap::from([(
            "k8s.v1.cni.cncf.io/networks".to_owned(),
            networks.to_owned(),
        )]),
        labels: HashMap::new(),
    }
}

fn teardown_request(id: &str) -> v1::TeardownPodRequest {
    v1::TeardownPodRequest {
        sandbox_id: id.into(),
        ..Default::default()
    }
}

async fn recorded(c: &mut NodeClient<Channel>) -> Vec<(String, String)> {
    c.list_attachments(v1::ListAttachmentsRequest { target: None })
        .await
        .unwrap()
        .into_inner()
        .attachments
        .into_iter()
        .map(|a| (a.sandbox_id, a.interface))
        .collect()
}

#[tokio::test]
async fn setup_without_a_client_timeout_is_bounded_by_the_budget() {
    let fake = FakeAttacher::new();
    fake.set_delay(Duration::from_millis(500));
    let d = Daemon::start(fake, Some(Duration::from_millis(700))).await;
    let mut c = d.client().await;
    // No grpc-timeout: two attachments at 500 ms each do not fit in the 700 ms budget.
    let started = Instant::now();
    let err = c
        .setup_pod(setup_request("budget", "lan,wan"))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{}", err.message());
    assert!(
        err.message().contains("undid net1 (iot/lan)"),
        "{}",
        err.message()
    );
    assert!(took < Duration::from_millis(950), "took {took:?}");
    assert!(
        d.attacher
            .calls()
            .contains(&Call::Undone("budget".into(), "net1".into()))
    );
    assert!(recorded(&mut c).await.is_empty(), "nothing half-made kept");

    // A longer client timeout does not lift the budget.
    let mut req = tonic::Request::new(setup_request("budget2", "lan,wan"));
    req.set_timeout(Duration::from_secs(30));
    let err = c.setup_pod(req).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{}", err.message());

    // One attachment fits.
    c.setup_pod(setup_request("budget3", "lan")).await.unwrap();
    assert_eq!(recorded(&mut c).await, [("budget3".into(), "net1".into())]);
}

#[tokio::test]
async fn setup_without_a_budget_or_timeout_runs_to_the_end() {
    let fake = FakeAttacher::new();
    fake.set_delay(Duration::from_millis(200));
    let d = Daemon::start(fake, None).await;
    let mut c = d.client().await;
    let answer = c
        .setup_pod(setup_request("slow", "lan,wan"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.attachments.len(), 2);
}

#[tokio::test]
async fn teardown_and_detach_finish_past_the_deadline() {
    let fake = FakeAttacher::new();
    fake.set_removal_delay(Duration::from_millis(1000));
    let d = Daemon::start(fake, None).await;
    let mut c = d.client().await;
    c.setup_pod(setup_request("sb", "lan,wan")).await.unwrap();

    // Detach outlasting the caller's 200 ms: answered in time, finished anyway.
    let mut req = tonic::Request::new(v1::DetachRequest {
        target: Some(v1::PodSelector {
            sandbox_id: "sb".into(),
            pod: None,
        }),
        interface: "net2".into(),
        via_annotation: false,
    });
    req.set_timeout(Duration::from_millis(200));
    let started = Instant::now();
    let err = c.detach(req).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(800));
    assert_eq!(err.code(), Code::DeadlineExceeded, "{}", err.message());
    assert!(
        err.message().contains("runs to the end"),
        "{}",
        err.message()
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(recorded(&mut c).await, [("sb".into(), "net1".into())]);

    // Teardown likewise; a retry waits for the running one and then finds nothing left.
    let mut req = tonic::Request::new(teardown_request("sb"));
    req.set_timeout(Duration::from_millis(200));
    let err = c.teardown_pod(req).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{}", err.message());
    assert!(
        err.message().contains("tearing down sandbox sb"),
        "{}",
        err.message()
    );
    let retry = c.teardown_pod(teardown_request("sb")).await.unwrap();
    assert!(!retry.into_inner().known, "the first teardown finished");
    assert!(recorded(&mut c).await.is_empty());
    let teardowns = d
        .attacher
        .calls()
        .iter()
        .filter(|call| matches!(call, Call::Teardown(_)))
        .count();
    assert_eq!(teardowns, 2);
}

#[tokio::test]
async fn teardown_finishes_when_the_caller_has_gone() {
    let fake = FakeAttacher::new();
    fake.set_removal_delay(Duration::from_millis(300));
    let d = Daemon::start(fake, None).await;
    let mut c = d.client().await;
    c.setup_pod(setup_request("gone", "lan")).await.unwrap();
    // The caller gives up (drops the call and its connection) without any grpc-timeout.
    let mut quitter = d.client().await;
    let call = tokio::time::timeout(
        Duration::from_millis(100),
        quitter.teardown_pod(teardown_request("gone")),
    )
    .await;
    assert!(
        call.is_err(),
        "the teardown answered before the caller left"
    );
    drop(quitter);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(recorded(&mut c).await.is_empty(), "teardown finished");
    assert!(d.attacher.calls().contains(&Call::Teardown("gone".into())));
}

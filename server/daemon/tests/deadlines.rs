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
        may_finish_later: false,
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

/// Polls the fake's calls until `call` is among them; fails after a generous bound.
async fn wait_call(fake: &FakeAttacher, call: Call) {
    let until = Instant::now() + Duration::from_secs(30);
    while !fake.calls().contains(&call) {
        assert!(Instant::now() < until, "no {call:?} after 30 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls the recorded attachments until they are `want`; fails after a generous bound.
async fn wait_recorded(c: &mut NodeClient<Channel>, want: &[(&str, &str)]) {
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(s, i)| ((*s).to_owned(), (*i).to_owned()))
        .collect();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let have = recorded(c).await;
        if have == want {
            return;
        }
        assert!(
            Instant::now() < until,
            "recorded attachments still {have:?} after 30 s, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn setup_without_a_client_timeout_is_bounded_by_the_budget() {
    let fake = FakeAttacher::new();
    // The first attachment is made at once, the second hangs until released.
    fake.hold_work_after(1);
    let d = Daemon::start(fake, Some(Duration::from_millis(700))).await;
    let mut c = d.client().await;
    // No grpc-timeout: only the 700 ms budget can end the hanging second attachment; the
    // error kind, the undo of the first and nothing recorded show it did (no clock).
    let err = c
        .setup_pod(setup_request("budget", "lan,wan"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{}", err.message());
    assert!(
        err.message().contains("undid net1 (iot/lan)"),
        "{}",
        err.message()
    );
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
    d.attacher.release_work();
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
    let d = Daemon::start(fake, None).await;
    let mut c = d.client().await;
    c.setup_pod(setup_request("sb", "lan,wan")).await.unwrap();
    // Removals cannot finish until released: every answer below comes before the work ends.
    d.attacher.hold_removals();

    // plexusd answers a held removal at the deadline's undo time, T - T/16 (see
    // plexus_core::deadline), while tonic enforces T itself on both sides: at 200 ms that
    // left 12.5 ms, which a loaded CI machine overran (CANCELLED "Timeout expired"). At
    // 1 s it leaves 62.5 ms.
    let caller = Duration::from_secs(1);

    // Detach outlasting the caller's timeout: answered in time, finished anyway.
    let mut req = tonic::Request::new(v1::DetachRequest {
        target: Some(v1::PodSelector {
            sandbox_id: "sb".into(),
            pod: None,
        }),
        interface: "net2".into(),
        via_annotation: false,
    });
    req.set_timeout(caller);
    let err = c.detach(req).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{}", err.message());
    assert!(
        err.message().contains("runs to the end"),
        "{}",
        err.message()
    );
    assert_eq!(
        recorded(&mut c).await.len(),
        2,
        "answered while the detach is still held"
    );
    d.attacher.release_removals();
    wait_recorded(&mut c, &[("sb", "net1")]).await;
    d.attacher.hold_removals();

    // Teardown likewise; a retry waits for the running one and then finds nothing left.
    let mut req = tonic::Request::new(teardown_request("sb"));
    req.set_timeout(caller);
    let err = c.teardown_pod(req).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{}", err.message());
    assert!(
        err.message().contains("tearing down sandbox sb"),
        "{}",
        err.message()
    );
    d.attacher.release_removals();
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
    let d = Daemon::start(fake, None).await;
    let mut c = d.client().await;
    c.setup_pod(setup_request("gone", "lan")).await.unwrap();
    // The teardown cannot finish before the caller has gone.
    d.attacher.hold_removals();
    // The caller gives up (drops the call and its connection) without any grpc-timeout.
    let mut quitter = d.client().await;
    {
        let call = quitter.teardown_pod(teardown_request("gone"));
        tokio::pin!(call);
        // Leave once the daemon has started the teardown (it is held, so it cannot answer).
        tokio::select! {
            r = &mut call => panic!("the teardown answered while held: {r:?}"),
            () = wait_call(&d.attacher, Call::Teardown("gone".into())) => {}
        }
    }
    drop(quitter);
    d.attacher.release_removals();
    wait_recorded(&mut c, &[]).await;
    assert!(d.attacher.calls().contains(&Call::Teardown("gone".into())));
}

fn finishing_later(id: &str, networks: &str) -> v1::SetupPodRequest {
    v1::SetupPodRequest {
        may_finish_later: true,
        ..setup_request(id, networks)
    }
}

#[tokio::test]
async fn a_setup_that_may_finish_later_goes_on_past_its_answer() {
    let fake = FakeAttacher::new();
    // The first attachment is made at once, the second hangs until released.
    fake.hold_work_after(1);
    let d = Daemon::start(fake, Some(Duration::from_millis(300))).await;
    let mut c = d.client().await;
    let answer = c
        .setup_pod(finishing_later("later", "lan,wan"))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.finishing, "{answer:?}");
    assert!(answer.attachments.is_empty() && answer.network_status.is_empty());
    // Nothing was cut short: the setup still holds the sandbox.
    let undone = |d: &Daemon| {
        d.attacher
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Undone(..)))
    };
    assert!(!undone(&d));

    // The caller's next SetupPod (plexus-nri's, at CreateContainer) waits for it within
    // its own deadline, and says what it waited for.
    let err = c
        .setup_pod(setup_request("later", "lan,wan"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{}", err.message());
    assert!(
        err.message()
            .contains("waiting for other work on sandbox later"),
        "{}",
        err.message()
    );

    // Released, it finishes well past the 300 ms budget (and 700 ms of undo) without undoing.
    tokio::time::sleep(Duration::from_millis(800)).await;
    d.attacher.release_work();
    wait_recorded(&mut c, &[("later", "net1"), ("later", "net2")]).await;
    assert!(!undone(&d));
    // Asked again, it is answered from the record: nothing is made twice.
    let answer = c
        .setup_pod(setup_request("later", "lan,wan"))
        .await
        .unwrap()
        .into_inner();
    assert!(!answer.finishing);
    assert_eq!(answer.attachments.len(), 2);
    let setups = d
        .attacher
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Setup(id, _) if id == "later"))
        .count();
    assert_eq!(setups, 1, "{:?}", d.attacher.calls());
}

#[tokio::test]
async fn a_setup_that_may_finish_later_answers_as_any_when_it_ends_in_time() {
    let d = Daemon::start(FakeAttacher::new(), Some(Duration::from_millis(500))).await;
    let mut c = d.client().await;
    let answer = c
        .setup_pod(finishing_later("quick", "lan,wan"))
        .await
        .unwrap()
        .into_inner();
    assert!(!answer.finishing);
    assert_eq!(answer.attachments.len(), 2);
    assert!(answer.network_status.contains("iot/lan"), "{answer:?}");
    // A failure before the answer is due fails it.
    let err = c
        .setup_pod(finishing_later("broken", "missing-net"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{}", err.message());
    assert!(err.message().contains("missing-net"), "{}", err.message());
}

/// Polls until `n` callers hold or wait for `sandbox`'s lock; fails after a generous bound.
async fn wait_lock_users(fake: &FakeAttacher, sandbox: &str, n: usize) {
    let until = Instant::now() + Duration::from_secs(30);
    while fake.lock_users(sandbox) != n {
        assert!(Instant::now() < until, "{sandbox}: not {n} lock users");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_stop_during_a_setup_that_goes_on_tears_it_down_once_after_it() {
    let fake = FakeAttacher::new();
    fake.hold_work_after(1);
    let d = Daemon::start(fake, Some(Duration::from_millis(300))).await;
    let mut c = d.client().await;
    let answer = c
        .setup_pod(finishing_later("stopped", "lan,wan"))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.finishing);
    // The runtime's Stop waits for the setup, then removes what it made.
    let mut stop = d.client().await;
    let teardown = tokio::spawn(async move {
        let mut req = tonic::Request::new(teardown_request("stopped"));
        req.set_timeout(Duration::from_secs(30));
        stop.teardown_pod(req).await
    });
    wait_lock_users(&d.attacher, "stopped", 2).await;
    d.attacher.release_work();
    let outcome = teardown.await.unwrap().unwrap().into_inner();
    assert!(outcome.known, "{outcome:?}");
    assert!(recorded(&mut c).await.is_empty());
    let calls = d.attacher.calls();
    let count = |want: &dyn Fn(&Call) -> bool| calls.iter().filter(|c| want(c)).count();
    assert_eq!(count(&|c| matches!(c, Call::Setup(..))), 1, "{calls:?}");
    assert_eq!(count(&|c| matches!(c, Call::Teardown(..))), 1, "{calls:?}");
    assert_eq!(count(&|c| matches!(c, Call::Undone(..))), 0, "{calls:?}");
}

#[tokio::test]
async fn a_setup_that_goes_on_never_sets_up_a_pod_stopped_before_it() {
    use plexus_server::attacher::Attacher as _;
    let d = Daemon::start(FakeAttacher::new(), Some(Duration::from_millis(300))).await;
    let mut c = d.client().await;
    // Something holds the sandbox; the runtime's Stop queues for it, then the setup.
    let id = plexus_core::id::SandboxId::new("overtaken").unwrap();
    let held = d.attacher.lock(&id).await;
    let mut stop = d.client().await;
    let teardown =
        tokio::spawn(async move { stop.teardown_pod(teardown_request("overtaken")).await });
    wait_lock_users(&d.attacher, "overtaken", 2).await;
    let answer = c
        .setup_pod(finishing_later("overtaken", "lan"))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.finishing, "the setup waited past its answer");
    drop(held);
    teardown.await.unwrap().unwrap();
    // The setup got the lock after the Stop: it refuses and sets nothing up.
    wait_lock_users(&d.attacher, "overtaken", 0).await;
    assert!(recorded(&mut c).await.is_empty());
    let calls = d.attacher.calls();
    assert!(
        !calls.iter().any(|c| matches!(c, Call::Setup(..))),
        "{calls:?}"
    );
}

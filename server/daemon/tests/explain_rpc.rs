//! The Explain RPC parses and resolves off the async workers: a slow resolution (a hostile
//! manifest, a large NAD directory) does not stall health checks. Runs the server on a
//! single-threaded runtime, where work done on the worker would block everything else.

use std::collections::BTreeMap;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plexus_client::v1;
use plexus_core::plan::{Plan, PlannedAttachment};
use plexus_core::pod::PodIdentity;
use plexus_server::model::SandboxView;
use plexus_server::node::{Limits, Node};
use plexus_server::planner::{Explanation, Planner};
use plexus_server::server::{Access, Socket, serve};
use plexus_server::test_util::{FakeAttacher, FakePlanner};
use tokio::sync::{mpsc, oneshot};

/// How long the blocked explain waits for the test before giving up (only reached when
/// the test fails).
const GIVE_UP: Duration = Duration::from_secs(20);

/// A planner whose explain says it started, then blocks its thread until released.
struct BlockingPlanner {
    entered: mpsc::UnboundedSender<()>,
    release: Mutex<std_mpsc::Receiver<()>>,
}

impl Planner for BlockingPlanner {
    fn plan(
        &self,
        pod: &PodIdentity,
        annotations: &BTreeMap<String, String>,
    ) -> plexus_server::Result<Plan> {
        FakePlanner.plan(pod, annotations)
    }

    fn plan_one(
        &self,
        pod: &PodIdentity,
        selection: &str,
        present: &[String],
    ) -> plexus_server::Result<PlannedAttachment> {
        FakePlanner.plan_one(pod, selection, present)
    }

    fn explain(&self, pod: &PodIdentity, _: &BTreeMap<String, String>) -> Explanation {
        self.entered.send(()).unwrap();
        let released = self.release.lock().unwrap().recv_timeout(GIVE_UP).is_ok();
        Explanation {
            json: "{}".into(),
            text: format!("{pod}: released={released}"),
            ok: true,
        }
    }

    fn network_status(&self, sandbox: &SandboxView) -> plexus_server::Result<String> {
        FakePlanner.network_status(sandbox)
    }
}

#[tokio::test(flavor = "current_thread")]
async fn health_answers_while_explain_is_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("plexus.sock");
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    let (release, release_rx) = std_mpsc::channel();
    let planner = BlockingPlanner {
        entered: entered_tx,
        release: Mutex::new(release_rx),
    };
    let node = Node::new(
        Arc::new(FakeAttacher::new()),
        Arc::new(planner),
        Limits::default(),
    );
    let access = Access {
        allow_root: true,
        allowed_uids: vec![nix::unistd::getuid().as_raw()],
    };
    let bound = Socket::bind(&socket).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(bound, node, access, Default::default(), async {
        let _ = stopped.await;
    }));

    let channel = plexus_client::channel(&socket).await.unwrap();
    let mut client = v1::node_client::NodeClient::new(channel.clone());
    let explain = tokio::spawn(async move {
        client
            .explain(v1::ExplainRequest {
                pod_manifest: "kind: Pod\nmetadata: {name: p, namespace: n}\n".into(),
                ..Default::default()
            })
            .await
    });
    // The planner is now blocking its thread, in the middle of the Explain call.
    entered.recv().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
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
    // Only now let the explain finish: it must have been released by us, not by giving up.
    let _ = release.send(());
    let explained = explain.await.unwrap().unwrap().into_inner();
    assert_eq!(explained.text, "n/p: released=true");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

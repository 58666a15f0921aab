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
        may_finish_later: false,
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

#[path = "api/access.rs"]
mod access;
#[path = "api/limits.rs"]
mod limits;
#[path = "api/observe.rs"]
mod observe;
#[path = "api/rpcs.rs"]
mod rpcs;

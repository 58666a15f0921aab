//! Component test: the real plugin (dialing, mux, ttrpc, lifecycle, event mapping,
//! reconnect) between a fake runtime on a unix socket and a fake plexusd: the lifecycle and
//! event mapping in `lifecycle`, the ordering of concurrent events in `ordering`, the
//! containers held back for a setup that finishes after its answer in `containers`.

#[path = "../support/mod.rs"]
mod support;

mod containers;
mod lifecycle;
mod ordering;

use std::sync::Arc;
use std::time::Duration;

use plexus_nri::{Config, Plugin};
use plexus_proto::nri::Event;
use support::*;

/// Starts the plugin against the sockets with a short backoff; aborted on drop.
pub(crate) struct Running(tokio::task::JoinHandle<()>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(crate) fn start(sockets: &Sockets, deadline: Duration) -> Running {
    let config = Config {
        nri_socket: sockets.nri.clone(),
        plexusd_socket: sockets.plexusd.clone(),
        deadline,
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..Config::default()
    };
    let plugin = Arc::new(Plugin::new(config).expect("valid config"));
    Running(tokio::spawn(async move { plugin.run().await }))
}

/// A fake plexusd and a fake runtime, with the plugin (event deadline `deadline`)
/// connected to the runtime and registered: where most tests start.
pub(crate) struct Session {
    pub(crate) node: FakeNode,
    pub(crate) conn: RuntimeConn,
    /// The sockets' directory, the runtime's listener and the plugin, for the test's life.
    pub(crate) _keep: (Sockets, FakeRuntime, Running),
}

pub(crate) async fn session(deadline: Duration) -> Session {
    let sockets = Sockets::new();
    let node = FakeNode::default();
    node.serve(&sockets.plexusd);
    let runtime = FakeRuntime::bind(&sockets.nri);
    let plugin = start(&sockets, deadline);
    let mut conn = runtime.accept().await;
    conn.registered().await;
    Session {
        node,
        conn,
        _keep: (sockets, runtime, plugin),
    }
}

pub(crate) const RUN: i32 = Event::RunPodSandbox as i32;
pub(crate) const STOP: i32 = Event::StopPodSandbox as i32;
pub(crate) const REMOVE: i32 = Event::RemovePodSandbox as i32;

pub(crate) fn setups(calls: &[Recorded]) -> Vec<&plexus_proto::v1::SetupPodRequest> {
    calls
        .iter()
        .filter_map(|c| match c {
            Recorded::Setup { req, .. } => Some(req),
            _ => None,
        })
        .collect()
}

pub(crate) fn teardowns(calls: &[Recorded]) -> Vec<&plexus_proto::v1::TeardownPodRequest> {
    calls
        .iter()
        .filter_map(|c| match c {
            Recorded::Teardown(req) => Some(req),
            _ => None,
        })
        .collect()
}

//! The sweep for sandboxes whose network namespace is gone, over the fake attacher: files
//! in a temp dir stand in for netns bind mounts. A missing path is torn down through the
//! TeardownPod path (events, metrics); an existing, empty or uncheckable path is kept; a
//! setup or teardown in flight is never confused with a dead pod; `reconcile.interval`
//! starts (or does not start) the periodic sweep.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plexus_core::pod::PodIdentity;
use plexus_server::config::Config;
use plexus_server::daemon::Background;
use plexus_server::model::{EventKind, SandboxSpec, SandboxView};
use plexus_server::node::{Limits, NetnsState, Node, netns_state};
use plexus_server::test_util::{Call, FakeAttacher, FakePlanner};

type TestNode = Arc<Node<FakeAttacher, FakePlanner>>;

const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";

fn node(fake: &Arc<FakeAttacher>) -> TestNode {
    Node::new(Arc::clone(fake), Arc::new(FakePlanner), Limits::default())
}

/// A file standing in for a netns bind mount.
fn netns_file(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, b"").unwrap();
    path
}

async fn setup(node: &TestNode, id: &str, netns: &Path, networks: &str) -> SandboxView {
    let spec = SandboxSpec {
        sandbox_id: plexus_core::SandboxId::new(id).unwrap(),
        pod: PodIdentity::new("iot", id, ""),
        netns: netns.to_path_buf(),
    };
    let ann = BTreeMap::from([(NETWORKS.to_owned(), networks.to_owned())]);
    node.setup_pod(spec, ann, None).await.unwrap().sandbox
}

fn recorded(fake: &FakeAttacher) -> Vec<String> {
    use plexus_server::attacher::Attacher;
    fake.sandboxes()
        .unwrap()
        .into_iter()
        .map(|s| s.sandbox_id.to_string())
        .collect()
}

fn teardowns(fake: &FakeAttacher) -> Vec<String> {
    fake.calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Teardown(id) => Some(id),
            _ => None,
        })
        .collect()
}

/// Waits until the fake has received `call`.
async fn wait_for_call(fake: &FakeAttacher, call: &Call) {
    let until = Instant::now() + Duration::from_secs(5);
    while !fake.calls().contains(call) {
        assert!(Instant::now() < until, "no {call:?} in {:?}", fake.calls());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[test]
fn netns_state_only_calls_a_missing_path_gone() {
    let dir = tempfile::tempdir().unwrap();
    let live = netns_file(dir.path(), "live");
    assert_eq!(netns_state(&live), NetnsState::Present);
    assert_eq!(netns_state(&dir.path().join("dead")), NetnsState::Gone);
    // ENOTDIR is not ENOENT.
    assert!(matches!(
        netns_state(&live.join("net")),
        NetnsState::Unknown(_)
    ));
    // A netns directory plexusd cannot see at all is no proof that the pod is gone.
    assert!(matches!(
        netns_state(&dir.path().join("unmounted/cni-1")),
        NetnsState::Unknown(why) if why.contains("not visible")
    ));
    assert!(matches!(
        netns_state(Path::new("relative")),
        NetnsState::Unknown(_)
    ));
    // /proc/<pid>/ns/net: the whole /proc/<pid> goes with the process.
    assert_eq!(
        netns_state(Path::new("/proc/self/ns/net")),
        NetnsState::Present
    );
    assert_eq!(
        netns_state(Path::new("/proc/999999999/ns/net")),
        NetnsState::Gone
    );
}

#[tokio::test]
async fn a_gone_netns_is_torn_down_like_teardown_pod_and_a_live_one_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut registry = plexus_telemetry::Registry::default();
    let fake = Arc::new(FakeAttacher::new());
    let node = Node::with_metrics(
        Arc::clone(&fake),
        Arc::new(FakePlanner),
        Limits::default(),
        plexus_telemetry::Metrics::new(&mut registry),
    );
    let dead = netns_file(dir.path(), "cni-dead");
    let live = netns_file(dir.path(), "cni-live");
    setup(&node, "dead", &dead, "lan,wan").await;
    setup(&node, "live", &live, "lan").await;
    let mut events = node.subscribe();

    // Nothing is gone yet: the sweep does nothing.
    assert_eq!(node.sweep().await.unwrap(), Default::default());
    assert!(teardowns(&fake).is_empty());

    std::fs::remove_file(&dead).unwrap();
    let outcome = node.sweep().await.unwrap();
    assert_eq!(outcome.torn_down, ["dead"]);
    assert!(outcome.failed.is_empty() && outcome.unchecked.is_empty());
    assert_eq!(teardowns(&fake), ["dead"]);
    assert_eq!(recorded(&fake), ["live"]);

    // Watch subscribers see the detaches, as for a TeardownPod.
    let mut detached = Vec::new();
    while let Ok(event) = events.try_recv() {
        assert_eq!(event.kind, EventKind::Detached, "{event:?}");
        assert_eq!(event.sandbox_id, "dead");
        assert_eq!(event.pod.to_string(), "iot/dead");
        detached.push(event.attachment.unwrap().interface);
    }
    assert_eq!(detached, ["net2", "net1"]);
    // Counted like a teardown request, coming from the sweep.
    let text = plexus_telemetry::render(&registry);
    assert!(
        text.contains(
            r#"plexus_request_duration_seconds_count{path="sweep",operation="teardown",outcome="ok"} 1"#
        ),
        "{text}"
    );

    // The next sweep has nothing left to do.
    assert_eq!(node.sweep().await.unwrap(), Default::default());
    assert_eq!(teardowns(&fake), ["dead"]);
}

#[tokio::test]
async fn empty_and_uncheckable_netns_paths_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let records = tempfile::tempdir().unwrap();
    let file = netns_file(dir.path(), "not-a-dir");
    let view = |id: &str, netns: String| SandboxView {
        sandbox_id: plexus_core::SandboxId::new(id).unwrap(),
        pod: PodIdentity::new("iot", id, ""),
        netns,
        attachments: Vec::new(),
    };
    for v in [
        view("empty", String::new()),
        view("enotdir", file.join("net").display().to_string()),
        view(
            "unmounted",
            dir.path().join("no-such-dir/cni-1").display().to_string(),
        ),
    ] {
        let json = serde_json::to_vec(&v).unwrap();
        std::fs::write(records.path().join(format!("{}.json", v.sandbox_id)), json).unwrap();
    }
    let fake = Arc::new(FakeAttacher::persistent(records.path().to_path_buf()));
    let node = node(&fake);
    let outcome = node.sweep().await.unwrap();
    assert!(outcome.torn_down.is_empty(), "{outcome:?}");
    let unchecked: Vec<&str> = outcome
        .unchecked
        .iter()
        .map(|u| u.split(':').next().unwrap())
        .collect();
    assert_eq!(unchecked, ["enotdir", "unmounted"], "{outcome:?}");
    assert!(teardowns(&fake).is_empty());
    assert_eq!(recorded(&fake), ["empty", "enotdir", "unmounted"]);
}

#[tokio::test]
async fn a_setup_in_flight_is_not_touched() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeAttacher::new());
    let node = node(&fake);
    // A sandbox recorded with net1 whose netns is gone, being set up again with net1+net2
    // in a new netns: the sweep lists the old record, but by the time it holds the lock the
    // sandbox is recorded with a live netns.
    let old = netns_file(dir.path(), "cni-old");
    setup(&node, "again", &old, "lan").await;
    std::fs::remove_file(&old).unwrap();
    // And a new sandbox whose setup is in flight (nothing recorded yet).
    let new = netns_file(dir.path(), "cni-new");
    let fresh = netns_file(dir.path(), "cni-fresh");
    fake.set_delay(Duration::from_millis(150));
    let resetup = {
        let node = Arc::clone(&node);
        tokio::spawn(async move { setup(&node, "again", &new, "lan,wan").await })
    };
    let first = {
        let node = Arc::clone(&node);
        tokio::spawn(async move { setup(&node, "fresh", &fresh, "lan").await })
    };
    wait_for_call(
        &fake,
        &Call::Setup("again".into(), vec!["net1".into(), "net2".into()]),
    )
    .await;
    wait_for_call(&fake, &Call::Setup("fresh".into(), vec!["net1".into()])).await;

    let outcome = node.sweep().await.unwrap();
    assert!(outcome.torn_down.is_empty(), "{outcome:?}");
    assert!(teardowns(&fake).is_empty(), "{:?}", fake.calls());
    let again = resetup.await.unwrap();
    assert_eq!(again.attachments.len(), 2);
    first.await.unwrap();
    assert_eq!(recorded(&fake), ["again", "fresh"]);
    assert_eq!(node.sweep().await.unwrap(), Default::default());
}

#[tokio::test]
async fn a_teardown_in_flight_is_not_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeAttacher::new());
    let node = node(&fake);
    let netns = netns_file(dir.path(), "cni-1");
    setup(&node, "going", &netns, "lan").await;
    std::fs::remove_file(&netns).unwrap();
    fake.set_removal_delay(Duration::from_millis(150));
    let teardown = {
        let node = Arc::clone(&node);
        tokio::spawn(async move {
            node.teardown_pod(
                plexus_core::SandboxId::new("going").unwrap(),
                None,
                plexus_engine::LinkDeletion::BeforeAnswer,
            )
            .await
        })
    };
    wait_for_call(&fake, &Call::Teardown("going".into())).await;
    // Still recorded while the teardown runs: the sweep waits for the lock, then finds
    // nothing left to do.
    assert_eq!(recorded(&fake), ["going"]);
    let outcome = node.sweep().await.unwrap();
    assert!(outcome.torn_down.is_empty(), "{outcome:?}");
    assert!(teardown.await.unwrap().unwrap().known);
    assert_eq!(teardowns(&fake), ["going"]);
}

// On a paused clock (tokio test-util) the runtime jumps to the next timer whenever every
// task is idle, so "ten periods pass" is exact and instant: each sweep that is due runs to
// completion before the test's own timer fires. No wall-clock reading, no race.
#[tokio::test(start_paused = true)]
async fn reconcile_interval_runs_the_sweep_periodically_and_off_disables_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = |text: &str| Config::parse(text, Path::new("t.yaml"), dir.path()).unwrap();

    let fake = Arc::new(FakeAttacher::new());
    let node = node(&fake);
    let off = Background::start(&node, &config("reconcile: {interval: off}"));
    let netns = netns_file(dir.path(), "cni-off");
    setup(&node, "kept", &netns, "lan").await;
    std::fs::remove_file(&netns).unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(recorded(&fake), ["kept"], "no sweep while off");
    assert!(teardowns(&fake).is_empty());
    drop(off);

    let on = Background::start(&node, &config("reconcile: {interval: 1s}"));
    let live = netns_file(dir.path(), "cni-live");
    setup(&node, "alive", &live, "lan").await;
    // The first sweep is due one period after the start.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(teardowns(&fake), ["kept"]);
    assert_eq!(recorded(&fake), ["alive"]);
    // Five later sweeps keep the live one.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(recorded(&fake), ["alive"]);
    assert_eq!(teardowns(&fake), ["kept"]);
    drop(on);
}

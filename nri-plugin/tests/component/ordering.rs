//! Concurrent events: what waits for what, and in which order plexusd sees them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use plexus_nri::ttrpc::code;
use plexus_proto::nri::{RemovePodSandboxRequest, RunPodSandboxRequest, StateChangeEvent};
use prost::Message as _;

use super::support::*;
use super::*;

fn order(calls: &[Recorded]) -> Vec<String> {
    calls
        .iter()
        .map(|r| match r {
            Recorded::Setup { req, .. } => format!("setup {}", req.sandbox_id),
            Recorded::ReconcileStart(_) => "reconcile".into(),
            Recorded::ReconcileEnd => "reconciled".into(),
            Recorded::Teardown(req) => format!("teardown {}", req.sandbox_id),
        })
        .collect()
}

#[tokio::test]
async fn a_slow_reconcile_does_not_hold_back_a_later_run_but_reaches_plexusd_first() {
    let sockets = Sockets::new();
    let node = FakeNode::default();
    // The Reconcile cannot finish until released: whatever answers before proves it did
    // not wait for it.
    let reconcile = Hold::new();
    node.set(|b| b.reconcile_hold = Some(reconcile.clone()));
    node.serve(&sockets.plexusd);
    let runtime = FakeRuntime::bind(&sockets.nri);
    let _plugin = start(&sockets, Duration::from_millis(1500));
    let mut conn = runtime.accept().await;
    conn.registered().await;
    conn.configure(0).await;

    tokio::time::timeout(
        WAIT,
        conn.synchronize(vec![pod("a", Some("/n/a"), None)], false),
    )
    .await
    .expect("Synchronize must not wait for Reconcile");
    conn.event(RUN, &pod("sb1", Some("/n/1"), Some("iot")))
        .await
        .expect("a Run right after Synchronize succeeds while the Reconcile is held");
    assert_eq!(order(&node.calls()), ["reconcile", "setup sb1"]);
    reconcile.release();
    // The Reconcile goes on in the background and is not cut off.
    let calls = node
        .wait_for("reconciled", |c| {
            c.iter().any(|r| matches!(r, Recorded::ReconcileEnd))
        })
        .await;
    assert_eq!(order(&calls), ["reconcile", "setup sb1", "reconciled"]);
}

#[tokio::test]
async fn a_slow_teardown_in_flight_holds_back_neither_a_reconcile_nor_a_later_run() {
    let sockets = Sockets::new();
    let node = FakeNode::default();
    node.set(|b| b.teardown_delay = Duration::from_secs(3));
    node.serve(&sockets.plexusd);
    let runtime = FakeRuntime::bind(&sockets.nri);
    let _plugin = start(&sockets, Duration::from_millis(1000));
    let mut conn = runtime.accept().await;
    conn.registered().await;
    conn.configure(0).await;

    // The Stop answers at its deadline; the teardown goes on for 2 more seconds.
    conn.event(STOP, &stopped(&pod("old", None, None)))
        .await
        .expect("stop ok");
    conn.synchronize(Vec::new(), false).await;
    conn.event(RUN, &pod("sb1", Some("/n/1"), Some("iot")))
        .await
        .expect("run ok while a teardown is in flight");
    assert_eq!(
        order(&node.calls()),
        ["teardown old", "reconcile", "reconciled", "setup sb1"]
    );
}

#[tokio::test]
async fn a_pod_event_without_a_pod() {
    let Session { node, conn, _keep } = session(Duration::from_millis(1500)).await;
    conn.configure(0).await;

    let no_pod = |event: i32| {
        StateChangeEvent {
            event,
            pod: None,
            container: None,
        }
        .encode_to_vec()
    };
    // A Run without a pod fails, as a StateChange and as a direct call.
    let s = status_of(conn.call("StateChange", &no_pod(RUN)).await);
    assert_eq!(
        (s.code, s.message.as_str()),
        (code::INVALID_ARGUMENT, "RunPodSandbox event carries no pod")
    );
    let direct = RunPodSandboxRequest { pod: None }.encode_to_vec();
    let s = status_of(conn.call("RunPodSandbox", &direct).await);
    assert_eq!(
        (s.code, s.message.as_str()),
        (code::INVALID_ARGUMENT, "RunPodSandbox event carries no pod")
    );
    // Stop and Remove without a pod succeed and reach nobody.
    conn.call("StateChange", &no_pod(STOP))
        .await
        .expect("stop ok");
    conn.call("StateChange", &no_pod(REMOVE))
        .await
        .expect("remove ok");
    let direct = RemovePodSandboxRequest { pod: None }.encode_to_vec();
    conn.call("RemovePodSandbox", &direct)
        .await
        .expect("direct remove ok");
    assert!(node.calls().is_empty(), "{:?}", order(&node.calls()));
}

#[tokio::test]
async fn a_run_in_flight_completes_when_the_runtime_drops_the_connection() {
    let sockets = Sockets::new();
    let node = FakeNode::default();
    node.set(|b| b.setup_delay = Duration::from_millis(300));
    node.serve(&sockets.plexusd);
    let runtime = FakeRuntime::bind(&sockets.nri);
    let _plugin = start(&sockets, Duration::from_millis(1500));
    let mut conn = runtime.accept().await;
    conn.registered().await;
    conn.configure(0).await;
    let conn = Arc::new(conn);
    let caller = tokio::spawn({
        let conn = conn.clone();
        async move {
            conn.event(RUN, &pod("sb1", Some("/n/1"), Some("iot")))
                .await
        }
    });
    node.wait_for("SetupPod", |c| !setups(c).is_empty()).await;
    // The runtime gives up on the plugin (as containerd does on a timeout).
    caller.abort();
    drop(conn);
    // The pod will start anyway, so its setup must not be cut off half-way.
    let deadline = Instant::now() + WAIT;
    while !node.known.lock().unwrap().contains("sb1") {
        assert!(Instant::now() < deadline, "SetupPod was cancelled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // And the plugin reconnects.
    runtime.accept().await.registered().await;
}

#[tokio::test]
async fn a_slow_teardown_answers_by_the_deadline_and_finishes_in_the_background() {
    let Session { node, conn, _keep } = session(Duration::from_millis(300)).await;
    conn.configure(0).await;
    let p = pod("sb1", Some("/n/1"), Some("iot"));
    conn.event(RUN, &p).await.expect("run ok");
    assert!(node.known.lock().unwrap().contains("sb1"));

    // The teardown cannot finish until released: Stop answering first is the ordering.
    let teardown = Hold::new();
    node.set(|b| b.teardown_hold = Some(teardown.clone()));
    tokio::time::timeout(WAIT, conn.event(STOP, &stopped(&p)))
        .await
        .expect("stop waited for the teardown")
        .expect("stop ok");
    node.wait_for("TeardownPod", |c| {
        c.iter().any(|r| matches!(r, Recorded::Teardown(_)))
    })
    .await;
    assert!(
        node.known.lock().unwrap().contains("sb1"),
        "answered while the teardown is held"
    );
    teardown.release();
    let deadline = Instant::now() + WAIT;
    while node.known.lock().unwrap().contains("sb1") {
        assert!(Instant::now() < deadline, "teardown was cut off");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn synchronize_does_not_wait_for_events_in_flight_but_stays_ordered() {
    let sockets = Sockets::new();
    let node = FakeNode::default();
    let first_setup = Hold::new();
    node.set(|b| b.setup_hold = Some(first_setup.clone()));
    node.serve(&sockets.plexusd);
    let runtime = FakeRuntime::bind(&sockets.nri);
    let _plugin = start(&sockets, Duration::from_millis(1500));
    let mut conn = runtime.accept().await;
    conn.registered().await;
    conn.configure(0).await;
    let conn = Arc::new(conn);
    let first = tokio::spawn({
        let conn = conn.clone();
        async move {
            conn.event(RUN, &pod("sb1", Some("/n/1"), Some("iot")))
                .await
        }
    });
    node.wait_for("first SetupPod", |c| !setups(c).is_empty())
        .await;

    // A Synchronize while sb1's setup is in flight (held) answers...
    tokio::time::timeout(
        WAIT,
        conn.synchronize(vec![pod("sb1", Some("/n/1"), None)], false),
    )
    .await
    .expect("Synchronize waited for the setup in flight");
    // ...the Reconcile waits for sb1's request to be sent, not for its setup, and a
    // later Run's request follows the Reconcile's.
    node.set(|b| b.setup_hold = None);
    conn.event(RUN, &pod("sb2", Some("/n/2"), Some("iot")))
        .await
        .expect("second run");
    assert!(
        !node.known.lock().unwrap().contains("sb1"),
        "the Reconcile waited for sb1's setup"
    );
    first_setup.release();
    first.await.unwrap().expect("first run");
    assert_eq!(
        order(&node.calls()),
        ["setup sb1", "reconcile", "reconciled", "setup sb2"]
    );
    assert!(node.known.lock().unwrap().contains("sb1"));
}

//! A pod's events mapped to plexusd calls, failures, reconnects.

use std::time::Duration;

use plexus_nri::ttrpc::code;
use plexus_proto::nri::{Event, RunPodSandboxRequest};
use prost::Message as _;

use super::support::*;
use super::*;

#[tokio::test]
async fn lifecycle_and_event_mapping() {
    let sockets = Sockets::new();
    let node = FakeNode::default();
    node.serve(&sockets.plexusd);
    let runtime = FakeRuntime::bind(&sockets.nri);
    let _plugin = start(&sockets, Duration::from_millis(1500));

    let mut conn = runtime.accept().await;
    let reg = conn.registered().await;
    assert_eq!(
        (reg.plugin_name.as_str(), reg.plugin_idx.as_str()),
        ("plexus", "10")
    );
    assert_eq!(conn.configure(0).await.events, 0x3 | 0x8);

    // Split Synchronize: the plugin echoes `more` and reconciles once, with every id.
    assert!(
        conn.synchronize(
            vec![pod("a", Some("/n/a"), None), pod("b", None, None)],
            true
        )
        .await
        .more
    );
    assert!(
        !conn
            .synchronize(vec![pod("c", Some("/n/c"), None)], false)
            .await
            .more
    );
    let calls = node
        .wait_for("reconcile", |c| {
            c.iter().any(|r| matches!(r, Recorded::ReconcileEnd))
        })
        .await;
    let reconciles: Vec<_> = calls
        .iter()
        .filter_map(|r| match r {
            Recorded::ReconcileStart(req) => Some(req.live_sandbox_ids.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(reconciles, [vec!["a", "b", "c"]]);
    // The pods with a netns also travel with their facts, for plexusd to adopt.
    let adoptable: Vec<_> = calls
        .iter()
        .filter_map(|r| match r {
            Recorded::ReconcileStart(req) => Some(req.live_pods.clone()),
            _ => None,
        })
        .flatten()
        .map(|p| (p.sandbox_id, p.netns_path))
        .collect();
    assert_eq!(
        adoptable,
        [("a".into(), "/n/a".into()), ("c".into(), "/n/c".into())]
    );

    // RunPodSandbox → SetupPod with every fact, a traceparent and a grpc deadline.
    let p = pod("sb1", Some("/var/run/netns/cni-1"), Some("iot"));
    conn.event(RUN, &p).await.expect("run succeeds");
    let calls = node.calls();
    let setup = calls
        .iter()
        .find_map(|c| match c {
            Recorded::Setup {
                req,
                traceparent,
                grpc_timeout,
            } => Some((req, traceparent, grpc_timeout)),
            _ => None,
        })
        .expect("SetupPod recorded");
    assert_eq!(setup.0.sandbox_id, "sb1");
    assert_eq!(setup.0.netns_path, "/var/run/netns/cni-1");
    assert_eq!(setup.0.annotations["k8s.v1.cni.cncf.io/networks"], "iot");
    assert_eq!(setup.0.labels["app"], "demo");
    let pod_ref = setup.0.pod.as_ref().unwrap();
    assert_eq!(
        (
            pod_ref.namespace.as_str(),
            pod_ref.name.as_str(),
            pod_ref.uid.as_str()
        ),
        ("prod", "pod-sb1", "uid-sb1")
    );
    let tp = setup.1.as_deref().expect("traceparent sent");
    assert!(
        tp.starts_with("00-") && tp.ends_with("-01") && tp.len() == 55,
        "{tp}"
    );
    let timeout = setup.2.as_deref().expect("grpc-timeout sent");
    assert!(
        timeout.ends_with('m') || timeout.ends_with('u') || timeout.ends_with('n'),
        "{timeout}"
    );

    // Host-network pod without annotations: answered locally, plexusd not asked.
    conn.event(RUN, &pod("host", None, None))
        .await
        .expect("host pod ok");
    // Host-network pod WITH an annotation is forwarded (plexusd decides).
    conn.event(RUN, &pod("host2", None, Some("iot")))
        .await
        .expect("forwarded");
    let ids: Vec<_> = setups(&node.calls())
        .iter()
        .map(|r| r.sandbox_id.clone())
        .collect();
    assert_eq!(ids, ["sb1", "host2"]);

    // Stop without namespaces (containerd 1.7) → TeardownPod.
    conn.event(STOP, &stopped(&p)).await.expect("stop ok");
    // Unknown pods succeed too.
    conn.event(STOP, &stopped(&pod("ghost", None, None)))
        .await
        .expect("stop unknown ok");
    let calls = node.calls();
    let t = teardowns(&calls);
    let ids: Vec<_> = t.iter().map(|r| r.sandbox_id.as_str()).collect();
    assert_eq!(ids, ["sb1", "ghost"]);
    assert_eq!(t[0].netns_path, "");
    assert_eq!(t[0].pod.as_ref().unwrap().name, "pod-sb1");
    // RemovePodSandbox is not subscribed; should a runtime send it anyway, it is a
    // teardown like Stop (plexusd finds nothing left for a sandbox it tore down).
    conn.event(REMOVE, &stopped(&p)).await.expect("remove ok");
    conn.event(REMOVE, &stopped(&pod("sb-removed", None, None)))
        .await
        .expect("remove ok");
    let calls = node.calls();
    let ids: Vec<_> = teardowns(&calls)
        .iter()
        .map(|r| r.sandbox_id.as_str())
        .collect();
    assert_eq!(ids, ["sb1", "ghost", "sb1", "sb-removed"]);

    // Direct RunPodSandbox of NRI >= 0.12 maps the same way.
    let direct = RunPodSandboxRequest {
        pod: Some(pod("sb2", Some("/n/2"), None)),
    };
    conn.call("RunPodSandbox", &direct.encode_to_vec())
        .await
        .expect("direct run");
    assert!(setups(&node.calls()).iter().any(|r| r.sandbox_id == "sb2"));

    // Unknown methods and services: UNIMPLEMENTED, so newer runtimes fall back.
    let s = status_of(conn.call("UpdateContainer", b"").await);
    assert_eq!(
        (s.code, s.message.as_str()),
        (code::UNIMPLEMENTED, "method UpdateContainer")
    );
    let s = status_of(
        conn.call_service("nri.pkg.api.v1alpha1.Other", "Configure", b"")
            .await,
    );
    assert_eq!(s.code, code::UNIMPLEMENTED);
    // Events outside the mask are ignored with success.
    conn.event(Event::CreateContainer as i32, &p)
        .await
        .expect("ignored");
}

#[tokio::test]
async fn a_stop_is_answered_at_once_only_when_plexusd_said_so_at_setup() {
    let sockets = Sockets::new();
    let node = FakeNode::default();
    node.serve(&sockets.plexusd);
    let runtime = FakeRuntime::bind(&sockets.nri);
    // The fake runtime's calls carry containerd's 2 s timeout: a stop that waits for
    // plexusd is answered at 1.5 s (75 %) at the latest, or when the teardown is released.
    let _plugin = start(&sockets, Duration::from_secs(120));
    let mut conn = runtime.accept().await;
    conn.registered().await;
    conn.configure(0).await;
    conn.synchronize(Vec::new(), false).await;

    let (quick, ordered) = (
        pod("sb-q", Some("/n/q"), None),
        pod("sb-w", Some("/n/w"), None),
    );
    node.set(|b| b.stop_at_once = true);
    conn.event(RUN, &quick).await.expect("run");
    node.set(|b| b.stop_at_once = false);
    conn.event(RUN, &ordered).await.expect("run");
    let teardown = Hold::new();
    node.set(|b| b.teardown_hold = Some(teardown.clone()));

    // plexusd said stop_at_once: answered while plexusd's teardown is still held, not at
    // the deadline.
    let started = std::time::Instant::now();
    conn.event(STOP, &stopped(&quick)).await.expect("stop ok");
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "the stop waited for plexusd's teardown: answered after {:?}",
        started.elapsed()
    );
    node.wait_for("the teardown sent all the same", |c| {
        teardowns(c).iter().any(|t| t.sandbox_id == "sb-q")
    })
    .await;

    // Not said: the stop waits for the teardown's answer.
    let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let release = {
        let (released, teardown) = (released.clone(), teardown.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            released.store(true, std::sync::atomic::Ordering::SeqCst);
            teardown.release();
        })
    };
    conn.event(STOP, &stopped(&ordered)).await.expect("stop ok");
    assert!(
        released.load(std::sync::atomic::Ordering::SeqCst),
        "answered before plexusd's teardown"
    );
    release.await.unwrap();
    let calls = node.calls();
    let ids: Vec<_> = teardowns(&calls)
        .iter()
        .map(|t| t.sandbox_id.clone())
        .collect();
    assert_eq!(ids, ["sb-q", "sb-w"]);
}

#[tokio::test]
async fn setup_failures_fail_the_pod_with_the_cause() {
    let Session { node, conn, _keep } = session(Duration::from_millis(400)).await;
    conn.configure(0).await;
    conn.synchronize(Vec::new(), false).await;

    // plexusd error → error status carrying code and plexusd's message.
    let cause = "network prod/iot: NetworkAttachmentDefinition prod/iot not found";
    node.set(|b| b.setup_error = Some(tonic::Status::not_found(cause)));
    let s = status_of(
        conn.event(RUN, &pod("sb1", Some("/n/1"), Some("iot")))
            .await,
    );
    assert_eq!(s.code, code::NOT_FOUND);
    assert!(s.message.contains(cause), "{}", s.message);
    assert!(s.message.contains("prod/pod-sb1"), "{}", s.message);

    // plexusd never answers (held) → the plugin's own deadline answers DEADLINE_EXCEEDED,
    // naming it, before the runtime's timeout: the answer at all is the proof, no clock.
    let never = Hold::new();
    node.set(|b| {
        b.setup_error = None;
        b.setup_hold = Some(never.clone());
    });
    let s = status_of(
        conn.event(RUN, &pod("sb2", Some("/n/2"), Some("iot")))
            .await,
    );
    assert_eq!(s.code, code::DEADLINE_EXCEEDED);
    assert!(
        s.message.contains("prod/pod-sb2") && s.message.contains("within 400ms"),
        "{}",
        s.message
    );
    // It says what happens next and what to raise when it keeps happening.
    assert!(
        s.message.contains("kubelet retries") && s.message.contains("plugin_request_timeout"),
        "{}",
        s.message
    );

    // A runtime request_timeout (NRI >= 0.7) lowers the deadline to 75% of it.
    conn.configure(200).await;
    let s = status_of(
        conn.event(RUN, &pod("sb3", Some("/n/3"), Some("iot")))
            .await,
    );
    assert_eq!(s.code, code::DEADLINE_EXCEEDED);
    assert!(s.message.contains("150ms"), "{}", s.message);
    never.release();

    // Teardown failures never fail Stop/Remove.
    node.set(|b| {
        b.setup_hold = None;
        b.teardown_error = Some(tonic::Status::internal("netlink exploded"));
    });
    conn.event(STOP, &stopped(&pod("sb1", None, None)))
        .await
        .expect("stop stays ok");
    conn.event(REMOVE, &stopped(&pod("sb1", None, None)))
        .await
        .expect("remove stays ok");
    assert_eq!(
        teardowns(&node.calls()).len(),
        2,
        "after a failed Stop, Remove asks plexusd again"
    );
}

#[tokio::test]
async fn unreachable_plexusd_fails_run_but_not_stop() {
    let sockets = Sockets::new(); // nobody serves the plexusd socket
    let runtime = FakeRuntime::bind(&sockets.nri);
    let _plugin = start(&sockets, Duration::from_millis(1000));
    let mut conn = runtime.accept().await;
    conn.registered().await;
    conn.configure(0).await;
    let s = status_of(
        conn.event(RUN, &pod("sb1", Some("/n/1"), Some("iot")))
            .await,
    );
    assert_eq!(s.code, code::UNAVAILABLE);
    assert!(s.message.contains("not reachable"), "{}", s.message);
    assert!(
        s.message.contains(&sockets.plexusd.display().to_string()),
        "{}",
        s.message
    );
    conn.event(STOP, &stopped(&pod("sb1", None, None)))
        .await
        .expect("stop ok");
}

#[tokio::test]
async fn reconnects_and_resynchronises_after_the_runtime_restarts() {
    let sockets = Sockets::new();
    let node = FakeNode::default();
    node.serve(&sockets.plexusd);
    let runtime = FakeRuntime::bind(&sockets.nri);
    let _plugin = start(&sockets, Duration::from_millis(1500));

    let mut first = runtime.accept().await;
    first.registered().await;
    first.configure(0).await;
    first
        .synchronize(vec![pod("old", Some("/n/o"), None)], false)
        .await;
    // containerd restarts: the trunk closes and the socket is recreated.
    drop(first);
    drop(runtime);
    std::fs::remove_file(&sockets.nri).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let runtime = FakeRuntime::bind(&sockets.nri);

    let mut second = runtime.accept().await;
    let reg = second.registered().await;
    assert_eq!(reg.plugin_name, "plexus");
    assert_eq!(second.configure(0).await.events, 0x3 | 0x8);
    second
        .synchronize(vec![pod("new", Some("/n/n"), None)], false)
        .await;
    second
        .event(RUN, &pod("sb9", Some("/n/9"), Some("iot")))
        .await
        .expect("run after reconnect");
    let calls = node
        .wait_for("two reconciles", |c| {
            c.iter()
                .filter(|r| matches!(r, Recorded::ReconcileEnd))
                .count()
                == 2
        })
        .await;
    let live: Vec<_> = calls
        .iter()
        .filter_map(|r| match r {
            Recorded::ReconcileStart(req) => Some(req.live_sandbox_ids.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(live, [vec!["old"], vec!["new"]]);
    assert_eq!(setups(&calls).len(), 1);
}

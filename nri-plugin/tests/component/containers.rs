//! CreateContainer: the containers of a pod whose setup plexusd let go on after its
//! RunPodSandbox wait for it; every other container passes without a call to plexusd.

use std::time::Duration;

use plexus_nri::error::CallError;
use plexus_nri::ttrpc::code;
use plexus_proto::nri::{Container, CreateContainerRequest, CreateContainerResponse, PodSandbox};
use prost::Message as _;

use super::support::*;
use super::*;

async fn create(conn: &RuntimeConn, pod: &PodSandbox) -> Result<(), CallError> {
    let req = CreateContainerRequest {
        pod: Some(pod.clone()),
        container: Some(Container {
            id: format!("{}-app", pod.id),
            pod_sandbox_id: pod.id.clone(),
            name: "app".into(),
        }),
    };
    let body = conn.call("CreateContainer", &req.encode_to_vec()).await?;
    // No adjustment: the empty message.
    assert_eq!(
        CreateContainerResponse::decode(&body[..]).unwrap(),
        CreateContainerResponse {}
    );
    assert!(body.is_empty());
    Ok(())
}

/// (sandbox id, may_finish_later) of every SetupPod so far.
fn asked(node: &FakeNode) -> Vec<(String, bool)> {
    setups(&node.calls())
        .iter()
        .map(|r| (r.sandbox_id.clone(), r.may_finish_later))
        .collect()
}

#[tokio::test]
async fn containers_wait_for_a_setup_that_finishes_after_its_answer() {
    let Session { node, conn, _keep } = session(Duration::from_millis(1500)).await;
    // CreateContainer is subscribed (bit 1 << 3) beside Run and Stop.
    assert_eq!(conn.configure(0).await.events, 0x3 | 0x8);
    conn.synchronize(Vec::new(), false).await;

    // A container of a pod plexus never held back passes at once: no call to plexusd.
    let quick = pod("quick", Some("/n/quick"), Some("lan"));
    conn.event(RUN, &quick).await.expect("run");
    create(&conn, &quick)
        .await
        .expect("container of a set-up pod");
    let stranger = pod("stranger", Some("/n/s"), None);
    create(&conn, &stranger)
        .await
        .expect("container of an unknown pod");
    assert_eq!(asked(&node), [("quick".to_owned(), true)]);

    // plexusd answers Run while the setup goes on: the pod's containers wait for it.
    node.set(|b| b.setup_finishing = true);
    let slow = pod("slow", Some("/n/slow"), Some("lan"));
    conn.event(RUN, &slow)
        .await
        .expect("run answered while finishing");
    // Still finishing when the container comes: it is not created, and says why.
    let s = status_of(create(&conn, &slow).await);
    assert_eq!(s.code, code::UNAVAILABLE, "{}", s.message);
    assert!(s.message.contains("still being set up"), "{}", s.message);
    // A setup that fails keeps it back too, naming the cause.
    node.set(|b| {
        b.setup_finishing = false;
        b.setup_error = Some(tonic::Status::deadline_exceeded(
            "waiting for other work on sandbox slow",
        ))
    });
    let s = status_of(create(&conn, &slow).await);
    assert_eq!(s.code, code::DEADLINE_EXCEEDED, "{}", s.message);
    for part in [
        "waiting for other work on sandbox slow",
        "the container is not created until the pod's networks are up",
    ] {
        assert!(s.message.contains(part), "{}", s.message);
    }
    // Once set up, the container is created; later containers pass without asking. The
    // SetupPod names the pod as its RunPodSandbox did, whatever the CreateContainer carries
    // (here no pod at all: the container's pod_sandbox_id names the sandbox).
    node.set(|b| b.setup_error = None);
    let req = CreateContainerRequest {
        pod: None,
        container: Some(Container {
            id: "slow-app".into(),
            pod_sandbox_id: "slow".into(),
            name: "app".into(),
        }),
    };
    let body = conn
        .call("CreateContainer", &req.encode_to_vec())
        .await
        .expect("container once the networks are up");
    assert!(body.is_empty());
    let calls = node.calls();
    let last = setups(&calls).last().copied().cloned().unwrap();
    assert_eq!(last.netns_path, "/n/slow");
    assert_eq!(last.annotations, slow.annotations);
    create(&conn, &slow).await.expect("second container");
    // Every SetupPod may finish later: one for Run, three for the held container.
    assert_eq!(
        asked(&node),
        [
            ("quick".to_owned(), true),
            ("slow".to_owned(), true),
            ("slow".to_owned(), true),
            ("slow".to_owned(), true),
            ("slow".to_owned(), true),
        ]
    );

    // A pod stopped while its setup was finishing holds nothing back afterwards.
    let stopped = pod("stopped", Some("/n/stopped"), Some("lan"));
    conn.event(RUN, &stopped).await.expect("run");
    conn.event(STOP, &stopped).await.expect("stop");
    create(&conn, &stopped).await.expect("nothing to wait for");
    assert_eq!(asked(&node).len(), 6, "{:?}", asked(&node));
}

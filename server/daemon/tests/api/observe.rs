//! Restart and reconcile, Watch, health, reflection and metrics.

use super::*;

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

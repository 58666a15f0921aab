//! The network-status publisher against the fake API server (standing in for the real one).

use plexus_kube::{PodKey, Publisher};
use plexus_kube_fake::{Failure, FailureKind, FakeApiServer};

use crate::support::{self, FAST, eventually};

fn key(ns: &str, name: &str, uid: &str) -> PodKey {
    PodKey {
        namespace: ns.to_string(),
        name: name.to_string(),
        uid: uid.to_string(),
    }
}

fn patches(fake: &FakeApiServer, name: &str) -> usize {
    support::requests(fake, "PATCH", &format!("/pods/{name}/status")).len()
}

async fn publisher(fake: &FakeApiServer) -> Publisher {
    Publisher::start_with(support::client(fake).await, 64, FAST)
}

async fn settled(publisher: &Publisher) {
    eventually("an empty backlog", || async { publisher.backlog() == 0 }).await;
}

#[tokio::test]
async fn the_status_lands_on_the_pod_with_one_merge_patch() {
    let fake = support::fake().await;
    let uid = support::create_pod(&fake, "default", "web", "node-a");
    let publisher = publisher(&fake).await;
    publisher
        .publish(key("default", "web", &uid), "[{\"name\":\"a\"}]")
        .unwrap();
    support::wait_status(&fake, "default", "web", "[{\"name\":\"a\"}]").await;
    settled(&publisher).await;
    let sent = support::requests(&fake, "PATCH", "/pods/web/status");
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(sent[0].status, 200);
}

#[tokio::test]
async fn publishes_during_an_outage_become_one_patch_of_the_latest_after_it() {
    let fake = support::fake().await;
    let uid = support::create_pod(&fake, "default", "web", "node-a");
    let publisher = publisher(&fake).await;
    fake.stop().await;
    for i in 1..=10 {
        publisher
            .publish(key("default", "web", &uid), &format!("[{i}]"))
            .unwrap();
    }
    eventually("a failed attempt", || async {
        publisher.stats().last_error.is_some()
    })
    .await;
    assert_eq!(publisher.backlog(), 1);
    fake.restart().await.unwrap();
    support::wait_status(&fake, "default", "web", "[10]").await;
    settled(&publisher).await;
    assert_eq!(patches(&fake, "web"), 1);
}

#[tokio::test]
async fn a_recreated_pod_with_another_uid_ends_the_job() {
    let fake = support::fake().await;
    support::create_pod(&fake, "default", "web", "node-a");
    let publisher = publisher(&fake).await;
    publisher
        .publish(key("default", "web", "uid-of-the-old-pod"), "[1]")
        .unwrap();
    eventually("the job dropped", || async {
        publisher.stats().dropped == 1
    })
    .await;
    assert_eq!(publisher.backlog(), 0);
    assert_eq!(support::network_status(&fake, "default", "web"), None);
    let sent = support::requests(&fake, "PATCH", "/pods/web/status");
    assert_eq!(sent.iter().map(|r| r.status).collect::<Vec<_>>(), [422]);
}

#[tokio::test]
async fn a_pod_that_is_gone_ends_the_job() {
    let fake = support::fake().await;
    let publisher = publisher(&fake).await;
    publisher
        .publish(key("default", "gone", "u"), "[1]")
        .unwrap();
    eventually("the job dropped", || async {
        publisher.stats().dropped == 1
    })
    .await;
    let sent = support::requests(&fake, "PATCH", "/pods/gone/status");
    assert_eq!(sent.iter().map(|r| r.status).collect::<Vec<_>>(), [404]);
}

#[tokio::test]
async fn server_errors_and_throttling_are_retried_until_the_status_lands() {
    let fake = support::fake().await;
    let uid = support::create_pod(&fake, "default", "web", "node-a");
    fake.inject_failure(Failure {
        path_contains: "/pods/web/status".to_string(),
        method: Some("PATCH".to_string()),
        count: 2,
        kind: FailureKind::InternalError,
    });
    fake.inject_failure(Failure {
        path_contains: "/pods/web/status".to_string(),
        method: Some("PATCH".to_string()),
        count: 1,
        kind: FailureKind::TooManyRequests {
            retry_after_secs: 1,
        },
    });
    let publisher = publisher(&fake).await;
    publisher
        .publish(key("default", "web", &uid), "[1]")
        .unwrap();
    support::wait_status(&fake, "default", "web", "[1]").await;
    settled(&publisher).await;
    let codes: Vec<u16> = support::requests(&fake, "PATCH", "/pods/web/status")
        .iter()
        .map(|r| r.status)
        .collect();
    let mut sorted = codes.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [200, 429, 500, 500], "{codes:?}");
    assert_eq!(codes.last(), Some(&200));
}

#[tokio::test]
async fn startup_re_drive_converges_every_recorded_pod() {
    let fake = support::fake().await;
    let mut keys = Vec::new();
    for name in ["a", "b", "c"] {
        keys.push(key(
            "default",
            name,
            &support::create_pod(&fake, "default", name, "node-a"),
        ));
    }
    let publisher = publisher(&fake).await;
    for k in &keys {
        publisher
            .publish(k.clone(), &format!("[\"{}\"]", k.name))
            .unwrap();
    }
    for k in &keys {
        support::wait_status(&fake, "default", &k.name, &format!("[\"{}\"]", k.name)).await;
    }
    settled(&publisher).await;
    assert_eq!(publisher.stats().delivered, 3);
}

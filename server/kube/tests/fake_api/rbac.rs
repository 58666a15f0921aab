//! RBAC denials and conflicts against the fake API server (standing in for the real one): a
//! 403 names the verb and resource plexus lacks and points at the RBAC section of the docs; a
//! 409 on a status patch is retried with the latest status until it lands.

use std::time::Duration;

use plexus_kube::event::added_interface;
use plexus_kube::{NadCache, PodKey, PodWatch, Publisher, Recorder};
use plexus_kube_fake::{Failure, FailureKind, Resource};

use crate::support::{self, FAST, eventually};

/// The documentation every 403 points at.
const RBAC_DOC: &str = "see docs/kubernetes.md RBAC";

#[tokio::test]
async fn a_denied_nad_list_names_the_verb_and_resource_then_recovers() {
    let fake = support::fake().await;
    fake.create(
        Resource::NetworkAttachmentDefinition,
        "default",
        support::nad("default", "lan", "{}"),
    )
    .unwrap();
    fake.deny("list", "network-attachment-definitions");
    let cache = NadCache::start(support::client(&fake).await, &[]);
    eventually("the list refused", || async {
        cache.last_error().is_some()
    })
    .await;
    let err = cache.last_error().unwrap();
    assert!(
        err.starts_with(
            "forbidden: plexus needs `list` on `network-attachment-definitions.k8s.cni.cncf.io` cluster-wide"
        ),
        "{err}"
    );
    assert!(err.contains(RBAC_DOC), "{err}");
    // The API server's own message comes along, in its shape.
    assert!(
        err.ends_with(&format!(
            "network-attachment-definitions.k8s.cni.cncf.io is forbidden: User \"{}\" cannot list resource \"network-attachment-definitions\" in API group \"k8s.cni.cncf.io\" at the cluster scope",
            plexus_kube_fake::USER
        )),
        "{err}"
    );
    assert!(!cache.synced());
    let refused = support::requests(&fake, "GET", "/network-attachment-definitions");
    assert!(refused.iter().all(|r| r.status == 403), "{refused:?}");
    // RBAC fixed: the watcher's backoff retries the list and the cache syncs.
    fake.allow_all();
    tokio::time::timeout(support::PATIENCE, cache.wait_synced())
        .await
        .expect("synced after the grant");
    assert_eq!(cache.len(), 1);
}

#[tokio::test]
async fn a_denied_pod_watch_names_watch_on_pods() {
    let fake = support::fake().await;
    fake.deny("watch", "pods");
    let pods = PodWatch::start(support::client(&fake).await, "node-a");
    eventually("the watch refused", || async {
        pods.last_error()
            .is_some_and(|e| e.contains("needs `watch` on `pods`"))
    })
    .await;
    assert!(pods.last_error().unwrap().contains(RBAC_DOC));
}

#[tokio::test]
async fn a_denied_status_patch_names_patch_on_pods_status_and_lands_once_granted() {
    let fake = support::fake().await;
    let uid = support::create_pod(&fake, "default", "web", "node-a");
    fake.deny("patch", "pods/status");
    let publisher = Publisher::start_with(support::client(&fake).await, 64, FAST);
    let pod = PodKey {
        namespace: "default".into(),
        name: "web".into(),
        uid,
    };
    publisher.publish(pod, "[1]").unwrap();
    eventually("the patch refused", || async {
        publisher.stats().last_error.is_some()
    })
    .await;
    let err = publisher.stats().last_error.unwrap();
    assert!(
        err.starts_with("forbidden: plexus needs `patch` on `pods/status` in namespace default"),
        "{err}"
    );
    assert!(err.contains(RBAC_DOC), "{err}");
    assert!(
        err.contains("pods \"web\" is forbidden: User")
            && err.contains("in the namespace \"default\""),
        "{err}"
    );
    assert_eq!(publisher.backlog(), 1, "kept: RBAC may be fixed");
    fake.allow_all();
    support::wait_status(&fake, "default", "web", "[1]").await;
}

#[tokio::test]
async fn a_denied_event_create_is_dropped_naming_create_on_events() {
    let fake = support::fake().await;
    let uid = support::create_pod(&fake, "default", "web", "node-a");
    fake.deny("create", "events");
    let recorder = Recorder::start_with(support::client(&fake).await, "node-a", 64, FAST);
    let pod = PodKey {
        namespace: "default".into(),
        name: "web".into(),
        uid,
    };
    assert!(recorder.record(&pod, &added_interface("net1", &[], "default/lan")));
    eventually("the event dropped", || async {
        recorder.stats().dropped == 1
    })
    .await;
    assert!(fake.list(Resource::Event, Some("default")).is_empty());
}

#[tokio::test]
async fn a_denied_pod_get_names_get_on_pods() {
    let fake = support::fake().await;
    support::create_pod(&fake, "default", "web", "node-a");
    let client = support::client(&fake).await;
    let timeout = Duration::from_secs(5);
    let found = plexus_kube::read_pod(&client, "default", "web", timeout)
        .await
        .unwrap()
        .expect("the pod");
    assert_eq!(found.name, "web");
    assert!(
        plexus_kube::read_pod(&client, "default", "ghost", timeout)
            .await
            .unwrap()
            .is_none()
    );
    fake.deny("get", "pods");
    let err = plexus_kube::read_pod(&client, "default", "web", timeout)
        .await
        .unwrap_err();
    assert!(matches!(err, plexus_kube::Error::Forbidden { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("forbidden: plexus needs `get` on `pods` in namespace default"),
        "{err}"
    );
}

#[tokio::test]
async fn a_conflicting_status_patch_is_retried_with_the_latest_status() {
    let fake = support::fake().await;
    let uid = support::create_pod(&fake, "default", "web", "node-a");
    fake.inject_failure(Failure {
        path_contains: "/pods/web/status".into(),
        method: Some("PATCH".into()),
        count: 2,
        kind: FailureKind::Conflict,
    });
    let publisher = Publisher::start_with(support::client(&fake).await, 64, FAST);
    let pod = PodKey {
        namespace: "default".into(),
        name: "web".into(),
        uid,
    };
    publisher.publish(pod, "[1]").unwrap();
    support::wait_status(&fake, "default", "web", "[1]").await;
    let codes: Vec<u16> = support::requests(&fake, "PATCH", "/pods/web/status")
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(codes, [409, 409, 200]);
}

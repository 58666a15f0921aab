//! The NAD reflector against the fake API server (standing in for the real one).

use plexus_core::nad::NadSource;
use plexus_kube::NadCache;
use plexus_kube_fake::{Failure, FailureKind, Resource};
use serde_json::json;

use crate::support::{self, eventually};

fn config_of(cache: &NadCache, ns: &str, name: &str) -> Option<String> {
    cache
        .get(ns, name)
        .expect("cache answers")
        .map(|n| n.config)
}

#[tokio::test]
async fn the_cache_syncs_then_follows_creates_updates_and_deletes() {
    let fake = support::fake().await;
    fake.create(
        Resource::NetworkAttachmentDefinition,
        "default",
        support::nad("default", "a", "{\"v\":1}"),
    )
    .unwrap();
    let cache = NadCache::start(support::client(&fake).await, &[]);
    cache.wait_synced().await;
    assert!(cache.synced());
    assert_eq!(
        config_of(&cache, "default", "a").as_deref(),
        Some("{\"v\":1}")
    );
    assert_eq!(config_of(&cache, "default", "absent"), None);

    fake.create(
        Resource::NetworkAttachmentDefinition,
        "other",
        support::nad("other", "b", "{}"),
    )
    .unwrap();
    eventually("b in the cache", || async {
        config_of(&cache, "other", "b").is_some()
    })
    .await;

    fake.merge_patch(
        Resource::NetworkAttachmentDefinition,
        "default",
        "a",
        &json!({"spec": {"config": "{\"v\":2}"}}),
    )
    .unwrap();
    eventually("a updated", || async {
        config_of(&cache, "default", "a").as_deref() == Some("{\"v\":2}")
    })
    .await;

    fake.delete(Resource::NetworkAttachmentDefinition, "default", "a")
        .unwrap();
    eventually("a deleted", || async {
        config_of(&cache, "default", "a").is_none()
    })
    .await;
    assert_eq!(cache.len(), 1);
    // One list and watches: never a GET per lookup.
    assert!(support::requests(&fake, "GET", "/network-attachment-definitions/a").is_empty());
}

#[tokio::test]
async fn a_compacted_history_makes_the_watch_relist() {
    let fake = support::fake().await;
    for name in ["keep", "gone"] {
        fake.create(
            Resource::NetworkAttachmentDefinition,
            "default",
            support::nad("default", name, "{}"),
        )
        .unwrap();
    }
    let cache = NadCache::start(support::client(&fake).await, &[]);
    cache.wait_synced().await;
    // While the watch is cut, objects change and the history is compacted: the watch can
    // only resume with a 410 and a fresh list.
    fake.stop().await;
    fake.delete(Resource::NetworkAttachmentDefinition, "default", "gone")
        .unwrap();
    fake.create(
        Resource::NetworkAttachmentDefinition,
        "default",
        support::nad("default", "new", "{}"),
    )
    .unwrap();
    fake.compact();
    let lists_before = lists(&fake);
    fake.restart().await.unwrap();
    eventually("the relisted state", || async {
        config_of(&cache, "default", "new").is_some()
            && config_of(&cache, "default", "gone").is_none()
    })
    .await;
    assert!(config_of(&cache, "default", "keep").is_some());
    assert!(lists(&fake) > lists_before, "a new list after the 410");
    assert!(
        cache.synced(),
        "a relist keeps serving the old state meanwhile"
    );
}

fn lists(fake: &plexus_kube_fake::FakeApiServer) -> usize {
    support::requests(fake, "GET", "/network-attachment-definitions")
        .iter()
        .filter(|r| !r.is_watch())
        .count()
}

#[tokio::test]
async fn a_nad_missing_from_the_cache_gets_one_direct_get() {
    let fake = support::fake().await;
    let cache = NadCache::start(support::client(&fake).await, &[]);
    cache.wait_synced().await;
    assert_eq!(config_of(&cache, "default", "late"), None);
    assert_eq!(cache.fetch("default", "late").await.unwrap(), None);
    let path = "/namespaces/default/network-attachment-definitions/late";
    assert_eq!(support::requests(&fake, "GET", path).len(), 1);
    assert_eq!(
        config_of(&cache, "default", "late"),
        None,
        "the GET's answer stands"
    );

    fake.create(
        Resource::NetworkAttachmentDefinition,
        "default",
        support::nad("default", "late", "{\"late\":1}"),
    )
    .unwrap();
    let nad = cache
        .fetch("default", "late")
        .await
        .unwrap()
        .expect("found by the GET");
    assert_eq!(nad.config, "{\"late\":1}");
    assert_eq!(support::requests(&fake, "GET", path).len(), 2);
    assert_eq!(
        config_of(&cache, "default", "late").as_deref(),
        Some("{\"late\":1}")
    );
}

#[tokio::test]
async fn before_the_first_list_lookups_are_refused_as_retryable_and_a_get_answers() {
    let fake = support::fake().await;
    fake.create(
        Resource::NetworkAttachmentDefinition,
        "default",
        support::nad("default", "n", "{}"),
    )
    .unwrap();
    // The cluster-wide list keeps failing; single-object GETs (namespaced paths) work.
    fake.inject_failure(Failure {
        path_contains: "/k8s.cni.cncf.io/v1/network-attachment-definitions".to_string(),
        method: Some("GET".to_string()),
        count: usize::MAX,
        kind: FailureKind::InternalError,
    });
    let cache = NadCache::start(support::client(&fake).await, &[]);
    let err = cache.get("default", "n").unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        err.to_string()
            .contains("waiting for the first list of network-attachment-definitions"),
        "{err}"
    );
    assert!(!cache.synced());
    let nad = cache
        .fetch("default", "n")
        .await
        .unwrap()
        .expect("the GET finds it");
    assert_eq!(cache.get("default", "n").unwrap(), Some(nad));
    eventually("a failed list reported", || async {
        cache.last_error().is_some()
    })
    .await;
    let reported = cache.last_error().unwrap();
    assert!(
        reported.contains("list network-attachment-definitions cluster-wide"),
        "{reported}"
    );
}

#[tokio::test]
async fn a_namespaced_cache_answers_only_for_its_namespaces() {
    let fake = support::fake().await;
    fake.create(
        Resource::NetworkAttachmentDefinition,
        "ns1",
        support::nad("ns1", "x", "{}"),
    )
    .unwrap();
    fake.create(
        Resource::NetworkAttachmentDefinition,
        "ns2",
        support::nad("ns2", "x", "{}"),
    )
    .unwrap();
    let cache = NadCache::start(support::client(&fake).await, &["ns1".to_string()]);
    cache.wait_synced().await;
    assert!(cache.get("ns1", "x").unwrap().is_some());
    let err = cache.get("ns2", "x").unwrap_err();
    assert!(
        err.to_string().contains("namespace ns2 is not watched"),
        "{err}"
    );
    // Only namespaced lists and watches were made.
    assert!(
        fake.requests()
            .iter()
            .filter(|r| r.path.contains("network-attachment-definitions"))
            .all(|r| r.path.contains("/namespaces/ns1/")),
        "{:?}",
        fake.requests()
    );
}

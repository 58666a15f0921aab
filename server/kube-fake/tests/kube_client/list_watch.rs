//! Lists with resourceVersion, watches from a version, bookmarks, timeoutSeconds, 410 on a
//! compacted version, paging, field selectors, metadata-only, discovery.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use plexus_kube_fake::Resource;
use serde_json::json;

use crate::{WAIT, add_pod, nad, nad_api, setup};

#[tokio::test]
async fn list_then_watch_from_its_version_sees_added_modified_deleted() {
    let (server, client) = setup().await;
    server
        .create(Resource::NetworkAttachmentDefinition, "ns1", nad("a"))
        .unwrap();
    let api = nad_api(client, None);
    let list = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let rv = list.metadata.resource_version.clone().unwrap();
    assert_eq!(rv, server.resource_version().to_string());

    let mut events = api
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    server
        .create(Resource::NetworkAttachmentDefinition, "ns2", nad("b"))
        .unwrap();
    server
        .merge_patch(
            Resource::NetworkAttachmentDefinition,
            "ns1",
            "a",
            &json!({"spec": {"config": "{}"}}),
        )
        .unwrap();
    server
        .delete(Resource::NetworkAttachmentDefinition, "ns2", "b")
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let ev = tokio::time::timeout(WAIT, events.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match ev {
            WatchEvent::Added(o) => seen.push(("ADDED", o.metadata.name.unwrap())),
            WatchEvent::Modified(o) => seen.push(("MODIFIED", o.metadata.name.unwrap())),
            WatchEvent::Deleted(o) => seen.push(("DELETED", o.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("watch error {e:?}"),
        }
    }
    let want =
        [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")].map(|(k, n)| (k, n.to_owned()));
    assert_eq!(seen, want);
}

#[tokio::test]
async fn watch_from_a_compacted_version_is_an_error_event_410() {
    let (server, client) = setup().await;
    let old = server.resource_version().to_string();
    server
        .create(Resource::NetworkAttachmentDefinition, "ns1", nad("a"))
        .unwrap();
    server.compact();
    let api = nad_api(client, Some("ns1"));
    let mut events = api
        .watch(&WatchParams::default().timeout(10), &old)
        .await
        .unwrap()
        .boxed();
    match events.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    assert!(
        events.try_next().await.unwrap().is_none(),
        "the stream ends after the error"
    );
    let last = server.requests().pop().unwrap();
    assert_eq!(last.status, 200, "watch errors travel on a 200 stream");
}

#[tokio::test]
async fn exact_list_of_a_compacted_version_is_http_410_and_of_a_kept_one_is_that_state() {
    let (server, client) = setup().await;
    server
        .create(Resource::NetworkAttachmentDefinition, "ns1", nad("a"))
        .unwrap();
    let at = server.resource_version();
    server
        .create(Resource::NetworkAttachmentDefinition, "ns1", nad("b"))
        .unwrap();
    let api = nad_api(client, Some("ns1"));
    let exact = ListParams::default()
        .at(&at.to_string())
        .matching(kube::api::VersionMatch::Exact);
    let list = api.list(&exact).await.unwrap();
    let names: Vec<_> = list
        .items
        .iter()
        .map(|o| o.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["a"]);
    server.compact();
    let s = crate::api_status(api.list(&exact).await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (410, "Expired"));
}

#[tokio::test]
async fn paging_with_limit_and_continue_then_expired_token() {
    let (server, client) = setup().await;
    for n in ["a", "b", "c"] {
        server
            .create(Resource::NetworkAttachmentDefinition, "ns1", nad(n))
            .unwrap();
    }
    let api = nad_api(client, None);
    let page1 = api.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(page1.items.len(), 2);
    let token = page1.metadata.continue_.clone().unwrap();
    server
        .create(Resource::NetworkAttachmentDefinition, "ns1", nad("d"))
        .unwrap();
    let page2 = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    let names: Vec<_> = page2
        .items
        .iter()
        .map(|o| o.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        ["c"],
        "the continued list is the snapshot of the first page"
    );
    assert_eq!(page2.metadata.continue_.as_deref().unwrap_or(""), "");
    server.compact();
    let s = crate::api_status(
        api.list(&ListParams::default().limit(2).continue_token(&token))
            .await
            .unwrap_err(),
    );
    assert_eq!(s.code, 410);
}

#[tokio::test]
async fn bookmarks_and_timeout_end_the_stream() {
    let (server, client) = setup().await;
    server.set_bookmark_interval(std::time::Duration::from_millis(50));
    let pods: Api<Pod> = Api::all(client);
    let rv = server.resource_version().to_string();
    let mut events = pods
        .watch(&WatchParams::default().timeout(2), &rv)
        .await
        .unwrap()
        .boxed();
    let mut bookmarks = 0;
    while let Some(ev) = tokio::time::timeout(WAIT, events.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        match ev {
            WatchEvent::Bookmark(b) => {
                assert_eq!(b.metadata.resource_version, rv);
                bookmarks += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(bookmarks >= 1, "no bookmark before the stream ended");
    let q = &server.requests()[0].query;
    assert!(
        q.contains("allowWatchBookmarks=true") && q.contains("timeoutSeconds=2"),
        "{q}"
    );
}

#[tokio::test]
async fn field_selector_on_node_name_and_metadata_only_list_and_watch() {
    let (server, client) = setup().await;
    add_pod(&server, "ns1", "a1", "node-a");
    add_pod(&server, "ns2", "b1", "node-b");
    add_pod(&server, "ns2", "a2", "node-a");
    let pods: Api<Pod> = Api::all(client);
    let lp = ListParams::default().fields("spec.nodeName=node-a");
    let list = pods.list_metadata(&lp).await.unwrap();
    let names: Vec<_> = list
        .items
        .iter()
        .map(|o| o.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["a1", "a2"]);
    assert!(
        list.items[0]
            .metadata
            .annotations
            .as_ref()
            .unwrap()
            .contains_key("k8s.v1.cni.cncf.io/networks")
    );
    let req = server.requests().pop().unwrap();
    assert_eq!(
        req.accept.as_deref(),
        Some("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1")
    );
    assert!(
        req.query.contains("fieldSelector=spec.nodeName%3Dnode-a"),
        "{}",
        req.query
    );

    let rv = list.metadata.resource_version.clone().unwrap();
    let wp = WatchParams::default()
        .fields("spec.nodeName=node-a")
        .timeout(10);
    let mut events = pods.watch_metadata(&wp, &rv).await.unwrap().boxed();
    add_pod(&server, "ns1", "b2", "node-b");
    add_pod(&server, "ns1", "a3", "node-a");
    match tokio::time::timeout(WAIT, events.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        Some(WatchEvent::Added(o)) => assert_eq!(o.metadata.name.as_deref(), Some("a3")),
        other => panic!("expected ADDED a3 only, got {other:?}"),
    }
    let raw = server.requests().pop().unwrap();
    assert_eq!(
        raw.accept.as_deref(),
        Some("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1")
    );

    let s = crate::api_status(
        pods.list(&ListParams::default().fields("spec.bogus=x"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (s.code, s.message.as_str()),
        (400, "field label not supported: spec.bogus")
    );
}

#[tokio::test]
async fn get_of_a_missing_object_is_404_not_found() {
    let (_server, client) = setup().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "ns1");
    let s = crate::api_status(pods.get("nope").await.unwrap_err());
    assert_eq!(
        (s.code, s.reason.as_str(), s.message.as_str()),
        (404, "NotFound", "pods \"nope\" not found")
    );
    let s = crate::api_status(nad_api(client, Some("ns1")).get("nope").await.unwrap_err());
    assert_eq!(
        s.message,
        "network-attachment-definitions.k8s.cni.cncf.io \"nope\" not found"
    );
}

#[tokio::test]
async fn discovery_lists_the_nad_group_until_its_crd_is_removed() {
    let (server, client) = setup().await;
    let d = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .unwrap();
    assert!(d.has_group("k8s.cni.cncf.io") && d.has_group("events.k8s.io"));
    let (ar, _) = d
        .groups()
        .find(|g| g.name() == "k8s.cni.cncf.io")
        .unwrap()
        .recommended_kind("NetworkAttachmentDefinition")
        .unwrap();
    assert_eq!(ar.plural, "network-attachment-definitions");

    server.set_nad_crd_installed(false);
    let d = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .unwrap();
    assert!(!d.has_group("k8s.cni.cncf.io"));
    let s = crate::api_status(
        nad_api(client.clone(), None)
            .list(&ListParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (s.code, s.message.as_str()),
        (404, "the server could not find the requested resource")
    );
    server.set_nad_crd_installed(true);
    nad_api(client, None)
        .list(&ListParams::default())
        .await
        .unwrap();
}

/// A watch from a version ahead of the server's carries only changes after that version,
/// and its bookmarks never go back before it.
#[tokio::test]
async fn watch_from_a_future_version_skips_changes_up_to_it() {
    let (server, client) = setup().await;
    server.set_bookmark_interval(std::time::Duration::from_millis(20));
    let api = nad_api(client, None);
    let ahead = server.resource_version() + 2;
    let wp = WatchParams::default().timeout(10);
    let mut events = api.watch(&wp, &ahead.to_string()).await.unwrap().boxed();
    let mut next = async || {
        tokio::time::timeout(WAIT, events.try_next())
            .await
            .unwrap()
            .unwrap()
    };
    match next().await {
        Some(WatchEvent::Bookmark(b)) => assert_eq!(b.metadata.resource_version, ahead.to_string()),
        other => panic!("expected a bookmark at {ahead}, got {other:?}"),
    }
    for n in ["a", "b", "c"] {
        server
            .create(Resource::NetworkAttachmentDefinition, "ns1", nad(n))
            .unwrap();
    }
    loop {
        match next().await {
            Some(WatchEvent::Bookmark(_)) => {}
            Some(WatchEvent::Added(o)) => {
                assert_eq!(o.metadata.name.as_deref(), Some("c"));
                break;
            }
            other => panic!("expected only c, got {other:?}"),
        }
    }
}

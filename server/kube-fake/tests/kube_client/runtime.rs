//! The kube-rs runtime watcher against the fake: relist after 410, the paged metadata-only
//! watcher of one node, streaming lists, and resuming after closed watches.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use plexus_kube_fake::Resource;

use crate::{WAIT, add_pod, nad, nad_api, setup};

#[tokio::test]
async fn runtime_watcher_relists_after_410() {
    let (server, client) = setup().await;
    add_pod(&server, "ns1", "old", "node-a");
    let pods: Api<Pod> = Api::all(client);
    let (reader, writer) = reflector::store::<Pod>();
    let stream = watcher(pods, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    let task = tokio::spawn(stream.for_each(|_| async {}));
    let has = |names: &[&str]| {
        let mut got: Vec<String> = reader
            .state()
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        got.sort();
        got == names
    };
    tokio::time::timeout(WAIT, reader.wait_until_ready())
        .await
        .unwrap()
        .unwrap();
    assert!(has(&["old"]));
    server.stop().await;
    server.delete(Resource::Pod, "ns1", "old").unwrap();
    add_pod(&server, "ns1", "new", "node-a");
    server.compact();
    server.restart().await.unwrap();
    let mut rx = tokio::time::interval(std::time::Duration::from_millis(50));
    tokio::time::timeout(WAIT * 3, async {
        while !has(&["new"]) {
            rx.tick().await;
        }
    })
    .await
    .expect("the reflector converged after the relist");
    let lists = server
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && !r.is_watch())
        .count();
    assert!(lists >= 2, "expected a relist after 410, saw {lists} lists");
    task.abort();
}

/// The adapter's pod path: a metadata-only runtime watcher of one node's pods, with pages of
/// one object so the list continues, then live changes including a terminating pod.
#[tokio::test]
async fn metadata_watcher_of_one_node_pages_and_follows() {
    let (server, client) = setup().await;
    for (ns, name, node) in [
        ("a", "p1", "node-a"),
        ("a", "p2", "node-b"),
        ("b", "p3", "node-a"),
    ] {
        add_pod(&server, ns, name, node);
    }
    let pods: Api<PartialObjectMeta<Pod>> = Api::all(client);
    let cfg = watcher::Config::default()
        .fields("spec.nodeName=node-a")
        .page_size(1);
    let mut events = watcher(pods, cfg).boxed();
    let mut next = async || {
        tokio::time::timeout(WAIT, events.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    };
    let mut initial = Vec::new();
    loop {
        match next().await {
            watcher::Event::Init => {}
            watcher::Event::InitApply(o) => initial.push(o.metadata.name.unwrap()),
            watcher::Event::InitDone => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(initial, ["p1", "p3"]);
    let lists: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| !r.is_watch())
        .collect();
    assert_eq!(lists.len(), 2, "one page per pod: {lists:?}");
    assert!(lists[1].query.contains("continue="), "{}", lists[1].query);

    add_pod(&server, "a", "p4", "node-b");
    server.mark_terminating("a", "p1", 30).unwrap();
    match next().await {
        watcher::Event::Apply(o) => {
            assert_eq!(o.metadata.name.as_deref(), Some("p1"));
            assert!(o.metadata.deletion_timestamp.is_some());
        }
        other => panic!("expected p1 terminating, got {other:?}"),
    }
    server.delete(Resource::Pod, "a", "p1").unwrap();
    match next().await {
        watcher::Event::Delete(o) => assert_eq!(o.metadata.name.as_deref(), Some("p1")),
        other => panic!("expected p1 deleted, got {other:?}"),
    }
}

/// Streaming lists (`sendInitialEvents=true`) are not kube-rs's default but are served: the
/// initial state arrives as ADDED events closed by a bookmark marked initial-events-end.
#[tokio::test]
async fn streaming_list_ends_initial_events_with_a_bookmark() {
    let (server, client) = setup().await;
    server
        .create(Resource::NetworkAttachmentDefinition, "ns1", nad("a"))
        .unwrap();
    let cfg = watcher::Config::default().streaming_lists();
    let mut events = watcher(nad_api(client, None), cfg).boxed();
    let mut names = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, events.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            watcher::Event::Init => {}
            watcher::Event::InitApply(o) => names.push(o.metadata.name.unwrap()),
            watcher::Event::InitDone => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(names, ["a"]);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1, "no list request: {reqs:?}");
    assert!(reqs[0].query.contains("sendInitialEvents=true"));
}

/// Closing watches ends the streams cleanly; the runtime watcher resumes from its last
/// version with a new watch and no relist.
#[tokio::test]
async fn closed_watches_resume_from_the_last_version_without_relist() {
    let (server, client) = setup().await;
    server
        .create(Resource::NetworkAttachmentDefinition, "ns1", nad("a"))
        .unwrap();
    let mut events = watcher(nad_api(client, None), watcher::Config::default()).boxed();
    let mut next = async || {
        tokio::time::timeout(WAIT, events.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    };
    while !matches!(next().await, watcher::Event::InitDone) {}
    for name in ["b", "c"] {
        // "b" arrives on the first watch, which is then closed; "c" on the resumed one
        server
            .create(Resource::NetworkAttachmentDefinition, "ns1", nad(name))
            .unwrap();
        match next().await {
            watcher::Event::Apply(o) => assert_eq!(o.metadata.name.as_deref(), Some(name)),
            other => panic!("expected {name}, got {other:?}"),
        }
        server.close_watches();
    }
    let reqs = server.requests();
    let lists = reqs.iter().filter(|r| !r.is_watch()).count();
    assert_eq!(lists, 1, "no relist: {reqs:?}");
    let watches = reqs.iter().filter(|r| r.is_watch()).count();
    assert!(watches >= 2, "a second watch resumed: {reqs:?}");
    let second = reqs.iter().filter(|r| r.is_watch()).nth(1).unwrap();
    assert!(
        !second.query.contains("resourceVersion=0"),
        "{}",
        second.query
    );
}

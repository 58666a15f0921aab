//! RBAC denials through the real client: a denied verb on a resource is `403 Forbidden` with
//! the API server's message shape, only for that verb and that (sub)resource, until lifted.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, WatchParams};
use plexus_kube_fake::USER;
use serde_json::json;

use crate::{add_pod, api_status, nad_api, setup};

#[tokio::test]
async fn a_denied_verb_is_403_forbidden_naming_user_verb_resource_group_and_scope() {
    let (server, client) = setup().await;
    add_pod(&server, "ns1", "p1", "node-a");
    server.deny("patch", "pods/status");
    server.deny("list", "network-attachment-definitions");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "ns1");
    let patch = json!({"metadata": {"annotations": {"a": "b"}}});
    let s = api_status(
        pods.patch_status("p1", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        s.message,
        format!(
            r#"pods "p1" is forbidden: User "{USER}" cannot patch resource "pods/status" in API group "" in the namespace "ns1""#
        )
    );
    let details = s.details.unwrap();
    assert_eq!(
        (details.name.as_str(), details.kind.as_str()),
        ("p1", "pods")
    );
    // The pod itself is not the status subresource: that patch is allowed.
    pods.patch("p1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patching the pod is not denied");

    let s = api_status(
        nad_api(client.clone(), None)
            .list(&ListParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(s.code, 403);
    assert_eq!(
        s.message,
        format!(
            r#"network-attachment-definitions.k8s.cni.cncf.io is forbidden: User "{USER}" cannot list resource "network-attachment-definitions" in API group "k8s.cni.cncf.io" at the cluster scope"#
        )
    );
    // Only the denied verb: a watch of the same resource is allowed.
    let stream = nad_api(client.clone(), None)
        .watch(&WatchParams::default().timeout(1), "0")
        .await
        .expect("watch is not denied");
    drop(stream);

    server.allow_all();
    nad_api(client.clone(), None)
        .list(&ListParams::default())
        .await
        .expect("listed once allowed");
    pods.patch_status("p1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patched once allowed");
    let refused = server.requests().iter().filter(|r| r.status == 403).count();
    assert_eq!(refused, 2, "each denial logged with its answer");
}

#[tokio::test]
async fn a_denied_watch_is_403_before_the_stream_starts() {
    let (server, client) = setup().await;
    server.deny("watch", "pods");
    let pods: Api<Pod> = Api::all(client);
    pods.list(&ListParams::default())
        .await
        .expect("list is not denied");
    let s = api_status(
        pods.watch(&WatchParams::default(), "0")
            .await
            .err()
            .expect("the watch is refused"),
    );
    assert_eq!(s.code, 403);
    assert!(
        s.message
            .ends_with(r#"cannot watch resource "pods" in API group "" at the cluster scope"#),
        "{}",
        s.message
    );
}

//! Writes through the client: pods/status merge patches (uid and resourceVersion checks),
//! events.k8s.io/v1 creation with validation.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use plexus_kube_fake::Resource;
use serde_json::json;

use crate::{add_pod, api_status, setup};

const STATUS_KEY: &str = "k8s.v1.cni.cncf.io/network-status";

#[tokio::test]
async fn status_merge_patch_with_the_pods_uid_lands_and_bumps_the_version() {
    let (server, client) = setup().await;
    let stored = add_pod(&server, "ns1", "p1", "node-a");
    let uid = stored["metadata"]["uid"].as_str().unwrap().to_owned();
    let rv_before = server.resource_version();
    let pods: Api<Pod> = Api::namespaced(client, "ns1");
    let patch = json!({
        "metadata": { "uid": uid, "annotations": { STATUS_KEY: "[{\"name\":\"kindnet\",\"interface\":\"eth0\"}]" } },
        "spec": { "nodeName": "elsewhere" }
    });
    let pod = pods
        .patch_status("p1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert!(pod.metadata.annotations.unwrap().contains_key(STATUS_KEY));
    assert_eq!(
        pod.spec.unwrap().node_name.as_deref(),
        Some("node-a"),
        "pods/status does not change the spec"
    );
    assert_eq!(
        pod.metadata.resource_version.unwrap(),
        (rv_before + 1).to_string()
    );
    // the same patch again changes nothing and keeps the version
    pods.patch_status("p1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(server.resource_version(), rv_before + 1);
}

#[tokio::test]
async fn status_patch_with_another_uid_is_422_and_with_a_stale_version_409() {
    let (server, client) = setup().await;
    let first = add_pod(&server, "ns1", "p1", "node-a");
    let stale_rv = first["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    server.delete(Resource::Pod, "ns1", "p1").unwrap();
    add_pod(&server, "ns1", "p1", "node-a");
    let pods: Api<Pod> = Api::namespaced(client, "ns1");
    let ann = json!({ STATUS_KEY: "[]" });
    let by_old_uid = json!({ "metadata": { "uid": first["metadata"]["uid"], "annotations": ann } });
    let s = api_status(
        pods.patch_status("p1", &PatchParams::default(), &Patch::Merge(&by_old_uid))
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    assert!(
        s.message
            .starts_with("Pod \"p1\" is invalid: metadata.uid: Invalid value: "),
        "{}",
        s.message
    );
    assert!(s.message.ends_with("field is immutable"), "{}", s.message);
    let cause = &s.details.unwrap().causes[0];
    assert_eq!(
        (cause.field.as_str(), cause.reason.as_str()),
        ("metadata.uid", "FieldValueInvalid")
    );

    let by_stale_rv = json!({ "metadata": { "resourceVersion": stale_rv, "annotations": ann } });
    let s = api_status(
        pods.patch_status("p1", &PatchParams::default(), &Patch::Merge(&by_stale_rv))
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert!(
        server.get(Resource::Pod, "ns1", "p1").unwrap()["metadata"]
            .get("annotations")
            .unwrap()
            .get(STATUS_KEY)
            .is_none()
    );

    let s = api_status(
        pods.patch_status("gone", &PatchParams::default(), &Patch::Merge(&by_stale_rv))
            .await
            .unwrap_err(),
    );
    assert_eq!(s.code, 404);
}

#[tokio::test]
async fn strategic_merge_on_pods_and_415_on_custom_resources() {
    let (server, client) = setup().await;
    add_pod(&server, "ns1", "p1", "node-a");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "ns1");
    let patch = json!({ "metadata": { "annotations": { "x": "y" } } });
    let pod = pods
        .patch_status("p1", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    assert_eq!(pod.metadata.annotations.unwrap()["x"], "y");
    server
        .create(
            Resource::NetworkAttachmentDefinition,
            "ns1",
            crate::nad("n"),
        )
        .unwrap();
    let req = http::Request::patch(
        "/apis/k8s.cni.cncf.io/v1/namespaces/ns1/network-attachment-definitions/n",
    )
    .header("content-type", "application/strategic-merge-patch+json")
    .body(serde_json::to_vec(&patch).unwrap())
    .unwrap();
    let resp = client.send(req.map(Into::into)).await.unwrap();
    assert_eq!(resp.status(), 415);
}

fn event(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": { "name": name, "namespace": "ns1" },
        "eventTime": "2026-12-04T20:00:00.000000Z",
        "reportingController": "plexus",
        "reportingInstance": "plexus-node-a",
        "action": "Attach",
        "reason": "AddedInterface",
        "type": "Normal",
        "note": "Add net1 [10.1.0.5/24] from ns1/net1",
        "regarding": { "apiVersion": "v1", "kind": "Pod", "namespace": "ns1", "name": "p1", "uid": "u" }
    })
}

#[tokio::test]
async fn event_create_validates_as_events_k8s_io_v1() {
    let (server, client) = setup().await;
    let events: Api<Event> = Api::namespaced(client, "ns1");
    let ok: Event = serde_json::from_value(event("e1")).unwrap();
    let created = events.create(&PostParams::default(), &ok).await.unwrap();
    assert!(created.metadata.uid.is_some());
    assert_eq!(
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    let mut bad = event("e2");
    for f in ["reportingController", "action", "eventTime"] {
        bad.as_object_mut().unwrap().remove(f);
    }
    let bad: Event = serde_json::from_value(bad).unwrap();
    let s = api_status(
        events
            .create(&PostParams::default(), &bad)
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    let fields: Vec<String> = s
        .details
        .unwrap()
        .causes
        .into_iter()
        .map(|c| c.field)
        .collect();
    assert_eq!(fields, ["reportingController", "action", "eventTime"]);
    assert_eq!(server.list(Resource::Event, Some("ns1")).len(), 1);

    let s = api_status(
        events
            .create(&PostParams::default(), &ok)
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists"));
}

#[tokio::test]
async fn replace_needs_a_version_on_custom_resources_and_checks_it() {
    let (server, client) = setup().await;
    let stored = server
        .create(
            Resource::NetworkAttachmentDefinition,
            "ns1",
            crate::nad("n"),
        )
        .unwrap();
    let gvk =
        kube::api::GroupVersionKind::gvk("k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition");
    let ar = kube::api::ApiResource::from_gvk_with_plural(&gvk, "network-attachment-definitions");
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(client, "ns1", &ar);
    let mut obj: kube::api::DynamicObject = serde_json::from_value(stored).unwrap();
    obj.data["spec"]["config"] = json!("{}");
    let current = obj.clone();
    obj.metadata.resource_version = None;
    let s = api_status(
        api.replace("n", &PostParams::default(), &obj)
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    assert!(
        s.message.ends_with(
            "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
        ),
        "{}",
        s.message
    );
    let replaced = api
        .replace("n", &PostParams::default(), &current)
        .await
        .unwrap();
    assert_eq!(replaced.data["spec"]["config"], "{}");
    let s = api_status(
        api.replace("n", &PostParams::default(), &current)
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
}

/// Malformed or unsupported requests get a Status with the code the API server uses.
#[tokio::test]
async fn malformed_requests_get_status_errors() {
    let (server, client) = setup().await;
    add_pod(&server, "ns1", "p1", "node-a");
    let pods = "/api/v1/namespaces/ns1/pods";
    let cases: Vec<(http::Request<Vec<u8>>, u16, &str)> = vec![
        (http::Request::post(pods).header("content-type", "application/json").body(b"{not json".to_vec()).unwrap(), 400, "BadRequest"),
        (http::Request::post(pods).header("content-type", "application/json").body(vec![b' '; 3 * 1024 * 1024 + 1]).unwrap(), 413, "RequestEntityTooLarge"),
        (http::Request::post(pods).header("content-type", "application/yaml").body(b"a: b".to_vec()).unwrap(), 415, "UnsupportedMediaType"),
        (http::Request::get("/api/v1/namespaces/ns1/pods/p1").header("accept", "application/vnd.kubernetes.protobuf").body(vec![]).unwrap(), 406, "NotAcceptable"),
        (http::Request::get("/api/v1/namespaces/ns1/pods?fieldSelector=%zz").body(vec![]).unwrap(), 400, "BadRequest"),
        (http::Request::get("/api/v1/namespaces/ns1/pods?resourceVersionMatch=Exact").body(vec![]).unwrap(), 422, "Invalid"),
        (http::Request::get("/api/v1/namespaces/ns1/pods?resourceVersion=abc&resourceVersionMatch=Exact").body(vec![]).unwrap(), 400, "BadRequest"),
        (http::Request::get("/apis/apps/v1/namespaces/ns1/deployments").body(vec![]).unwrap(), 404, "NotFound"),
        (http::Request::delete(pods).body(vec![]).unwrap(), 405, "MethodNotAllowed"),
        (http::Request::patch("/api/v1/namespaces/ns1/pods/p1").header("content-type", "application/apply-patch+yaml").body(b"{}".to_vec()).unwrap(), 415, "UnsupportedMediaType"),
        (http::Request::post(pods).header("content-type", "application/json").body(br#"{"metadata":{"name":"x","namespace":"other"},"spec":{"containers":[{"name":"c"}]}}"#.to_vec()).unwrap(), 400, "BadRequest"),
        (http::Request::post(pods).header("content-type", "application/json").body(br#"{"metadata":{"name":"x"},"spec":{}}"#.to_vec()).unwrap(), 422, "Invalid"),
    ];
    for (req, code, reason) in cases {
        let what = format!("{} {}", req.method(), req.uri());
        let resp = client.send(req.map(Into::into)).await.unwrap();
        assert_eq!(resp.status(), code, "{what}");
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (status["kind"].as_str(), status["reason"].as_str()),
            (Some("Status"), Some(reason)),
            "{what}: {status}"
        );
        assert_eq!(status["code"], code, "{what}");
    }
}

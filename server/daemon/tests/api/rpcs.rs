//! Every RPC end to end, and the codes bad requests get.

use super::*;

#[tokio::test]
async fn setup_list_attach_detach_teardown() {
    let d = Daemon::start(FakeAttacher::new(), wide(), me()).await;
    let mut c = d.client().await;

    let setup = c
        .setup_pod(setup_request("sb1", "ha", "lan, other/wan@uplink"))
        .await
        .unwrap()
        .into_inner();
    let ifaces: Vec<&str> = setup
        .attachments
        .iter()
        .map(|a| a.interface.as_str())
        .collect();
    assert_eq!(ifaces, ["net1", "uplink"]);
    assert_eq!(setup.attachments[0].network, "iot/lan");
    assert_eq!(setup.attachments[0].state, "attached");
    assert_eq!(setup.attachments[1].netns_path, "/run/netns/sb1");
    assert_eq!(setup.network_status, r#"["iot/lan","other/wan"]"#);

    // A retried setup answers what is recorded, without attaching again.
    let again = c
        .setup_pod(setup_request("sb1", "ha", "lan, other/wan@uplink"))
        .await
        .unwrap();
    assert_eq!(again.into_inner().attachments.len(), 2);

    let attached = c
        .attach(v1::AttachRequest {
            target: pod_target("ha"),
            selection: "iot/extra".into(),
            via_annotation: false,
        })
        .await
        .unwrap()
        .into_inner();
    let hot = attached.attachment.unwrap();
    assert_eq!(
        (hot.interface.as_str(), hot.origin.as_str()),
        ("net3", "hotplug")
    );
    assert_eq!(
        attached.network_status,
        r#"["iot/lan","other/wan","iot/extra"]"#
    );

    let list = c
        .list_attachments(v1::ListAttachmentsRequest {
            target: Some(v1::PodSelector {
                sandbox_id: "sb1".into(),
                pod: None,
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .attachments;
    assert_eq!(list.len(), 3);
    assert_eq!(list[2].pod.as_ref().unwrap().name, "ha");

    let detached = c
        .detach(v1::DetachRequest {
            target: pod_target("ha"),
            interface: "net1".into(),
            via_annotation: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(detached.removed.unwrap().network, "iot/lan");
    let missing = c
        .detach(v1::DetachRequest {
            target: pod_target("ha"),
            interface: "net1".into(),
            via_annotation: false,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{}", missing.message());

    let down = c
        .teardown_pod(v1::TeardownPodRequest {
            sandbox_id: "sb1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(down.known);
    let removed: Vec<&str> = down.removed.iter().map(|a| a.interface.as_str()).collect();
    assert_eq!(removed, ["net3", "uplink"]);
    let unknown = c
        .teardown_pod(v1::TeardownPodRequest {
            sandbox_id: "sb1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!unknown.known && unknown.removed.is_empty());
    let all = c
        .list_attachments(v1::ListAttachmentsRequest { target: None })
        .await
        .unwrap()
        .into_inner();
    assert!(all.attachments.is_empty());
    assert!(
        d.attacher
            .calls()
            .contains(&Call::Detach("sb1".into(), "net1".into()))
    );
    d.stop().await;
}

#[tokio::test]
async fn bad_requests_get_the_documented_codes() {
    let d = Daemon::start(FakeAttacher::new(), wide(), me()).await;
    let mut c = d.client().await;
    let cases = [
        (setup_request("sb1", "p", "missing-net"), Code::NotFound),
        (
            setup_request("sb1", "p", "forbidden-net"),
            Code::PermissionDenied,
        ),
        (setup_request("sb1", "p", "a b"), Code::InvalidArgument),
        (setup_request("", "p", "lan"), Code::InvalidArgument),
    ];
    for (req, code) in cases {
        let err = c.setup_pod(req).await.unwrap_err();
        assert_eq!(err.code(), code, "{}", err.message());
    }
    let err = c
        .setup_pod(setup_request("sb1", "p", "missing-net"))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("iot/missing-net"),
        "{}",
        err.message()
    );

    let err = c
        .attach(v1::AttachRequest {
            target: pod_target("nobody"),
            selection: "lan".into(),
            via_annotation: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("iot/nobody"), "{}", err.message());

    // A CNI call without CNI_COMMAND is a CNI error object (code 4, invalid environment),
    // not a gRPC failure: the shim prints it for the runtime.
    let answer = c.cni(v1::CniRequest::default()).await.unwrap().into_inner();
    match answer.outcome {
        Some(v1::cni_response::Outcome::Error(e)) => {
            assert_eq!(e.code, 4);
            assert!(e.details.contains("accepted: ADD"), "{}", e.details);
        }
        other => panic!("{other:?}"),
    }

    // Host-network pods and pods without networks return at once, nothing recorded.
    let mut host = setup_request("host", "h", "lan");
    host.netns_path.clear();
    assert!(
        c.setup_pod(host)
            .await
            .unwrap()
            .into_inner()
            .attachments
            .is_empty()
    );
    let none = c
        .setup_pod(setup_request("plain", "plain", ""))
        .await
        .unwrap();
    assert!(none.into_inner().attachments.is_empty());
    assert!(
        d.attacher
            .calls()
            .iter()
            .all(|call| !matches!(call, Call::Setup(..)))
    );
    d.stop().await;
}

#[tokio::test]
async fn explain_over_the_api() {
    let d = Daemon::start(FakeAttacher::new(), wide(), me()).await;
    let mut c = d.client().await;
    let manifest = "kind: Pod\nmetadata:\n  name: ha\n  namespace: iot\n  annotations:\n    k8s.v1.cni.cncf.io/networks: lan,wan\n";
    let ok = c
        .explain(v1::ExplainRequest {
            pod_manifest: manifest.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.text, "iot/ha: 2 attachments");
    let bad = c
        .explain(v1::ExplainRequest {
            pod_manifest: "kind: Service\nmetadata: {name: x}".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    d.stop().await;
}

#[tokio::test]
async fn a_partial_record_is_set_up_again() {
    let d = Daemon::start(FakeAttacher::new(), wide(), me()).await;
    let mut c = d.client().await;
    c.setup_pod(setup_request("sbp", "p", "lan")).await.unwrap();
    // Same sandbox, a plan the record does not match: the attacher is asked again.
    let again = c
        .setup_pod(setup_request("sbp", "p", "lan,wan"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.attachments.len(), 2);
    let setups = d
        .attacher
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Setup(..)))
        .count();
    assert_eq!(setups, 2);
    d.stop().await;
}

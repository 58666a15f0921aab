//! Converting NAD objects and naming the NAD a resolution error is missing (pure).

use serde_json::json;

use super::*;

fn object(value: serde_json::Value) -> DynamicObject {
    serde_json::from_value(value).expect("a NAD object")
}

#[test]
fn a_nad_object_becomes_a_nad_with_its_config_and_annotations() {
    let obj = object(json!({
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {
            "name": "macvlan-conf",
            "namespace": "default",
            "resourceVersion": "7",
            "annotations": {"k8s.v1.cni.cncf.io/resourceName": "intel.com/sriov"}
        },
        "spec": {"config": "{\"cniVersion\":\"1.0.0\",\"type\":\"macvlan\"}"}
    }));
    let nad = to_nad(&obj).unwrap();
    assert_eq!(nad.key(), "default/macvlan-conf");
    assert_eq!(nad.config, r#"{"cniVersion":"1.0.0","type":"macvlan"}"#);
    assert_eq!(nad.resource_name(), Some("intel.com/sriov"));
}

#[test]
fn a_nad_without_spec_or_config_is_spec_less() {
    for spec in [json!(null), json!({}), json!({"config": null})] {
        let mut v = json!({
            "apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": "on-disk", "namespace": "kube-system"}
        });
        if !spec.is_null() {
            v["spec"] = spec;
        }
        let nad = to_nad(&object(v)).unwrap();
        assert_eq!(
            (nad.key().as_str(), nad.config.as_str()),
            ("kube-system/on-disk", "")
        );
    }
}

#[test]
fn a_config_that_is_not_a_string_is_refused_naming_its_type() {
    let obj = object(json!({
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "bad", "namespace": "default"},
        "spec": {"config": {"type": "macvlan"}}
    }));
    let err = to_nad(&obj).unwrap_err();
    assert!(err.contains("spec.config is a JSON object"), "{err}");
    assert!(err.contains("accepted: a string"), "{err}");
}

#[test]
fn missing_nad_names_what_to_fetch() {
    let not_found = plexus_core::Error::NetworkNotFound {
        pod: "default/p".to_string(),
        requested_by: "item 1".to_string(),
        namespace: "ns1".to_string(),
        name: "net-a".to_string(),
    };
    assert_eq!(
        missing_nad(&not_found),
        Some(("ns1".to_string(), "net-a".to_string()))
    );
    let waiting = plexus_core::Error::NadStoreNotReady {
        namespace: "ns2".to_string(),
        name: "net-b".to_string(),
        reason: "waiting".to_string(),
    };
    assert!(waiting.is_retryable());
    assert_eq!(
        missing_nad(&waiting),
        Some(("ns2".to_string(), "net-b".to_string()))
    );
    let configured = plexus_core::Error::ConfiguredNetworkNotFound {
        role: "clusterNetwork",
        value: "flannel".to_string(),
        namespace: "kube-system".to_string(),
        conf_dir: "/etc/cni/net.d".into(),
    };
    assert_eq!(
        missing_nad(&configured),
        Some(("kube-system".to_string(), "flannel".to_string()))
    );
    let other = plexus_core::Error::ClusterNetworkMissing;
    assert_eq!(missing_nad(&other), None);
}

#[test]
fn the_api_resource_is_the_crd_s() {
    let ar = api_resource();
    assert_eq!(ar.api_version, "k8s.cni.cncf.io/v1");
    assert_eq!(ar.plural, "network-attachment-definitions");
    assert_eq!(ar.kind, "NetworkAttachmentDefinition");
}

#[test]
fn a_forbidden_list_names_the_verb_and_resource() {
    let status = kube::core::Status::failure(
        "network-attachment-definitions.k8s.cni.cncf.io is forbidden: User \"system:serviceaccount:kube-system:plexus\" cannot list resource",
        "Forbidden",
    )
    .with_code(403);
    let err = watch_error(
        &watcher::Error::InitialListFailed(kube::Error::Api(status.boxed())),
        None,
    );
    let text = err.to_string();
    assert!(
        text.starts_with(
            "forbidden: plexus needs `list` on `network-attachment-definitions.k8s.cni.cncf.io` cluster-wide"
        ),
        "{text}"
    );
    assert!(text.contains("docs/kubernetes.md"), "{text}");
}

#[test]
fn a_missing_crd_is_named() {
    let status = kube::core::Status::failure(
        "the server could not find the requested resource",
        "NotFound",
    )
    .with_code(404);
    let err = watch_error(
        &watcher::Error::InitialListFailed(kube::Error::Api(status.boxed())),
        Some("default"),
    );
    assert!(err.to_string().contains("CRD installed"), "{err}");
}

//! The explain JSON contract (golden), the text rendering and pod manifests.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::annotation::NETWORKS;
use crate::config::Config;
use crate::nad::{DELEGATION, MemorySource, Nad};
use crate::resolve::resolve;

fn sample() -> (PodIdentity, Result<Plan>) {
    let mut exec = Nad::new(
        "iot",
        "ha",
        r#"{"cniVersion":"1.0.0","type":"macvlan","master":"eth1","ipam":{"type":"static"}}"#,
    );
    exec.annotations.insert(DELEGATION.into(), "exec".into());
    let nads = MemorySource::new([exec]);
    let pod = PodIdentity::new("iot", "home-assistant", "u1");
    let mut ann = BTreeMap::new();
    ann.insert(
        NETWORKS.to_string(),
        r#"[{"name":"ha","interface":"iot0","ips":["192.168.50.10/24"],"mac":"02:00:5e:10:00:01","cni-args":{"a":"b"},"default-route":["192.168.50.1"]}]"#.to_string(),
    );
    let plan = resolve(&pod, &ann, &Config::default(), &nads);
    (pod, plan)
}

#[test]
fn plan_json_is_the_documented_contract() {
    let (_, plan) = sample();
    let v = plan_json(&plan.unwrap());
    let want = json!({
        "apiVersion": "plexus.io/explain/v1",
        "pod": {"namespace": "iot", "name": "home-assistant", "uid": "u1"},
        "attachments": [
            {
                "index": 0, "network": "", "interface": "eth0", "origin": "cluster",
                "primary": true, "runtimeManaged": true, "source": {"kind": "runtime"},
                "configName": "", "cniVersion": "", "form": "conf", "plugins": [],
                "delegation": "auto", "resourceName": null, "runtimeConfig": {},
                "cniArgs": null, "legacyCniArgs": [], "defaultRoute": null,
                "routePlan": {"install": [], "removeV4": true, "removeV6": false},
                "config": null
            },
            {
                "index": 1, "network": "iot/ha", "interface": "iot0", "origin": "annotation",
                "primary": false, "runtimeManaged": false,
                "source": {"kind": "nad", "namespace": "iot", "name": "ha"},
                "configName": "ha", "cniVersion": "1.0.0", "form": "conf", "plugins": ["macvlan"],
                "delegation": "exec", "resourceName": null,
                "runtimeConfig": {"ips": ["192.168.50.10/24"], "mac": "02:00:5e:10:00:01"},
                "cniArgs": {"a": "b"},
                "legacyCniArgs": ["MAC=02:00:5e:10:00:01", "IP=192.168.50.10/24"],
                "defaultRoute": ["192.168.50.1"],
                "routePlan": {"install": ["192.168.50.1"], "removeV4": true, "removeV6": false},
                "config": {"cniVersion": "1.0.0", "type": "macvlan", "master": "eth1",
                           "ipam": {"type": "static"}, "name": "ha", "args": {"cni": {"a": "b"}}}
            }
        ]
    });
    assert_eq!(v, want, "{}", serde_json::to_string_pretty(&v).unwrap());
}

#[test]
fn error_json_has_kind_and_message() {
    let pod = PodIdentity::new("iot", "p", "");
    let e = Error::NetworkNotFound {
        pod: pod.to_string(),
        requested_by: "item 1 (ghost) of k8s.v1.cni.cncf.io/networks".into(),
        namespace: "iot".into(),
        name: "ghost".into(),
    };
    let out = explain(&pod, &Err(e));
    let v: Value = serde_json::from_str(&out.json).unwrap();
    assert_eq!(
        v,
        json!({
            "apiVersion": API_VERSION,
            "pod": {"namespace": "iot", "name": "p", "uid": ""},
            "error": {
                "kind": "network-not-found",
                "message": "pod iot/p: cannot find a network-attachment-definition (ghost) in namespace (iot), requested by item 1 (ghost) of k8s.v1.cni.cncf.io/networks; create it there or fix the reference"
            }
        })
    );
    assert!(
        out.text
            .contains("cannot resolve networks (network-not-found)"),
        "{}",
        out.text
    );
}

#[test]
fn text_names_every_decision() {
    let (pod, plan) = sample();
    let out = explain(&pod, &plan);
    let t = &out.text;
    for want in [
        "pod iot/home-assistant (uid u1): 2 attachments",
        "[0] eth0 <- (the runtime's cluster network)  (cluster, primary, set up by the runtime)",
        "[1] iot0 <- iot/ha  (annotation, exec forced)",
        "source:       nad iot/ha",
        "plugins:      macvlan (conf \"ha\", cniVersion 1.0.0)",
        "runtimeConfig:{\"ips\":[\"192.168.50.10/24\"]",
        "cni-args:     {\"a\":\"b\"}",
        "CNI_ARGS:     MAC=02:00:5e:10:00:01;IP=192.168.50.10/24",
        "default-route:[192.168.50.1]",
        "routes:       remove IPv4 default routes, then add default via 192.168.50.1",
    ] {
        assert!(t.contains(want), "missing {want:?} in\n{t}");
    }
    let v: Value = serde_json::from_str(&out.json).unwrap();
    assert_eq!(v["attachments"].as_array().unwrap().len(), 2);
}

#[test]
fn delegates_mode_source_is_rendered() {
    let config = Config {
        delegates: vec![json!({"name": "cbr0", "type": "flannel"})],
        primary_mode: crate::config::PrimaryMode::Plexus,
        ..Config::default()
    };
    let pod = PodIdentity::new("iot", "p", "");
    let plan = resolve(&pod, &BTreeMap::new(), &config, &MemorySource::default());
    let out = explain(&pod, &plan);
    let v: Value = serde_json::from_str(&out.json).unwrap();
    assert_eq!(
        v["attachments"][0]["source"],
        json!({"kind": "delegate", "position": 0})
    );
    assert!(
        out.text
            .contains("source:       resolver config delegates[0]"),
        "{}",
        out.text
    );
}

#[test]
fn pod_manifests_in_yaml_and_json() {
    let (pod, ann) = pod_from_manifest(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  annotations:\n    k8s.v1.cni.cncf.io/networks: a,b\nspec: {}\n",
    )
    .unwrap();
    assert_eq!(pod, PodIdentity::new("default", "web", ""));
    assert_eq!(ann[NETWORKS], "a,b");
    let (pod, ann) = pod_from_manifest(
        r#"{"kind":"Pod","metadata":{"name":"p","namespace":"n","uid":"x","annotations":{"k":"v"}}}"#,
    )
    .unwrap();
    assert_eq!(pod, PodIdentity::new("n", "p", "x"));
    assert_eq!(ann["k"], "v");
}

#[test]
fn pod_manifest_rejections() {
    for (text, want) in [
        ("", "empty"),
        (
            "kind: Deployment\nmetadata: {name: a}\n",
            "kind \"Deployment\"",
        ),
        ("kind: Pod\nmetadata: {}\n", "metadata.name is missing"),
        (
            "kind: Pod\nmetadata: {name: a, annotations: {k: 1}}\n",
            "must be a string",
        ),
        (
            "kind: Pod\nmetadata: {name: a, annotations: [1]}\n",
            "must be a map",
        ),
        ("{bad", "invalid JSON"),
        ("a: [", "invalid YAML"),
        ("- 1\n", "expected a Pod object"),
    ] {
        let e = pod_from_manifest(text).unwrap_err();
        assert_eq!(e.kind(), "invalid-pod-manifest");
        assert!(e.to_string().contains(want), "{text:?}: {e}");
    }
    let big = "x".repeat(MAX_MANIFEST_BYTES + 1);
    assert!(
        pod_from_manifest(&big)
            .unwrap_err()
            .to_string()
            .contains("bytes")
    );
}

#[test]
fn deeply_nested_pod_manifest_is_refused_before_parsing() {
    let head = "kind: Pod\nmetadata: {name: a}\nspec: ";
    let fill = MAX_MANIFEST_BYTES - head.len();
    for text in [
        format!("{head}{}", "[".repeat(fill)),
        format!("{head}\n{}", "- ".repeat((fill - 1) / 2)),
        format!(
            "{{\"kind\": \"Pod\", \"spec\": {}",
            "{\"a\": ".repeat(fill / 7)
        ),
    ] {
        assert!(text.len() <= MAX_MANIFEST_BYTES);
        let e = pod_from_manifest(&text).unwrap_err();
        assert_eq!(e.kind(), "invalid-pod-manifest");
        assert!(
            e.to_string()
                .contains("nesting deeper than 64 levels at line"),
            "{e}"
        );
    }
}

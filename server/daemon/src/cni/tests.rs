//! The Cni call over the fake attacher and planner: verbs, codes, results, the spool.

use std::collections::HashMap;
use std::sync::Arc;

use plexus_proto::v1::cni_response::Outcome;
use serde_json::{Value, json};

use super::request::{Call, POD_ANNOTATIONS};
use super::{serve, spool};
use crate::node::{Limits, Node};
use crate::test_util::{Call as Recorded, FakeAttacher, FakePlanner};

type TestNode = Arc<Node<FakeAttacher, FakePlanner>>;

fn recorded(node: &TestNode, id: &str) -> Option<crate::model::SandboxView> {
    crate::attacher::Attacher::sandbox(
        node.attacher(),
        &plexus_core::id::SandboxId::new(id).unwrap(),
    )
    .unwrap()
}

fn node() -> TestNode {
    Node::new(
        Arc::new(FakeAttacher::new()),
        Arc::new(FakePlanner),
        Limits::default(),
    )
}

fn env(verb: &str, id: &str, uid: &str) -> HashMap<String, String> {
    [
        ("CNI_COMMAND", verb),
        ("CNI_CONTAINERID", id),
        ("CNI_NETNS", "/var/run/netns/cni-1"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
        (
            "CNI_ARGS",
            &format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_UID={uid};K8S_POD_INFRA_CONTAINER_ID={id}"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn stdin(version: &str, networks: Option<&str>, extra: Value) -> Vec<u8> {
    let mut annotations = serde_json::Map::new();
    if let Some(n) = networks {
        annotations.insert("k8s.v1.cni.cncf.io/networks".into(), n.into());
    }
    let mut conf = json!({
        "cniVersion": version,
        "name": "plexus",
        "type": "plexus-cni",
        "delegate": {"cniVersion": "1.0.0", "name": "cbr0", "plugins": [{"type": "bridge"}]},
        "runtimeConfig": {POD_ANNOTATIONS: annotations},
    });
    if let (Value::Object(c), Value::Object(e)) = (&mut conf, extra) {
        c.extend(e);
    }
    serde_json::to_vec(&conf).unwrap()
}

async fn call(
    node: &TestNode,
    env: &HashMap<String, String>,
    stdin: &[u8],
) -> Result<Value, (u32, String)> {
    match serve(node, env, stdin, None).await.outcome.unwrap() {
        Outcome::Stdout(bytes) if bytes.is_empty() => Ok(Value::Null),
        Outcome::Stdout(bytes) => Ok(serde_json::from_slice(&bytes).unwrap()),
        Outcome::Error(e) => Err((
            e.code,
            format!("{}; {} [{}]", e.msg, e.details, e.cni_version),
        )),
    }
}

#[tokio::test]
async fn add_runs_the_cluster_network_first_and_answers_its_result_in_the_runtimes_version() {
    let node = node();
    let out = call(
        &node,
        &env("ADD", "sb1", "u1"),
        &stdin("0.4.0", Some("lan,iot@data"), json!({})),
    )
    .await
    .unwrap();
    assert_eq!(
        node.attacher().calls(),
        [Recorded::Setup(
            "sb1".into(),
            vec!["eth0".into(), "net1".into(), "data".into()]
        )]
    );
    assert_eq!(out["cniVersion"], "0.4.0");
    assert_eq!(out["interfaces"][0]["name"], "eth0");
    assert_eq!(out["ips"][0]["address"], "192.0.2.10/24");
    // 0.4.0 results carry the address family, 1.0.0 ones do not.
    assert_eq!(out["ips"][0]["version"], "4");
    let recorded = recorded(&node, "sb1").unwrap();
    assert_eq!(recorded.pod.uid, "u1");
    assert!(recorded.attachments[0].primary);
}

#[tokio::test]
async fn del_tears_the_pod_down_and_an_unknown_sandbox_succeeds() {
    let node = node();
    call(
        &node,
        &env("ADD", "sb1", "u1"),
        &stdin("1.0.0", None, json!({})),
    )
    .await
    .unwrap();
    let mut del = env("DEL", "sb1", "u1");
    del.insert("CNI_NETNS".into(), String::new());
    assert_eq!(
        call(&node, &del, &stdin("1.0.0", None, json!({}))).await,
        Ok(Value::Null)
    );
    assert!(recorded(&node, "sb1").is_none());
    assert_eq!(
        call(&node, &del, &stdin("1.0.0", None, json!({}))).await,
        Ok(Value::Null)
    );
    assert!(
        node.attacher()
            .calls()
            .contains(&Recorded::Teardown("sb1".into()))
    );
}

#[tokio::test]
async fn a_missing_readiness_file_fails_add_with_try_again_and_status_with_50() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("subnet.env");
    let extra = json!({"readinessIndicatorFile": file.to_str().unwrap()});
    let node = node();
    let (code, msg) = call(
        &node,
        &env("ADD", "sb1", "u1"),
        &stdin("1.0.0", None, extra.clone()),
    )
    .await
    .unwrap_err();
    assert_eq!(code, 11);
    assert!(msg.contains(file.to_str().unwrap()), "{msg}");
    assert!(
        node.attacher().calls().is_empty(),
        "nothing may run before the network is ready"
    );
    let (code, _) = call(
        &node,
        &env("STATUS", "", ""),
        &stdin("1.1.0", None, extra.clone()),
    )
    .await
    .unwrap_err();
    assert_eq!(code, 50);
    std::fs::write(&file, "FLANNEL_NETWORK=10.0.0.0/8").unwrap();
    call(
        &node,
        &env("STATUS", "", ""),
        &stdin("1.1.0", None, extra.clone()),
    )
    .await
    .unwrap();
    call(
        &node,
        &env("ADD", "sb1", "u1"),
        &stdin("1.0.0", None, extra),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_recorded_sandbox_of_another_pod_uid_fails_add_but_not_del() {
    let node = node();
    call(
        &node,
        &env("ADD", "sb1", "u1"),
        &stdin("1.0.0", None, json!({})),
    )
    .await
    .unwrap();
    let (code, msg) = call(
        &node,
        &env("ADD", "sb1", "u2"),
        &stdin("1.0.0", None, json!({})),
    )
    .await
    .unwrap_err();
    assert_eq!(code, 4);
    assert!(
        msg.contains("expected pod UID \"u2\" but got \"u1\""),
        "{msg}"
    );
    // A static pod's UID never matches: no error for it.
    let mut extra = stdin("1.0.0", None, json!({}));
    let mut v: Value = serde_json::from_slice(&extra).unwrap();
    v["runtimeConfig"][POD_ANNOTATIONS]["kubernetes.io/config.source"] = "file".into();
    extra = serde_json::to_vec(&v).unwrap();
    call(&node, &env("ADD", "sb1", "u2"), &extra).await.unwrap();
    call(
        &node,
        &env("DEL", "sb1", "u3"),
        &stdin("1.0.0", None, json!({})),
    )
    .await
    .unwrap();
    assert!(recorded(&node, "sb1").is_none());
}

#[tokio::test]
async fn check_knows_set_up_sandboxes_only() {
    let node = node();
    let (code, _) = call(
        &node,
        &env("CHECK", "sb1", "u1"),
        &stdin("1.0.0", None, json!({})),
    )
    .await
    .unwrap_err();
    assert_eq!(code, 3);
    call(
        &node,
        &env("ADD", "sb1", "u1"),
        &stdin("1.0.0", Some("lan"), json!({})),
    )
    .await
    .unwrap();
    call(
        &node,
        &env("CHECK", "sb1", "u1"),
        &stdin("1.0.0", None, json!({})),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn gc_tears_down_sandboxes_the_runtime_no_longer_lists() {
    let node = node();
    for id in ["sb1", "sb2"] {
        call(
            &node,
            &env("ADD", id, "u1"),
            &stdin("1.1.0", None, json!({})),
        )
        .await
        .unwrap();
    }
    let valid = json!({"cni.dev/valid-attachments": [{"containerID": "sb2", "ifname": "eth0"}]});
    call(&node, &env("GC", "", ""), &stdin("1.1.0", None, valid))
        .await
        .unwrap();
    assert!(recorded(&node, "sb1").is_none());
    assert!(recorded(&node, "sb2").is_some());
}

#[tokio::test]
async fn failures_carry_libcni_codes() {
    let node = node();
    let add = |id: &str| env("ADD", id, "u1");
    // A network not defined yet may appear: try again later.
    let (code, msg) = call(
        &node,
        &add("sb1"),
        &stdin("1.0.0", Some("missing-net"), json!({})),
    )
    .await
    .unwrap_err();
    assert_eq!((code, msg.contains("missing-net")), (11, true), "{msg}");
    // A malformed annotation will not get better.
    let (code, _) = call(&node, &add("sb1"), &stdin("1.0.0", Some("a b"), json!({})))
        .await
        .unwrap_err();
    assert_eq!(code, 7);
    let (code, _) = call(&node, &add("../etc"), &stdin("1.0.0", None, json!({})))
        .await
        .unwrap_err();
    assert_eq!(code, 4);
    let (code, msg) = call(&node, &add("sb1"), &stdin("0.9.0", None, json!({})))
        .await
        .unwrap_err();
    assert_eq!(code, 1, "{msg}");
    let (code, _) = call(&node, &add("sb1"), b"{not json").await.unwrap_err();
    assert_eq!(code, 6);
    let big = vec![b' '; super::request::MAX_STDIN + 1];
    let (code, _) = call(&node, &add("sb1"), &big).await.unwrap_err();
    assert_eq!(code, 6);
    let (code, msg) = call(&node, &env("FROB", "sb1", "u1"), b"{}")
        .await
        .unwrap_err();
    assert!(code == 4 && msg.contains("accepted: ADD"), "{msg}");
    let mut no_pod = add("sb1");
    no_pod.insert("CNI_ARGS".into(), "IgnoreUnknown=1".into());
    let (code, msg) = call(&node, &no_pod, &stdin("1.0.0", None, json!({})))
        .await
        .unwrap_err();
    assert!(code == 4 && msg.contains("K8S_POD_NAME"), "{msg}");
    // Errors are labelled with the request's version.
    let (_, msg) = call(&node, &add("sb1"), &stdin("0.3.1", Some("a b"), json!({})))
        .await
        .unwrap_err();
    assert!(msg.ends_with("[0.3.1]"), "{msg}");
    assert!(node.attacher().calls().is_empty());
}

#[tokio::test]
async fn version_lists_every_supported_version() {
    let out = call(
        &node(),
        &env("VERSION", "", ""),
        br#"{"cniVersion":"1.0.0"}"#,
    )
    .await
    .unwrap();
    assert_eq!(out["cniVersion"], "1.0.0");
    assert!(
        out["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("1.1.0"))
    );
}

#[test]
fn annotations_capabilities_and_the_wrapped_primary_are_read_from_stdin() {
    let bytes = stdin(
        "1.0.0",
        Some("lan"),
        json!({"runtimeConfig": {POD_ANNOTATIONS: {"a": "b"}, "portMappings": [{"HostPort": 80, "ContainerPort": 8080}]}}),
    );
    let c = Call::parse(&env("ADD", "sb1", "u1"), &bytes).unwrap();
    assert_eq!(c.annotations.unwrap()["a"], "b");
    assert_eq!(c.capabilities["portMappings"][0]["HostPort"], 80);
    assert_eq!(c.wrapped.unwrap()["name"], "cbr0");
    assert_eq!(
        (
            c.pod.namespace.as_str(),
            c.pod.name.as_str(),
            c.pod.uid.as_str()
        ),
        ("default", "web", "u1")
    );
    // A runtime that does not pass annotations: None, not an empty map.
    let bare = br#"{"cniVersion":"1.0.0","name":"plexus","type":"plexus-cni"}"#;
    assert!(
        Call::parse(&env("ADD", "sb1", "u1"), bare)
            .unwrap()
            .annotations
            .is_none()
    );
}

#[test]
fn the_wrapped_primary_is_the_cluster_network_unless_one_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let nads: Arc<dyn plexus_core::nad::NadSource> =
        Arc::new(plexus_core::nad::DirSource::new(dir.path()));
    let wrapped = json!({"cniVersion": "1.0.0", "name": "cbr0", "plugins": [{"type": "bridge"}]});
    let resolver = crate::resolver::Resolver::new(plexus_core::Config::default(), nads);
    let pod = plexus_core::pod::PodIdentity::new("default", "web", "u1");
    let plan = crate::planner::Planner::plan_cni(
        &resolver,
        &pod,
        &Default::default(),
        &plexus_core::InterfaceName::eth0(),
        Some(&wrapped),
    )
    .unwrap();
    let primary = &plan.attachments[0];
    assert_eq!(
        (primary.network.as_str(), primary.interface.as_str()),
        ("cbr0", "eth0")
    );
    assert!(primary.primary && !primary.runtime_managed);
    // The NRI path's plan of the same pod leaves eth0 to the runtime.
    let nri = crate::planner::Planner::plan(&resolver, &pod, &Default::default()).unwrap();
    assert!(nri.attachments[0].runtime_managed);
}

#[tokio::test]
async fn spooled_dels_run_before_serving_and_odd_files_are_left_alone() {
    let node = node();
    call(
        &node,
        &env("ADD", "sb1", "u1"),
        &stdin("1.0.0", None, json!({})),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sb1.del"),
        br#"{"version":1,"containerId":"sb1"}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("gone.del"), b"{}").unwrap();
    std::fs::write(dir.path().join("..bad.del"), b"{}").unwrap();
    std::fs::write(dir.path().join(".tmp-sb9"), b"{").unwrap();
    let done = spool::drain(&node, dir.path()).await;
    assert_eq!(done, ["gone", "sb1"]);
    assert!(recorded(&node, "sb1").is_none());
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, ["..bad.del"]);
    assert!(spool::valid_id(&"a".repeat(128)) && !spool::valid_id(&"a".repeat(129)));
    assert!(!spool::valid_id("") && !spool::valid_id("-x") && !spool::valid_id("a/b"));
}

#[test]
fn the_default_network_annotation_replaces_the_cluster_network_on_the_shim_path_only() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("calico.yaml"),
        r#"apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata:
  name: calico
  namespace: kube-system
spec:
  config: '{"cniVersion":"1.0.0","type":"calico"}'
"#,
    )
    .unwrap();
    let nads: Arc<dyn plexus_core::nad::NadSource> =
        Arc::new(plexus_core::nad::DirSource::new(dir.path()));
    let resolver = crate::resolver::Resolver::new(plexus_core::Config::default(), nads);
    let pod = plexus_core::pod::PodIdentity::new("default", "web", "u1");
    let annotations: std::collections::BTreeMap<String, String> = [(
        "v1.multus-cni.io/default-network".to_owned(),
        "calico".to_owned(),
    )]
    .into();
    let wrapped = json!({"cniVersion": "1.0.0", "name": "cbr0", "type": "bridge"});
    let plan = crate::planner::Planner::plan_cni(
        &resolver,
        &pod,
        &annotations,
        &plexus_core::InterfaceName::eth0(),
        Some(&wrapped),
    )
    .unwrap();
    let primary = &plan.attachments[0];
    assert_eq!(
        (primary.network.as_str(), primary.interface.as_str()),
        ("kube-system/calico", "eth0")
    );
    assert!(primary.primary && !primary.runtime_managed);
    assert_eq!(plan.attachments.len(), 1);
    // The NRI path refuses it: the runtime already chose eth0's network.
    assert!(crate::planner::Planner::plan(&resolver, &pod, &annotations).is_err());
}

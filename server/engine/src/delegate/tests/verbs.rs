//! CHECK, STATUS, GC and VERSION over fake plugins.

use super::*;

#[tokio::test]
async fn check_needs_0_4_0_honours_disable_check_and_passes_the_cache() {
    let f = Fixture::new();
    f.result_plugin("p1", P2_RESULT);
    let rc = RuntimeConfig::default();
    let old = conf(r#"{"cniVersion":"0.3.1","name":"old","type":"p1"}"#);
    let err = f
        .executor()
        .check(&f.invocation(&old, &rc))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::VerbUnsupported { verb: "CHECK", .. }),
        "{err:?}"
    );
    let off = conflist(
        r#"{"cniVersion":"1.0.0","name":"off","disableCheck":true,"plugins":[{"type":"p1"}]}"#,
    );
    f.executor().check(&f.invocation(&off, &rc)).await.unwrap();
    assert!(f.calls().is_empty());
    let on = conf(r#"{"cniVersion":"1.0.0","name":"on","type":"p1"}"#);
    f.executor().add(&f.invocation(&on, &rc)).await.unwrap();
    f.executor().check(&f.invocation(&on, &rc)).await.unwrap();
    assert_eq!(f.calls(), ["p1 ADD c1", "p1 CHECK c1"]);
    assert_eq!(
        f.stdin("p1", "CHECK")["prevResult"],
        serde_json::from_str::<Value>(P2_RESULT).unwrap()
    );
    // An explicit prevResult wins over the cache and is converted to the list version.
    let given = cni::Result::parse(P1_RESULT.as_bytes(), "").unwrap();
    let inv = Invocation {
        prev_result: Some(&given),
        ..f.invocation(&on, &rc)
    };
    f.executor().check(&inv).await.unwrap();
    assert_eq!(f.stdin("p1", "CHECK")["prevResult"]["cniVersion"], "1.0.0");
    assert!(
        f.stdin("p1", "CHECK")["prevResult"]["ips"][0]
            .get("version")
            .is_none()
    );
}

#[tokio::test]
async fn status_is_a_no_op_before_1_1_0_and_reports_plugin_codes() {
    let f = Fixture::new();
    f.plugin(
        "p1",
        r#"printf '%s' '{"cniVersion":"1.1.0","code":50,"msg":"not ready"}'; exit 1"#,
    );
    let old = conflist(r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"p1"}]}"#);
    f.executor().status(&old).await.unwrap();
    assert!(f.calls().is_empty());
    let new = conflist(r#"{"cniVersion":"1.1.0","name":"n","plugins":[{"type":"p1"}]}"#);
    let err = f.executor().status(&new).await.unwrap_err();
    assert!(
        matches!(&err, Error::Plugin { error, verb: "STATUS", .. } if error.code == cni::ErrorCode::PLUGIN_NOT_AVAILABLE),
        "{err:?}"
    );
    assert!(
        f.env("p1", "STATUS")
            .contains(&"CNI_CONTAINERID=".to_owned())
    );
}

#[tokio::test]
async fn gc_deletes_stale_cached_attachments_and_runs_gc_with_valid_ones() {
    let f = Fixture::new();
    f.result_plugin("p1", P2_RESULT);
    let config = conflist(r#"{"cniVersion":"1.1.0","name":"g","plugins":[{"type":"p1"}]}"#);
    let rc = RuntimeConfig::default();
    let ex = f.executor();
    for id in ["keep", "stale"] {
        let id = super::sid(id);
        let inv = Invocation {
            container_id: &id,
            ..f.invocation(&config, &rc)
        };
        ex.add(&inv).await.unwrap();
    }
    let valid = [GcAttachment {
        container_id: "keep".into(),
        ifname: "net1".into(),
    }];
    ex.gc(&config, &valid).await.unwrap();
    assert_eq!(f.calls()[2..], ["p1 DEL stale", "p1 GC "]);
    assert_eq!(
        f.stdin("p1", "GC")["cni.dev/valid-attachments"],
        json!([{"containerID": "keep", "ifname": "net1"}])
    );
    assert_eq!(
        f.stdin("p1", "DEL")["prevResult"]["ips"][0]["address"],
        "10.1.0.5/24"
    );
    assert!(f.env("p1", "DEL").contains(&"CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=stale;K8S_POD_UID=uid-1".to_owned()));
    let left: Vec<String> = ex
        .cached_attachments(None)
        .unwrap()
        .into_iter()
        .map(|e| e.container_id)
        .collect();
    assert_eq!(left, ["keep"]);
}

#[tokio::test]
async fn version_probe_is_cached_and_refuses_unsupported_versions() {
    let f = Fixture::new();
    f.plugin(
        "p1",
        r#"case "$CNI_COMMAND" in VERSION) printf '%s' '{"cniVersion":"1.1.0","supportedVersions":["0.3.1","0.4.0"]}';; ADD) printf '%s' '{"cniVersion":"0.4.0"}';; esac"#,
    );
    f.plugin(
        "old",
        r#"echo '{"code":4,"msg":"unknown CNI_COMMAND: VERSION"}'; exit 1"#,
    );
    let ex = Executor::new(Config {
        probe_versions: true,
        ..f.config()
    });
    let info = ex.version("p1").await.unwrap();
    assert_eq!(info.supported_versions, ["0.3.1", "0.4.0"]);
    ex.version("p1").await.unwrap();
    assert_eq!(f.calls(), ["p1 VERSION "]);
    assert!(
        f.env("p1", "VERSION")
            .contains(&"CNI_NETNS=dummy".to_owned())
    );
    assert_eq!(f.stdin("p1", "VERSION"), json!({"cniVersion": "1.1.0"}));
    assert_eq!(ex.version("old").await.unwrap(), cni::VersionInfo::legacy());

    let rc = RuntimeConfig::default();
    let too_new = conf(r#"{"cniVersion":"1.0.0","name":"one","type":"p1"}"#);
    let err = ex.add(&f.invocation(&too_new, &rc)).await.unwrap_err();
    assert!(matches!(err, Error::IncompatibleVersion { .. }), "{err:?}");
    let ok = conf(r#"{"cniVersion":"0.4.0","name":"one","type":"p1"}"#);
    ex.add(&f.invocation(&ok, &rc)).await.unwrap();
}

//! Resolution cases from the Multus reference (F6, F7, F9–F15, F20, F28–F32) and Q10.

use std::collections::BTreeMap;
use std::net::IpAddr;

mod configured;
mod device;
mod examples;
mod order;
mod route_and_hotplug;

use super::*;
use crate::nad::{DELEGATION, MemorySource, RESOURCE_NAME};

const MACVLAN: &str =
    r#"{"cniVersion":"1.0.0","type":"macvlan","master":"eth1","ipam":{"type":"static"}}"#;

fn pod() -> PodIdentity {
    PodIdentity::new("apps", "web", "uid-1")
}

fn nads() -> MemorySource {
    let mut exec = Nad::new("apps", "sriov", r#"{"type":"sriov"}"#);
    exec.annotations
        .insert(RESOURCE_NAME.into(), "intel.com/vf".into());
    exec.annotations.insert(DELEGATION.into(), "exec".into());
    let mut bad = Nad::new("apps", "weird", r#"{"type":"bridge"}"#);
    bad.annotations.insert(DELEGATION.into(), "turbo".into());
    MemorySource::new([
        Nad::new("apps", "a", MACVLAN),
        Nad::new("apps", "b", r#"{"type":"bridge","name":"custom"}"#),
        Nad::new(
            "apps",
            "c",
            r#"{"name":"c","plugins":[{"type":"bridge"},{"type":"tuning"}]}"#,
        ),
        Nad::new("other", "x", MACVLAN),
        Nad::new("default", "shared", MACVLAN),
        Nad::new("kube-system", "cbr0", r#"{"type":"flannel"}"#),
        Nad::new("kube-system", "mon", r#"{"type":"bridge"}"#),
        Nad::new("kube-system", "alt", r#"{"type":"calico"}"#),
        Nad::new("apps", "alt", r#"{"type":"ptp"}"#),
        exec,
        bad,
    ])
}

fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn networks(value: &str) -> BTreeMap<String, String> {
    ann(&[(annotation::NETWORKS, value)])
}

fn plexus_config() -> Config {
    Config {
        cluster_network: Some("cbr0".into()),
        primary_mode: PrimaryMode::Plexus,
        ..Config::default()
    }
}

fn plan(annotations: &BTreeMap<String, String>, config: &Config) -> Plan {
    resolve(&pod(), annotations, config, &nads()).unwrap_or_else(|e| panic!("{e}"))
}

fn fail(annotations: &BTreeMap<String, String>, config: &Config) -> Error {
    resolve(&pod(), annotations, config, &nads()).expect_err("expected an error")
}

fn ifnames(plan: &Plan) -> Vec<&str> {
    plan.attachments
        .iter()
        .map(|a| a.interface.as_str())
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn runtime_mode_keeps_a_runtime_managed_primary_and_names_net_index() {
    let p = plan(&networks("a,b@foo,c"), &Config::default());
    assert_eq!(ifnames(&p), ["eth0", "net1", "foo", "net3"]);
    let primary = &p.attachments[0];
    assert!(primary.primary && primary.runtime_managed);
    assert_eq!(primary.source, NetworkSource::Runtime);
    assert!(primary.config.bytes.is_empty());
    assert_eq!(p.attachments[1].network, "apps/a");
    assert_eq!(
        p.attachments[2].network, "apps/b",
        "F21 display name is ns/name"
    );
    assert_eq!(p.attachments[2].config.name, "custom");
    assert_eq!(p.attachments[3].config.plugin_types, ["bridge", "tuning"]);
    assert!(
        p.attachments[1..]
            .iter()
            .all(|a| a.origin == Origin::Annotation && !a.primary)
    );
    assert_eq!(p.pod, pod());
}

#[test]
fn no_annotation_gives_only_the_primary() {
    let p = plan(&BTreeMap::new(), &Config::default());
    assert_eq!(p.attachments.len(), 1);
    let p = plan(&networks(""), &plexus_config());
    assert_eq!(p.attachments.len(), 1);
    assert_eq!(p.attachments[0].network, "kube-system/cbr0");
    assert!(!p.attachments[0].runtime_managed);
}

#[test]
fn cluster_network_from_nad_file_name_or_path() {
    let p = plan(&networks("a"), &plexus_config());
    let c = &p.attachments[0];
    assert_eq!(
        (c.index, c.interface.as_str(), c.origin),
        (0, "eth0", Origin::Cluster)
    );
    assert_eq!(c.config.plugin_types, ["flannel"]);

    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("10-flannel.conflist"),
        r#"{"name":"cbr1","cniVersion":"1.0.0","plugins":[{"type":"flannel"},{"type":"portmap"}]}"#,
    )
    .unwrap();
    let mut config = Config {
        cluster_network: Some("cbr1".into()),
        conf_dir: tmp.path().to_path_buf(),
        ..plexus_config()
    };
    let c = plan(&networks(""), &config).attachments.remove(0);
    assert_eq!(
        c.network, "cbr1",
        "file-derived networks keep the config name"
    );
    assert!(matches!(c.source, NetworkSource::File { .. }));

    config.cluster_network = Some(tmp.path().display().to_string());
    let c = plan(&networks(""), &config).attachments.remove(0);
    assert_eq!(c.config.plugin_types, ["flannel", "portmap"]);

    // Runtime mode with a configured cluster network: named, but not executed.
    config.primary_mode = PrimaryMode::Runtime;
    let c = plan(&networks(""), &config).attachments.remove(0);
    assert!(c.runtime_managed && c.primary);
    assert_eq!(c.network, "cbr1");

    config.cluster_network = Some("nothing".into());
    let e = fail(&networks(""), &config);
    assert!(matches!(
        e,
        Error::ConfiguredNetworkNotFound {
            role: "clusterNetwork",
            ..
        }
    ));
    assert!(
        e.to_string()
            .contains("failed to get clusterNetwork nothing in namespace kube-system")
    );
}

#[test]
fn shim_mode_needs_a_cluster_network() {
    let config = Config {
        primary_mode: PrimaryMode::Plexus,
        ..Config::default()
    };
    assert!(matches!(
        fail(&networks("a"), &config),
        Error::ClusterNetworkMissing
    ));
    let p = plan(&ann(&[(annotation::DEFAULT_NETWORK, "alt")]), &config);
    assert_eq!(p.attachments[0].network, "kube-system/alt");
}

#[test]
fn default_networks_follow_the_cluster_network_except_in_system_namespaces() {
    let config = Config {
        default_networks: vec!["mon".into()],
        ..plexus_config()
    };
    let p = plan(&networks("a@x1,b"), &config);
    assert_eq!(ifnames(&p), ["eth0", "net1", "x1", "net3"]);
    assert_eq!(p.attachments[1].network, "kube-system/mon");
    assert_eq!(p.attachments[1].origin, Origin::Default);
    let system = PodIdentity::new("kube-system", "dns", "");
    let p = resolve(&system, &networks(""), &config, &nads()).unwrap();
    assert_eq!(p.attachments.len(), 1, "F32");
    let config = Config {
        default_networks: vec!["missing".into()],
        ..plexus_config()
    };
    assert!(matches!(
        fail(&networks(""), &config),
        Error::ConfiguredNetworkNotFound {
            role: "defaultNetworks",
            ..
        }
    ));
}

#[test]
fn pod_default_network_override() {
    let config = plexus_config();
    let p = plan(
        &ann(&[
            (
                annotation::DEFAULT_NETWORK,
                r#"[{"name":"alt","mac":"02:00:00:00:00:09","ips":["10.9.0.2/24"]}]"#,
            ),
            (annotation::NETWORKS, "a"),
        ]),
        &config,
    );
    let o = &p.attachments[0];
    assert_eq!(
        o.network, "kube-system/alt",
        "F6 defaults to the multus namespace"
    );
    assert_eq!(
        (o.origin, o.primary, o.interface.as_str()),
        (Origin::DefaultOverride, true, "eth0")
    );
    assert!(
        o.runtime_config.is_empty(),
        "F13: the master's requests are ignored"
    );
    assert_eq!(
        o.extra_cni_args,
        [
            ("MAC".to_string(), "02:00:00:00:00:09".to_string()),
            ("IP".to_string(), "10.9.0.2/24".to_string())
        ]
    );
    assert_eq!(p.attachments[1].interface, "net1");

    let p = plan(
        &ann(&[(annotation::DEFAULT_NETWORK, "apps/alt@main0")]),
        &config,
    );
    assert_eq!(
        (
            p.attachments[0].network.as_str(),
            p.attachments[0].interface.as_str()
        ),
        ("apps/alt", "main0")
    );

    // Not subject to isolation.
    let isolated = Config {
        namespace_isolation: true,
        ..plexus_config()
    };
    plan(&ann(&[(annotation::DEFAULT_NETWORK, "other/x")]), &isolated);

    assert!(matches!(
        fail(&ann(&[(annotation::DEFAULT_NETWORK, "a,b")]), &config),
        Error::MultipleDefaultNetworks { .. }
    ));
    let e = fail(&ann(&[(annotation::DEFAULT_NETWORK, "nope")]), &config);
    assert!(
        e.to_string().starts_with(
            "pod apps/web: cannot find a network-attachment-definition (nope) in namespace (kube-system), requested by v1.multus-cni.io/default-network"
        ),
        "{e}"
    );
    assert!(matches!(
        fail(
            &ann(&[(annotation::DEFAULT_NETWORK, "alt")]),
            &Config::default()
        ),
        Error::DefaultNetworkUnsupported { .. }
    ));
}

#[test]
fn override_has_no_file_fallback() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("f.conf"),
        r#"{"name":"onlyfile","type":"bridge"}"#,
    )
    .unwrap();
    let config = Config {
        conf_dir: tmp.path().to_path_buf(),
        ..plexus_config()
    };
    assert!(matches!(
        fail(&ann(&[(annotation::DEFAULT_NETWORK, "onlyfile")]), &config),
        Error::NetworkNotFound { .. }
    ));
}

#[test]
fn unknown_network_names_pod_and_nad() {
    let e = fail(&networks("a,ghost"), &Config::default());
    assert!(matches!(e, Error::NetworkNotFound { .. }));
    assert_eq!(
        e.to_string(),
        "pod apps/web: cannot find a network-attachment-definition (ghost) in namespace (apps), requested by item 2 (ghost) of k8s.v1.cni.cncf.io/networks; create it there or fix the reference"
    );
}

#[test]
fn namespace_isolation_with_global_namespaces() {
    let mut config = Config {
        namespace_isolation: true,
        ..Config::default()
    };
    plan(&networks("a,default/shared"), &config);
    let e = fail(&networks("a,other/x"), &config);
    assert!(matches!(e, Error::NamespaceIsolation { .. }));
    assert!(
        e.to_string()
            .contains("pod is in namespace apps but refers to target namespace other"),
        "{e}"
    );
    config.global_namespaces = vec!["other".into()];
    plan(&networks("other/x"), &config);
    assert!(matches!(
        fail(&networks("default/shared"), &config),
        Error::NamespaceIsolation { .. }
    ));
    config.namespace_isolation = false;
    plan(&networks("other/x,default/shared"), &config);
}

#[test]
fn json_requests_become_runtime_config_cni_args_and_legacy_args() {
    let p = plan(
        &networks(
            r#"[{"name":"a","interface":"iot0","ips":["192.168.50.10/24","fd00::10/64"],"mac":"02:00:5e:10:00:01",
                 "portMappings":[{"hostPort":8123,"containerPort":8123}],"bandwidth":{"egressRate":100},
                 "infiniband-guid":"00:11:22:33:44:55:66:77","deviceID":"0000:03:00.1","cni-args":{"foo":"bar"}}]"#,
        ),
        &Config::default(),
    );
    let a = &p.attachments[1];
    assert_eq!(a.interface, "iot0");
    let rc = &a.runtime_config;
    assert_eq!(rc.ips, ["192.168.50.10/24", "fd00::10/64"]);
    assert_eq!(rc.mac.as_deref(), Some("02:00:5e:10:00:01"));
    assert_eq!(rc.port_mappings[0].container_port, 8123);
    assert_eq!(rc.bandwidth.as_ref().unwrap().egress_rate, 100);
    assert_eq!(
        rc.infiniband_guid.as_deref(),
        Some("00:11:22:33:44:55:66:77")
    );
    assert_eq!(rc.device_id.as_deref(), Some("0000:03:00.1"));
    assert_eq!(
        a.extra_cni_args,
        [
            ("MAC".to_string(), "02:00:5e:10:00:01".to_string()),
            ("IP".to_string(), "192.168.50.10/24,fd00::10/64".to_string())
        ]
    );
    assert_eq!(a.cni_args.as_ref().unwrap()["foo"], "bar");
    let v: serde_json::Value = serde_json::from_slice(&a.config.bytes).unwrap();
    assert_eq!(v["args"]["cni"]["foo"], "bar");
    assert_eq!(v["name"], "a", "F18 name injected");
}

#[test]
fn nad_annotations_reach_the_plan() {
    let p = plan(&networks("sriov,a"), &Config::default());
    assert_eq!(
        p.attachments[1].resource_name.as_deref(),
        Some("intel.com/vf")
    );
    assert!(p.attachments[1].force_exec);
    assert!(!p.attachments[2].force_exec);
    let e = fail(&networks("weird"), &Config::default());
    assert!(e.to_string().contains("accepted: exec or auto"), "{e}");
}

#[test]
fn interface_names_are_unique_across_the_plan() {
    let e = fail(&networks("a@net2,b"), &Config::default());
    assert!(
        matches!(e, Error::DuplicateInterface { ref interface, .. } if interface == "net2"),
        "{e}"
    );
    let e = fail(&networks("a@eth0"), &Config::default());
    assert!(
        e.to_string().contains("the runtime's cluster network"),
        "{e}"
    );
    assert!(matches!(
        fail(&networks("a@x,b@x"), &Config::default()),
        Error::InvalidSelection { .. }
    ));
}

#[test]
fn bad_annotations_surface_as_user_errors() {
    let e = fail(&networks("a,"), &Config::default());
    assert!(e.is_user_input());
    assert_eq!(e.kind(), "invalid-selection");
}

#[test]
fn store_errors_propagate() {
    struct Broken;
    impl NadSource for Broken {
        fn get(&self, _: &str, _: &str) -> Result<Option<Nad>> {
            Err(Error::NadStore {
                reason: "cache not synced".into(),
            })
        }
    }
    let e = resolve(&pod(), &networks("a"), &Config::default(), &Broken).unwrap_err();
    assert!(matches!(e, Error::NadStore { .. }));
}

#[test]
fn specless_nad_uses_the_conf_dir() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("a.conf"),
        r#"{"name":"disk","type":"ipvlan"}"#,
    )
    .unwrap();
    let mut nads = nads();
    nads.insert(Nad::new("apps", "disk", ""));
    let config = Config {
        conf_dir: tmp.path().to_path_buf(),
        ..Config::default()
    };
    let p = resolve(&pod(), &networks("disk"), &config, &nads).unwrap();
    assert!(matches!(
        p.attachments[1].source,
        NetworkSource::NadFile { .. }
    ));
    assert_eq!(p.attachments[1].network, "apps/disk");
}

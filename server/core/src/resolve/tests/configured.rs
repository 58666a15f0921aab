//! Node-configured networks: the `delegates` mode (F27) and cluster/default networks
//! given by path (F28), including the subdirectory chain of a conflist file (F35).

use serde_json::json;

use super::*;

fn delegates_config(mode: PrimaryMode) -> Config {
    Config {
        delegates: vec![
            json!({"cniVersion": "1.0.0", "name": "cbr0", "type": "flannel"}),
            json!({"name": "mon", "plugins": [{"type": "bridge"}, {"type": "tuning"}]}),
            json!({"type": "ptp"}),
        ],
        default_networks: vec!["mon".into()],
        primary_mode: mode,
        ..Config::default()
    }
}

#[test]
fn delegates_mode_first_is_primary_others_follow_for_every_pod() {
    let config = delegates_config(PrimaryMode::Plexus);
    let p = plan(&networks("a"), &config);
    assert_eq!(ifnames(&p), ["eth0", "net1", "net2", "net3"]);
    let [primary, mon, ptp, a] = &p.attachments[..] else {
        panic!("{p:?}")
    };
    assert!(primary.primary && !primary.runtime_managed);
    assert_eq!(
        (primary.network.as_str(), primary.origin),
        ("cbr0", Origin::Cluster),
        "F21: delegates keep their config name"
    );
    assert_eq!(primary.source, NetworkSource::Delegate { position: 0 });
    assert_eq!(primary.config.plugin_types, ["flannel"]);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&primary.config.bytes).unwrap(),
        config.delegates[0]
    );
    assert_eq!((mon.network.as_str(), mon.origin), ("mon", Origin::Default));
    assert_eq!(mon.config.form, ConfigForm::Conflist);
    assert_eq!(mon.source, NetworkSource::Delegate { position: 1 });
    assert_eq!(
        ptp.network, "delegates[2]",
        "no name is injected into a delegate; the position names it"
    );
    assert_eq!(ptp.config.name, "");
    assert_eq!(a.network, "apps/a");

    // defaultNetworks apply only with a clusterNetwork; delegates apply to system
    // namespaces too (systemNamespaces only filters defaultNetworks).
    let system = PodIdentity::new("kube-system", "dns", "");
    let p = resolve(&system, &networks(""), &config, &nads()).unwrap();
    assert_eq!(ifnames(&p), ["eth0", "net1", "net2"]);
}

#[test]
fn default_networks_apply_in_runtime_mode_without_cluster_network_or_delegates() {
    let config = Config {
        default_networks: vec!["mon".into()],
        ..Config::default()
    };
    let p = plan(&networks("a"), &config);
    assert_eq!(ifnames(&p), ["eth0", "net1", "net2"]);
    assert_eq!(p.attachments[1].network, "kube-system/mon");
}

#[test]
fn delegates_mode_in_runtime_mode_names_but_does_not_run_the_primary() {
    let p = plan(&networks(""), &delegates_config(PrimaryMode::Runtime));
    assert!(p.attachments[0].runtime_managed && p.attachments[0].primary);
    assert_eq!(p.attachments[0].network, "cbr0");
    assert!(!p.attachments[1].runtime_managed);
}

#[test]
fn delegates_are_ignored_when_a_cluster_network_is_set() {
    let config = Config {
        cluster_network: Some("cbr0".into()),
        ..delegates_config(PrimaryMode::Plexus)
    };
    let p = plan(&networks(""), &config);
    assert_eq!(p.attachments[0].network, "kube-system/cbr0");
    assert_eq!(
        p.attachments[1].network, "kube-system/mon",
        "defaultNetworks apply"
    );
    assert_eq!(p.attachments.len(), 2);
}

#[test]
fn pod_default_network_replaces_the_first_delegate_only() {
    let p = plan(
        &ann(&[(annotation::DEFAULT_NETWORK, "alt")]),
        &delegates_config(PrimaryMode::Plexus),
    );
    assert_eq!(
        p.attachments
            .iter()
            .map(|a| a.network.as_str())
            .collect::<Vec<_>>(),
        ["kube-system/alt", "mon", "delegates[2]"]
    );
    assert_eq!(p.attachments[0].origin, Origin::DefaultOverride);
}

#[test]
fn delegates_mode_rejections() {
    // Plexus must execute the primary and nothing names one: Multus's LoadNetConf error.
    let config = Config {
        primary_mode: PrimaryMode::Plexus,
        ..Config::default()
    };
    let e = fail(&networks(""), &config);
    assert!(matches!(e, Error::ClusterNetworkMissing));
    assert!(
        e.to_string()
            .starts_with("at least one delegate/clusterNetwork must be specified"),
        "{e}"
    );
    assert_eq!(e.kind(), "cluster-network-missing");
    // In runtime mode the runtime makes eth0: no error.
    plan(&networks(""), &Config::default());

    let config = Config {
        delegates: vec![json!({"type": "flannel"}), json!({"name": "x"})],
        primary_mode: PrimaryMode::Plexus,
        ..Config::default()
    };
    let e = fail(&networks(""), &config);
    assert_eq!(
        e.to_string(),
        "network delegates[1]: delegate must have the 'type' or 'plugin' field; accepted: a conf with \"type\" or a conflist with a non-empty \"plugins\" list"
    );
}

#[test]
fn cluster_network_conflist_path_brings_its_subdirectory_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("10-cbr0.conflist");
    std::fs::write(
        &file,
        r#"{"cniVersion":"1.0.0","name":"cbr0","plugins":[{"type":"flannel"}]}"#,
    )
    .unwrap();
    std::fs::create_dir(tmp.path().join("cbr0")).unwrap();
    std::fs::write(
        tmp.path().join("cbr0/portmap.conf"),
        r#"{"type":"portmap"}"#,
    )
    .unwrap();
    let config = Config {
        cluster_network: Some(file.display().to_string()),
        ..plexus_config()
    };
    let p = plan(&networks(""), &config);
    assert_eq!(p.attachments[0].config.plugin_types, ["flannel", "portmap"]);
    assert_eq!(p.attachments[0].network, "cbr0");
}

#[test]
fn configured_paths_that_do_not_exist_name_role_and_path() {
    for (role, config) in [
        (
            "clusterNetwork",
            Config {
                cluster_network: Some("/nonexistent/plexus/10-x.conflist".into()),
                ..plexus_config()
            },
        ),
        (
            "defaultNetworks",
            Config {
                default_networks: vec!["/nonexistent/plexus/mon.conf".into()],
                ..plexus_config()
            },
        ),
    ] {
        let e = fail(&networks(""), &config);
        assert!(
            matches!(e, Error::ConfiguredNetworkPathNotFound { role: r, .. } if r == role),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with(&format!("failed to get {role} /nonexistent/plexus/")),
            "{e}"
        );
        assert!(e.to_string().contains("accepted: a CNI config file"), "{e}");
        assert_eq!(e.kind(), "configured-network-not-found");
    }
    // A name that is neither a NAD nor a config in a missing confDir.
    let config = Config {
        cluster_network: Some("ghost".into()),
        conf_dir: "/nonexistent/plexus".into(),
        ..plexus_config()
    };
    let e = fail(&networks(""), &config);
    assert_eq!(
        e.to_string(),
        "failed to get clusterNetwork ghost in namespace kube-system: neither a network-attachment-definition kube-system/ghost nor a CNI config named ghost in /nonexistent/plexus"
    );
}

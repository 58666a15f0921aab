use super::*;

fn att(conf: serde_json::Value) -> PlannedAttachment {
    let bytes = serde_json::to_vec(&conf).unwrap();
    serde_json::from_value(serde_json::json!({
        "index": 1, "network": "default/n", "interface": "net1", "origin": "annotation",
        "primary": false, "source": {"kind": "nad", "namespace": "default", "name": "n"},
        "config": {"form": "conf", "name": "n", "cni_version": "1.0.0",
            "plugin_types": [conf["type"].clone()], "bytes": bytes},
    }))
    .unwrap()
}

#[test]
fn macvlan_with_host_local_is_native() {
    let c = classify(&att(serde_json::json!({
        "cniVersion":"1.0.0","name":"n","type":"macvlan","master":"eth9","mode":"vepa","mtu":1400,
        "ipam":{"type":"host-local","subnet":"10.1.0.0/24"},
        "dns":{"nameservers":["10.1.0.53"]}
    })))
    .expect("native");
    assert_eq!(c.kind.as_str(), "macvlan");
    assert!(matches!(c.ipam, Some(ipam::Config::HostLocal(_))));
    assert_eq!(c.dns.nameservers, vec!["10.1.0.53"]);
}

#[test]
fn unknown_keys_types_and_forms_go_to_exec() {
    let base =
        serde_json::json!({"cniVersion":"1.0.0","name":"n","type":"macvlan","master":"eth9"});
    assert!(classify(&att(base.clone())).is_some());
    let mut extra = base.clone();
    extra["linkInContainer"] = true.into();
    assert!(classify(&att(extra)).is_none());
    let mut ipam_extra = base.clone();
    ipam_extra["ipam"] = serde_json::json!({"type":"host-local","subnet":"10.0.0.0/24","x":1});
    assert!(classify(&att(ipam_extra)).is_none());
    let mut whereabouts = base.clone();
    whereabouts["ipam"] = serde_json::json!({"type":"whereabouts","range":"10.0.0.0/24"});
    assert!(classify(&att(whereabouts)).is_none());
    assert!(classify(&att(serde_json::json!({"type":"sriov","name":"n"}))).is_none());
    let mut forced = att(base.clone());
    forced.force_exec = true;
    assert!(classify(&forced).is_none());
    let mut args = att(base.clone());
    args.extra_cni_args = vec![("FOO".into(), "1".into())];
    assert!(classify(&args).is_none());
    // No master: the reference plugin picks the default-route link; left to exec.
    assert!(classify(&att(serde_json::json!({"type":"macvlan","name":"n"}))).is_none());
}

#[test]
fn requested_ips_and_mac_follow_capabilities_and_args() {
    let mut a = att(serde_json::json!({
        "cniVersion":"1.0.0","name":"n","type":"macvlan","master":"eth9","mac":"02:00:00:00:00:01",
        "capabilities":{"ips":true},
        "ipam":{"type":"static"}
    }));
    a.runtime_config.ips = vec!["10.2.0.5/24".into()];
    a.runtime_config.mac = Some("02:00:00:00:00:09".into());
    a.extra_cni_args = vec![("MAC".into(), "02:00:00:00:00:02".into())];
    let c = classify(&a).unwrap();
    assert_eq!(c.ips, vec!["10.2.0.5/24"]);
    // mac capability not declared: MAC= wins over the config key.
    assert_eq!(c.mac.unwrap().to_string(), "02:00:00:00:00:02");
    a.config.bytes = serde_json::to_vec(&serde_json::json!({
        "cniVersion":"1.0.0","name":"n","type":"macvlan","master":"eth9",
        "capabilities":{"mac":true}
    }))
    .unwrap();
    assert_eq!(
        classify(&a).unwrap().mac.unwrap().to_string(),
        "02:00:00:00:00:09"
    );
    // Port mappings requested and declared: only a chain can honour them.
    a.config.bytes = serde_json::to_vec(&serde_json::json!({
        "cniVersion":"1.0.0","name":"n","type":"macvlan","master":"eth9",
        "capabilities":{"portMappings":true}
    }))
    .unwrap();
    a.runtime_config.port_mappings = vec![plexus_core::plan::PortMapping {
        host_port: 80,
        container_port: 80,
        protocol: "tcp".into(),
        host_ip: String::new(),
    }];
    assert!(classify(&a).is_none());
}

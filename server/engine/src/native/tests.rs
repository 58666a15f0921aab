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
    assert_eq!(c.runtime_ips, vec!["10.2.0.5/24"]);
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

#[test]
fn bridge_host_device_vlan_keys() {
    let br = serde_json::json!({"cniVersion":"1.0.0","name":"n","type":"bridge","bridge":"br9",
        "isGateway":true,"hairpinMode":true,"mtu":1450,"args":{"cni":{"mac":"02:00:00:00:00:07"}},
        "ipam":{"type":"host-local","subnet":"10.3.0.0/24"}});
    let c = classify(&att(br.clone())).expect("native bridge");
    assert_eq!(c.kind.as_str(), "bridge");
    assert_eq!(c.mac.unwrap().to_string(), "02:00:00:00:00:07");
    let mut masq = br.clone();
    masq["ipMasq"] = true.into();
    assert!(
        classify(&att(masq)).is_none(),
        "ipMasq needs iptables: exec"
    );
    let mut spoof = br.clone();
    spoof["macspoofchk"] = true.into();
    assert!(classify(&att(spoof)).is_none());
    let mut mac_arg = att(br);
    mac_arg.extra_cni_args = vec![("MAC".into(), "02:00:00:00:00:08".into())];
    assert!(classify(&mac_arg).is_none(), "bridge does not read MAC=");

    let hd =
        serde_json::json!({"cniVersion":"1.0.0","name":"n","type":"host-device","device":"eth7"});
    assert_eq!(classify(&att(hd)).unwrap().kind.as_str(), "host-device");
    let by_pci = serde_json::json!({"cniVersion":"1.0.0","name":"n","type":"host-device","pciBusID":"0000:00:19.0"});
    assert!(classify(&att(by_pci)).is_none());

    let vlan = serde_json::json!({"cniVersion":"1.0.0","name":"n","type":"vlan","master":"eth0","vlanId":5});
    assert_eq!(classify(&att(vlan)).unwrap().kind.as_str(), "vlan");
    let ipvlan = serde_json::json!({"cniVersion":"1.0.0","name":"n","type":"ipvlan","master":"eth0","mode":"l3s"});
    assert_eq!(classify(&att(ipvlan)).unwrap().kind.as_str(), "ipvlan");
}

#[test]
fn conflists_go_to_exec() {
    let mut a =
        att(serde_json::json!({"cniVersion":"1.0.0","name":"n","type":"macvlan","master":"e"}));
    a.config.form = plexus_core::plan::ConfigForm::Conflist;
    assert!(classify(&a).is_none());
}

#[test]
fn dhcp_goes_native_on_macvlan_but_not_on_bridge_or_with_daemon_keys() {
    let mv = serde_json::json!({"cniVersion":"1.0.0","name":"n","type":"macvlan","master":"eth9",
        "ipam":{"type":"dhcp","timeout":5}});
    let c = classify(&att(mv.clone())).expect("native");
    assert!(matches!(c.ipam, Some(ipam::Config::Dhcp(_))));
    let mut daemon = mv;
    daemon["ipam"]["daemonSocketPath"] = "/run/cni/dhcp.sock".into();
    assert!(classify(&att(daemon)).is_none());
    let br = serde_json::json!({"cniVersion":"1.0.0","name":"n","type":"bridge","bridge":"br0",
        "ipam":{"type":"dhcp"}});
    assert!(classify(&att(br)).is_none());
}

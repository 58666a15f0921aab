use plexus_core::plan::PlannedAttachment;

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

/// Classifies `conf`, runs its static IPAM (pure) and plans its links.
fn plan_static(conf: serde_json::Value) -> (Result<LinkPlan>, Option<ipam::Allocation>) {
    let cfg = classify(&att(conf)).expect("native");
    let mut alloc = cfg.ipam.as_ref().map(|i| {
        ipam::allocate(
            i,
            &ipam_request(&cfg, "net1", "c1"),
            Path::new("/nonexistent"),
        )
        .expect("static allocation")
    });
    let plan = plan_links(&cfg, "net1", 7, alloc.as_mut());
    (plan, alloc)
}

#[test]
fn bridge_gateway_of_the_other_family_is_an_error_not_a_panic() {
    // issue 10: isGateway, static IPAM, an IPv6 address longer than /32 and a v4 gateway
    // panicked with "valid prefix" (after IPAM had run).
    let (plan, _) = plan_static(serde_json::json!({
        "cniVersion":"1.0.0","name":"n","type":"bridge","isGateway":true,
        "ipam":{"type":"static","addresses":[{"address":"fd00::5/64","gateway":"10.0.0.1"}]}
    }));
    let err = plan.expect_err("mixed families must be refused");
    assert!(matches!(err, Error::InvalidConfig { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("10.0.0.1") && msg.contains("fd00::5/64"),
        "{msg}"
    );
    assert!(msg.contains("same IP family"), "{msg}");
    // The other way round (a v6 gateway on a v4 address) is refused the same way
    // instead of putting a v6 address with a /24 on the bridge.
    let (plan, _) = plan_static(serde_json::json!({
        "cniVersion":"1.0.0","name":"n","type":"bridge","isGateway":true,
        "ipam":{"type":"static","addresses":[{"address":"10.0.0.5/24","gateway":"fd00::1"}]}
    }));
    assert!(matches!(plan, Err(Error::InvalidConfig { .. })), "{plan:?}");
}

#[test]
fn bridge_gateway_of_the_last_address_wraps_instead_of_overflowing() {
    // calcGatewayIP of 255.255.255.255/32 overflowed `u32 + 1` (a panic in debug builds).
    for address in [
        "255.255.255.255/32",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
    ] {
        let (plan, alloc) = plan_static(serde_json::json!({
            "cniVersion":"1.0.0","name":"n","type":"bridge","isDefaultGateway":true,
            "ipam":{"type":"static","addresses":[{"address":address}]}
        }));
        let Ok(LinkPlan::Bridge(spec)) = plan else {
            panic!("{address}: {plan:?}")
        };
        assert_eq!(spec.gateways.len(), 1, "{address}");
        assert!(
            spec.gateways[0].addr().is_unspecified(),
            "{address}: wraps to 0"
        );
        assert_eq!(
            alloc.unwrap().routes.len(),
            1,
            "{address}: default route added"
        );
    }
}

#[test]
fn bridge_plan_takes_gateways_and_default_routes_from_ipam() {
    let (plan, alloc) = plan_static(serde_json::json!({
        "cniVersion":"1.0.0","name":"n","type":"bridge","bridge":"br9","isDefaultGateway":true,
        "vlan":12,"mtu":1400,
        "ipam":{"type":"static","addresses":[
            {"address":"10.9.0.5/24"},{"address":"fd09::5/64","gateway":"fd09::fe"}]}
    }));
    let Ok(LinkPlan::Bridge(spec)) = plan else {
        panic!("{plan:?}")
    };
    assert_eq!(spec.bridge, "br9");
    assert_eq!(spec.vlan, Some(12));
    assert_eq!(spec.link.mtu, Some(1400));
    assert_eq!(spec.link.group, 7);
    let gws: Vec<String> = spec.gateways.iter().map(|g| g.to_string()).collect();
    assert_eq!(gws, ["10.9.0.1/24", "fd09::fe/64"]);
    let routes: Vec<String> = alloc
        .unwrap()
        .routes
        .iter()
        .map(|r| format!("{} via {:?}", r.dst, r.gw))
        .collect();
    assert_eq!(
        routes,
        ["0.0.0.0/0 via Some(10.9.0.1)", "::/0 via Some(fd09::fe)"]
    );
}

#[test]
fn vlan_ids_above_4094_are_refused_by_bridge_and_vlan() {
    let (plan, _) = plan_static(serde_json::json!({
        "cniVersion":"1.0.0","name":"n","type":"bridge","vlan":4095
    }));
    let msg = plan.expect_err("4095 is reserved").to_string();
    assert!(msg.contains("between 0 and 4094"), "{msg}");
    let (plan, _) = plan_static(serde_json::json!({
        "cniVersion":"1.0.0","name":"n","type":"vlan","master":"eth0","vlanId":-1
    }));
    assert!(matches!(plan, Err(Error::InvalidConfig { .. })), "{plan:?}");
    let (plan, _) = plan_static(serde_json::json!({
        "cniVersion":"1.0.0","name":"n","type":"macvlan","master":"eth0","mode":"source"
    }));
    assert!(matches!(plan, Err(Error::InvalidConfig { .. })), "{plan:?}");
}

#[test]
fn network_names_that_leave_the_lease_directory_go_to_exec() {
    // The name is the host-local lease directory under the data dir: `/etc/x` would make
    // `<dataDir>.join(name)` the absolute /etc/x, `..` climbs out of it.
    for name in ["/etc/plexus-x", "../../etc/x", "a/b", "..", ".", ""] {
        let conf = serde_json::json!({"cniVersion":"1.0.0","name":name,"type":"macvlan",
            "master":"eth0","ipam":{"type":"host-local","subnet":"10.4.0.0/24"}});
        assert!(
            classify(&att(conf)).is_none(),
            "{name:?} must not run natively"
        );
    }
    let conf = serde_json::json!({"cniVersion":"1.0.0","name":"lab.net-1_x","type":"macvlan",
        "master":"eth0","ipam":{"type":"host-local","subnet":"10.4.0.0/24"}});
    assert!(classify(&att(conf)).is_some());
}

#[test]
fn dhcp_goes_native_on_macvlan_and_plain_bridge_but_not_gateway_bridge_or_daemon_keys() {
    let mv = serde_json::json!({"cniVersion":"1.0.0","name":"n","type":"macvlan","master":"eth9",
        "ipam":{"type":"dhcp","timeout":5}});
    let c = classify(&att(mv.clone())).expect("native");
    assert!(matches!(c.ipam, Some(ipam::Config::Dhcp(_))));
    let mut daemon = mv;
    daemon["ipam"]["daemonSocketPath"] = "/run/cni/dhcp.sock".into();
    assert!(classify(&att(daemon)).is_none());
    let br = serde_json::json!({"cniVersion":"1.0.0","name":"n","type":"bridge","bridge":"br0",
        "ipam":{"type":"dhcp"}});
    let c = classify(&att(br.clone())).expect("a plain bridge with dhcp is native");
    assert!(matches!(c.ipam, Some(ipam::Config::Dhcp(_))));
    for key in ["isGateway", "isDefaultGateway"] {
        let mut gw = br.clone();
        gw[key] = true.into();
        assert!(
            classify(&att(gw)).is_none(),
            "{key} + dhcp stays on the exec path"
        );
    }
}

#[test]
fn a_missing_named_link_says_which_key_and_what_to_do() {
    let missing = |name: &str| plexus_netlink::Error::LinkNotFound {
        name: name.into(),
        netns: "the host netns".into(),
    };
    let err = nl_named(
        "default/iot",
        "master",
        "eth9",
        "create macvlan net1 on eth9".into(),
    )(missing("eth9"));
    assert_eq!(err.reason(), "link_missing");
    let msg = err.to_string();
    assert!(
        msg.contains("default/iot") && msg.contains("master \"eth9\"") && msg.contains("`master`"),
        "{msg}"
    );
    // Another link not found (not the one the config names) stays a netlink error.
    let other = nl_named(
        "default/iot",
        "master",
        "eth9",
        "create macvlan net1 on eth9".into(),
    )(missing("net1"));
    assert_eq!(other.reason(), "netlink");
}

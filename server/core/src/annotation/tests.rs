//! Cases from the Multus behaviour reference (F2–F6, §1.2a) and every rejection.

use std::net::IpAddr;

use super::*;

fn err(value: &str) -> Error {
    parse_networks(value, "pods").expect_err(value)
}

fn ok(value: &str) -> Vec<Selection> {
    parse_networks(value, "pods").unwrap_or_else(|e| panic!("{value}: {e}"))
}

/// (position, reason fragment) of an InvalidSelection.
fn selection_err(value: &str) -> (usize, String, String) {
    match err(value) {
        Error::InvalidSelection {
            position,
            item,
            reason,
            annotation,
        } => {
            assert_eq!(annotation, NETWORKS);
            (position, item, reason)
        }
        other => panic!("{value}: expected InvalidSelection, got {other:?}"),
    }
}

#[test]
fn absent_or_empty_selects_nothing() {
    assert!(ok("").is_empty());
    assert!(ok("   ").is_empty());
    assert!(ok("[]").is_empty());
}

#[test]
fn comma_list_with_namespaces_and_interfaces() {
    let s = ok("macvlan, iot/ha-net@net7 ,other/bridge");
    assert_eq!(s.len(), 3);
    assert_eq!(
        (s[0].namespace.as_str(), s[0].name.as_str()),
        ("pods", "macvlan")
    );
    assert_eq!(s[0].interface, None);
    assert_eq!(s[0].position, 1);
    assert_eq!(s[1].network(), "iot/ha-net");
    assert_eq!(s[1].interface.as_deref(), Some("net7"));
    assert_eq!(s[2].network(), "other/bridge");
    assert_eq!(s[2].position, 3);
}

#[test]
fn comma_list_interface_is_not_dns_checked_like_multus() {
    let s = ok("net1@my_interface");
    assert_eq!(s[0].interface.as_deref(), Some("my_interface"));
}

#[test]
fn comma_list_trims_spaces_around_at_and_slash_like_multus() {
    for value in [
        "net1@ eth1",
        "net1 @eth1",
        "net1 @ eth1",
        " net1@eth1 ",
        "pods / net1 @ eth1",
    ] {
        let s = ok(value);
        assert_eq!(
            (
                s[0].namespace.as_str(),
                s[0].name.as_str(),
                s[0].interface.as_deref()
            ),
            ("pods", "net1", Some("eth1")),
            "{value:?}"
        );
    }
    // Trimmed to nothing is still an empty interface name, and inner spaces stay invalid.
    let (_, _, reason) = selection_err("net1@ ");
    assert!(reason.contains("interface name is empty"), "{reason}");
    let (_, _, reason) = selection_err("net1@e th1");
    assert!(reason.contains("whitespace"), "{reason}");
}

#[test]
fn comma_list_duplicate_networks_are_allowed() {
    assert_eq!(ok("a,a").len(), 2);
}

#[test]
fn comma_list_rejections_name_position_and_item() {
    let (pos, item, reason) = selection_err("a,b,");
    assert_eq!((pos, item.as_str()), (3, ""));
    assert!(reason.contains("empty item"), "{reason}");

    let (pos, _, reason) = selection_err("a,,b");
    assert_eq!(pos, 2);
    assert!(reason.contains("empty item"));

    let (pos, item, reason) = selection_err("a,x/y/z");
    assert_eq!((pos, item.as_str()), (2, "x/y/z"));
    assert!(reason.contains("failed at '/'"), "{reason}");

    let (_, _, reason) = selection_err("ns/a@b@c");
    assert!(reason.contains("failed at '@'"), "{reason}");

    let (_, _, reason) = selection_err("Upper");
    assert!(reason.contains("lower case alphanumeric"), "{reason}");

    let (_, _, reason) = selection_err("-bad");
    assert!(reason.contains("network name"), "{reason}");

    let (_, _, reason) = selection_err("Bad_NS/net");
    assert!(reason.contains("namespace"), "{reason}");

    let (_, _, reason) = selection_err("/net");
    assert!(reason.contains("namespace before '/' is empty"), "{reason}");

    let (_, _, reason) = selection_err("ns/");
    assert!(reason.contains("network name is empty"), "{reason}");

    let (_, _, reason) = selection_err("net@");
    assert!(reason.contains("interface name is empty"), "{reason}");

    let (_, _, reason) = selection_err("net@averyveryverylongname");
    assert!(reason.contains("longer than 15"), "{reason}");

    let (_, _, reason) = selection_err("net@a b");
    assert!(reason.contains("whitespace"), "{reason}");

    let (_, _, reason) = selection_err("net@a:b");
    assert!(reason.contains("':'"), "{reason}");

    let (_, _, reason) = selection_err("net@..");
    assert!(reason.contains("not a valid name"), "{reason}");
}

#[test]
fn duplicate_interface_names_are_rejected() {
    let (pos, _, reason) = selection_err("a@net5,b,c@net5");
    assert_eq!(pos, 3);
    assert!(reason.contains("item 1"), "{reason}");
    let (pos, _, _) =
        selection_err(r#"[{"name":"a","interface":"x1"},{"name":"b","interface":"x1"}]"#);
    assert_eq!(pos, 2);
}

#[test]
fn json_detection_on_any_bracket_brace_or_quote() {
    // F2: a quote alone selects JSON, which then fails to parse.
    assert!(matches!(err("\"a\""), Error::InvalidAnnotation { .. }));
    assert!(matches!(err("a,{b"), Error::InvalidAnnotation { .. }));
}

#[test]
fn json_element_with_every_key() {
    let s = ok(r#"[{
        "name": "ha-iot", "namespace": "iot", "interface": "iot0",
        "ips": ["192.168.50.10/24", "2001:db8::10"], "mac": "02:00:5e:10:00:01",
        "infiniband-guid": "00:11:22:33:44:55:66:77",
        "portMappings": [{"hostPort": 8123, "containerPort": 8123, "protocol": "TCP"}],
        "bandwidth": {"ingressRate": 1000, "egressBurst": 5},
        "cni-args": {"foo": "bar", "n": 1},
        "default-route": ["192.168.50.1"],
        "deviceID": "0000:03:00.1",
        "ipam-claim-reference": "claim-a",
        "unknownKey": {"ignored": true}
    }]"#);
    let e = &s[0];
    assert_eq!(e.network(), "iot/ha-iot");
    assert_eq!(e.interface.as_deref(), Some("iot0"));
    assert_eq!(e.ips, ["192.168.50.10/24", "2001:db8::10"]);
    assert_eq!(e.mac.as_deref(), Some("02:00:5e:10:00:01"));
    assert_eq!(
        e.infiniband_guid.as_deref(),
        Some("00:11:22:33:44:55:66:77")
    );
    assert_eq!(e.port_mappings.len(), 1);
    assert_eq!(e.port_mappings[0].host_port, 8123);
    assert_eq!(e.bandwidth.as_ref().unwrap().ingress_rate, 1000);
    assert_eq!(e.bandwidth.as_ref().unwrap().egress_burst, 5);
    assert_eq!(e.cni_args.as_ref().unwrap()["foo"], "bar");
    assert_eq!(
        e.default_route,
        Some(vec!["192.168.50.1".parse::<IpAddr>().unwrap()])
    );
    assert_eq!(e.device_id.as_deref(), Some("0000:03:00.1"));
    assert_eq!(e.ipam_claim_reference.as_deref(), Some("claim-a"));
}

#[test]
fn json_defaults_and_aliases() {
    let s = ok(r#"[{"name":"a"},{"name":"b","interfaceRequest":"old1"},
                  {"name":"c","interface":"new1","interfaceRequest":"old2"},
                  {"name":"d","default-route":[]},{"name":"e","mac":"","cni-args":null}]"#);
    assert_eq!(s[0].namespace, "pods");
    assert_eq!(s[0].default_route, None);
    assert_eq!(s[1].interface.as_deref(), Some("old1"));
    assert_eq!(s[2].interface.as_deref(), Some("new1"));
    assert_eq!(s[3].default_route, Some(vec![]));
    assert_eq!(s[4].mac, None);
    assert_eq!(s[4].cni_args, None);
}

#[test]
fn json_keys_match_case_insensitively_like_go() {
    let s = ok(r#"[{"Name":"a","NameSpace":"x","DeviceId":"d1"}]"#);
    assert_eq!(s[0].network(), "x/a");
    assert_eq!(s[0].device_id.as_deref(), Some("d1"));
}

#[test]
fn json_whole_value_rejections() {
    let e = err(r#"{"name":"a"}"#);
    assert!(e.to_string().contains("bare JSON object"), "{e}");
    let e = err(r#"[{"name":"a"}"#);
    assert!(e.to_string().contains("invalid JSON"), "{e}");
    let e = err(r#""just a string""#);
    assert!(e.to_string().contains("expected a JSON list"), "{e}");
}

#[test]
fn json_element_rejections() {
    let cases: &[(&str, &str)] = &[
        (r#"["macvlan"]"#, "expected a JSON object"),
        (r#"[{"namespace":"x"}]"#, "\"name\" is missing"),
        (r#"[{"name":""}]"#, "\"name\" is missing"),
        (r#"[{"name":"Bad/Name"}]"#, "not a Kubernetes object name"),
        (r#"[{"name":"a","namespace":"a/b"}]"#, "namespace"),
        (r#"[{"name":5}]"#, "must be a string"),
        (
            r#"[{"name":"a","interface":"this-is-way-too-long"}]"#,
            "longer than 15",
        ),
        (r#"[{"name":"a","interface":"a/b"}]"#, "'/'"),
        (r#"[{"name":"a","interface":"."}]"#, "not a valid name"),
        (r#"[{"name":"a","interfaceRequest":"a b"}]"#, "whitespace"),
        (r#"[{"name":"a","interface":"net\u0000"}]"#, "NUL"),
        (
            r#"[{"name":"a","ips":["10.0.0.300/24"]}]"#,
            "failed to parse CIDR",
        ),
        (
            r#"[{"name":"a","ips":["nope"]}]"#,
            "failed to parse IP address",
        ),
        (
            r#"[{"name":"a","ips":"10.0.0.1"}]"#,
            "must be a list of strings",
        ),
        (
            r#"[{"name":"a","mac":"02:00:00:00:00"}]"#,
            "failed to parse MAC",
        ),
        (
            r#"[{"name":"a","mac":"zz:00:00:00:00:01"}]"#,
            "failed to parse MAC",
        ),
        (
            r#"[{"name":"a","infiniband-guid":"02:00:00:00:00:01"}]"#,
            "infiniband GUID",
        ),
        (
            r#"[{"name":"a","default-route":["10.0.0.1/24"]}]"#,
            "invalid IP address",
        ),
        (
            r#"[{"name":"a","default-route":"10.0.0.1"}]"#,
            "must be a list of strings",
        ),
        (r#"[{"name":"a","cni-args":"x=y"}]"#, "must be an object"),
        (
            r#"[{"name":"a","portMappings":[{"hostPort":0,"containerPort":80}]}]"#,
            "hostPort is 0",
        ),
        (
            r#"[{"name":"a","portMappings":[{"hostPort":80,"containerPort":80,"protocol":"icmp"}]}]"#,
            "protocol",
        ),
        (
            r#"[{"name":"a","portMappings":[{"hostPort":80,"containerPort":80,"hostIP":"x"}]}]"#,
            "hostIP",
        ),
        (
            r#"[{"name":"a","portMappings":[{"hostPort":"80"}]}]"#,
            "accepted: [{\"hostPort\":8080",
        ),
        (
            r#"[{"name":"a","bandwidth":{"ingressRate":-1}}]"#,
            "accepted: {\"ingressRate\":N",
        ),
    ];
    for (value, want) in cases {
        let (pos, _, reason) = selection_err(value);
        assert_eq!(pos, 1, "{value}");
        assert!(reason.contains(want), "{value}: {reason:?} lacks {want:?}");
    }
    let (pos, item, _) = selection_err(r#"[{"name":"ok"},{"name":"a","mac":"x"}]"#);
    assert_eq!(pos, 2);
    assert!(item.contains("\"mac\""), "{item}");
}

#[test]
fn hwaddr_forms_like_go_parse_mac() {
    assert_eq!(parse_hwaddr("02:00:5e:10:00:01").unwrap().len(), 6);
    assert_eq!(parse_hwaddr("02-00-5E-10-00-01").unwrap().len(), 6);
    assert_eq!(parse_hwaddr("0200.5e10.0001").unwrap().len(), 6);
    assert_eq!(parse_hwaddr("00:11:22:33:44:55:66:77").unwrap().len(), 8);
    assert_eq!(
        parse_hwaddr("00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01")
            .unwrap()
            .len(),
        20
    );
    for bad in [
        "",
        "02:00:5e:10:00",
        "02:00-5e:10:00:01",
        "0200.5e10",
        "02:00:5e:10:00:0g",
        "02:00:5e:10:00:001",
    ] {
        assert_eq!(parse_hwaddr(bad), None, "{bad}");
    }
}

#[test]
fn size_and_count_limits() {
    let big = "a".repeat(MAX_ANNOTATION_BYTES + 1);
    let e = err(&big);
    assert!(e.to_string().contains("bytes"), "{e}");
    let many = vec!["a"; MAX_SELECTIONS + 1].join(",");
    let e = err(&many);
    assert!(e.to_string().contains("at most 128"), "{e}");
    let many_json = format!(
        "[{}]",
        vec![r#"{"name":"a"}"#; MAX_SELECTIONS + 1].join(",")
    );
    assert!(matches!(err(&many_json), Error::InvalidAnnotation { .. }));
    assert_eq!(
        ok(&vec!["a"; MAX_SELECTIONS].join(",")).len(),
        MAX_SELECTIONS
    );
}

#[test]
fn default_network_defaults_to_multus_namespace() {
    let s = parse_default_network("calico", "kube-system")
        .unwrap()
        .unwrap();
    assert_eq!(s.network(), "kube-system/calico");
    let s = parse_default_network(r#"[{"name":"x","namespace":"n"}]"#, "kube-system")
        .unwrap()
        .unwrap();
    assert_eq!(s.network(), "n/x");
    assert_eq!(parse_default_network("", "kube-system").unwrap(), None);
    let e = parse_default_network("a,b", "kube-system").unwrap_err();
    assert!(matches!(e, Error::MultipleDefaultNetworks { .. }));
    assert!(
        e.to_string()
            .starts_with("more than one default network is specified: a,b ("),
        "{e}"
    );
    assert!(e.to_string().contains("exactly one network"), "{e}");
    let e = parse_default_network("a@", "kube-system").unwrap_err();
    match e {
        Error::InvalidSelection { annotation, .. } => assert_eq!(annotation, DEFAULT_NETWORK),
        other => panic!("{other:?}"),
    }
}

#[test]
fn hotplug_selection_accepts_one_element_in_any_form() {
    let s = parse_selection("iot/ha@net9", "pods").unwrap();
    assert_eq!(
        (s.network(), s.interface.as_deref()),
        ("iot/ha".into(), Some("net9"))
    );
    let s = parse_selection(
        r#" {"name":"ha","interface":"x1","ips":["10.0.0.2/24"]}"#,
        "pods",
    )
    .unwrap();
    assert_eq!(s.network(), "pods/ha");
    assert_eq!(s.ips, ["10.0.0.2/24"]);
    let s = parse_selection(r#"[{"name":"ha"}]"#, "pods").unwrap();
    assert_eq!(s.name, "ha");
    for bad in ["a,b", "", "[]", r#"[{"name":"a"},{"name":"b"}]"#] {
        let e = parse_selection(bad, "pods").unwrap_err();
        assert!(e.to_string().contains("exactly one network"), "{bad}: {e}");
    }
    assert!(matches!(
        parse_selection(r#"{"name":"a""#, "pods"),
        Err(Error::InvalidAnnotation { .. })
    ));
}

#[test]
fn annotations_trait_reads_common_maps() {
    let mut h = std::collections::HashMap::new();
    h.insert(NETWORKS.to_string(), "a".to_string());
    assert_eq!(h.annotation(NETWORKS), Some("a"));
    let b: BTreeMap<String, String> = h.into_iter().collect();
    assert_eq!(b.annotation(NETWORKS), Some("a"));
    let pairs: &[(&str, &str)] = &[(DEFAULT_NETWORK, "x")];
    assert_eq!(pairs.annotation(DEFAULT_NETWORK), Some("x"));
    assert_eq!(pairs.annotation(NETWORKS), None);
}

#[test]
fn comma_form_caps_name_lengths_like_the_json_form() {
    // Found by the `annotation` fuzz target: the comma form took a 120-byte namespace
    // that the JSON form of the same selection refuses.
    let long_ns = format!("def{}aut", "l".repeat(120));
    let (position, _, reason) = selection_err(&format!("{long_ns}/lab-bridge,net3"));
    assert_eq!(position, 1);
    assert!(reason.contains("at most 63"), "{reason}");
    let json = format!(r#"[{{"name":"lab-bridge","namespace":"{long_ns}"}}]"#);
    assert!(parse_networks(&json, "pods").is_err());
    let (_, _, reason) = selection_err(&"a".repeat(254));
    assert!(reason.contains("at most 253"), "{reason}");
    let max_ns = "n".repeat(63);
    assert_eq!(
        ok(&format!("{max_ns}/{}", "a".repeat(253)))[0].namespace,
        max_ns
    );
}

//! Golden tests of the CNI wire formats: exact JSON text in and out of every version.

use super::*;

const R020: &str = r#"{"cniVersion":"0.2.0","ip4":{"ip":"10.1.0.5/16","gateway":"10.1.0.1","routes":[{"dst":"0.0.0.0/0"}]},"ip6":{"ip":"2001:db8::5/64","routes":[{"dst":"::/0","gw":"2001:db8::1"}]},"dns":{"nameservers":["10.1.0.1"]}}"#;

const R040: &str = r#"{"cniVersion":"0.4.0","interfaces":[{"name":"cni0","mac":"0a:58:0a:01:00:01"},{"name":"veth1234","mac":"3e:aa:bb:cc:dd:ee"},{"name":"eth0","mac":"0a:58:0a:01:00:05","sandbox":"/var/run/netns/cni-1"}],"ips":[{"version":"4","interface":2,"address":"10.1.0.5/16","gateway":"10.1.0.1"}],"routes":[{"dst":"0.0.0.0/0","gw":"10.1.0.1"}],"dns":{}}"#;

const R110: &str = r#"{"cniVersion":"1.1.0","interfaces":[{"name":"net1","mac":"86:1d:96:ff:55:0d","mtu":9000,"sandbox":"/run/netns/p","socketPath":"/run/vhu.sock","pciID":"0000:03:00.1"}],"ips":[{"interface":0,"address":"192.168.1.205/24","gateway":"192.168.1.1"},{"interface":0,"address":"fd00::5/64"},{"interface":0,"address":"192.168.2.9/24"}],"routes":[{"dst":"10.0.0.0/8","gw":"192.168.1.1","mtu":1400,"advmss":1360,"priority":10,"table":100,"scope":0}],"dns":{"nameservers":["192.168.1.1"],"domain":"example.org","search":["a.example.org"],"options":["ndots:2"]}}"#;

#[test]
fn v020_parses_and_renders_every_family() {
    let r = Result::parse(R020.as_bytes(), "0.2.0").unwrap();
    assert_eq!(r.cni_version, "0.2.0");
    assert_eq!(r.ips.len(), 2);
    assert!(r.ips.iter().all(|ip| ip.interface.is_none()));
    assert_eq!(r.render("0.2.0").unwrap(), R020);
    assert_eq!(r.render("0.1.0").unwrap(), R020.replace("0.2.0", "0.1.0"));
    assert_eq!(
        r.render("1.0.0").unwrap(),
        r#"{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.5/16","gateway":"10.1.0.1"},{"address":"2001:db8::5/64"}],"routes":[{"dst":"0.0.0.0/0"},{"dst":"::/0","gw":"2001:db8::1"}],"dns":{"nameservers":["10.1.0.1"]}}"#
    );
    assert_eq!(
        r.render("0.3.1").unwrap(),
        r#"{"cniVersion":"0.3.1","ips":[{"version":"4","address":"10.1.0.5/16","gateway":"10.1.0.1"},{"version":"6","address":"2001:db8::5/64"}],"routes":[{"dst":"0.0.0.0/0"},{"dst":"::/0","gw":"2001:db8::1"}],"dns":{"nameservers":["10.1.0.1"]}}"#
    );
}

#[test]
fn v040_round_trips_and_drops_version_in_1x() {
    let r = Result::parse(R040.as_bytes(), "1.0.0").unwrap();
    assert_eq!(r.cni_version, "0.4.0");
    assert_eq!(r.interfaces[2].sandbox, "/var/run/netns/cni-1");
    assert_eq!(r.ips[0].interface, Some(2));
    assert_eq!(r.render("0.4.0").unwrap(), R040);
    assert_eq!(
        r.render("1.0.0").unwrap(),
        R040.replace("0.4.0", "1.0.0")
            .replace(r#""version":"4","#, "")
    );
    for v in ["0.3.0", "0.3.1"] {
        assert_eq!(r.render(v).unwrap(), R040.replace("0.4.0", v));
    }
}

#[test]
fn v110_down_to_040_loses_interface_extras_keeps_route_fields() {
    let r = Result::parse(R110.as_bytes(), "1.1.0").unwrap();
    assert_eq!(r.render("1.1.0").unwrap(), R110);
    assert_eq!(r.render("1.0.0").unwrap(), R110.replace("1.1.0", "1.0.0"));
    assert_eq!(
        r.render("0.4.0").unwrap(),
        r#"{"cniVersion":"0.4.0","interfaces":[{"name":"net1","mac":"86:1d:96:ff:55:0d","sandbox":"/run/netns/p"}],"ips":[{"version":"4","interface":0,"address":"192.168.1.205/24","gateway":"192.168.1.1"},{"version":"6","interface":0,"address":"fd00::5/64"},{"version":"4","interface":0,"address":"192.168.2.9/24"}],"routes":[{"dst":"10.0.0.0/8","gw":"192.168.1.1","mtu":1400,"advmss":1360,"priority":10,"table":100,"scope":0}],"dns":{"nameservers":["192.168.1.1"],"domain":"example.org","search":["a.example.org"],"options":["ndots:2"]}}"#
    );
    let back = r.convert("0.4.0").unwrap();
    assert_eq!(back.cni_version, "0.4.0");
    assert_eq!(back.interfaces[0].mtu, None);
    assert_eq!(back.interfaces[0].pci_id, "");
}

#[test]
fn down_to_020_takes_first_address_per_family_and_routes_by_family() {
    let r = Result::parse(R110.as_bytes(), "1.1.0").unwrap();
    assert_eq!(
        r.render("0.2.0").unwrap(),
        r#"{"cniVersion":"0.2.0","ip4":{"ip":"192.168.1.205/24","gateway":"192.168.1.1","routes":[{"dst":"10.0.0.0/8","gw":"192.168.1.1"}]},"ip6":{"ip":"fd00::5/64"},"dns":{"nameservers":["192.168.1.1"],"domain":"example.org","search":["a.example.org"],"options":["ndots:2"]}}"#
    );
}

#[test]
fn down_to_020_without_addresses_fails() {
    let r = Result::parse(
        br#"{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}]}"#,
        "",
    )
    .unwrap();
    let err = r.render("0.2.0").unwrap_err();
    assert!(matches!(err, Error::ConvertResult { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "cannot convert cni result to version \"0.2.0\": no valid ip addresses"
    );
}

#[test]
fn missing_version_takes_the_config_version() {
    let r = Result::parse(
        br#"{"ips":[{"version":"4","address":"10.0.0.2/24"}]}"#,
        "0.3.1",
    )
    .unwrap();
    assert_eq!(r.cni_version, "0.3.1");
    let r = Result::parse(
        br#"{"cniVersion":"","ips":[{"address":"10.0.0.2/24"}]}"#,
        "1.0.0",
    )
    .unwrap();
    assert_eq!(r.cni_version, "1.0.0");
    // No config version either: libcni's implicit 0.1.0, i.e. the ip4 shape.
    let r = Result::parse(br#"{"ip4":{"ip":"10.0.0.2/24"}}"#, "").unwrap();
    assert_eq!(r.cni_version, "0.1.0");
    assert_eq!(r.ips.len(), 1);
}

#[test]
fn null_output_is_an_empty_result() {
    let r = Result::parse(b"null", "1.0.0").unwrap();
    assert_eq!(r.cni_version, "1.0.0");
    assert_eq!(
        r.render("1.0.0").unwrap(),
        r#"{"cniVersion":"1.0.0","dns":{}}"#
    );
}

#[test]
fn unsupported_and_malformed_results_fail() {
    let err = Result::parse(br#"{"cniVersion":"2.0.0"}"#, "1.0.0").unwrap_err();
    assert!(matches!(err, Error::UnsupportedVersion { ref version } if version == "2.0.0"));
    assert!(err.to_string().contains("supported: 0.1.0, 0.2.0"), "{err}");
    let err =
        Result::parse(br#"{"cniVersion":"1.0.0","ips":[{"address":"nope"}]}"#, "").unwrap_err();
    assert!(matches!(err, Error::ParseResult { .. }), "{err}");
    assert!(Result::parse(b"not json", "1.0.0").is_err());
    assert!(Result::parse(b"[1]", "1.0.0").is_err());
    assert!(matches!(
        Result::default().render("9.9.9"),
        Err(Error::UnsupportedVersion { .. })
    ));
}

#[test]
fn go_lenient_fields() {
    // Go reads "" as a nil IP and writes int 0 as absent.
    let r = Result::parse(
        br#"{"cniVersion":"1.0.0","interfaces":[{"name":"a","mtu":0}],"ips":[{"address":"10.0.0.2/24","gateway":""}],"routes":[{"dst":"0.0.0.0/0","gw":null,"mtu":0}],"extra":1}"#,
        "",
    )
    .unwrap();
    assert_eq!(r.ips[0].gateway, None);
    assert_eq!(
        r.render("1.0.0").unwrap(),
        r#"{"cniVersion":"1.0.0","interfaces":[{"name":"a"}],"ips":[{"address":"10.0.0.2/24"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}"#
    );
}

#[test]
fn relabel_between_1_0_and_1_1() {
    let r = Result::parse(R110.as_bytes(), "").unwrap();
    let c = r.convert("1.0.0").unwrap();
    assert_eq!(c.cni_version, "1.0.0");
    assert_eq!(
        Result {
            cni_version: r.cni_version.clone(),
            ..c
        },
        r
    );
}

#[test]
fn versions_compare_numerically() {
    assert!(version::at_least("0.10.0", "0.4.0").unwrap());
    assert!(!version::at_least("0.3.1", "0.4.0").unwrap());
    assert!(version::at_least("1", "1.0.0").unwrap());
    assert!(version::parse("1.0.0.0").is_err());
    assert!(version::parse("1.x").is_err());
    assert!(version::parse("").is_err());
    assert_eq!(
        version::highest_supported(["0.4.0", "1.1.0", "1.0.0", "2.0.0"]),
        Some("1.1.0")
    );
    assert_eq!(version::highest_supported(["9.0.0"]), None);
}

#[test]
fn config_version_defaults_to_0_1_0() {
    assert_eq!(version::of_config(br#"{"name":"x"}"#).unwrap(), "0.1.0");
    assert_eq!(
        version::of_config(br#"{"cniVersion":""}"#).unwrap(),
        "0.1.0"
    );
    assert_eq!(
        version::of_config(br#"{"cniVersion":"0.4.0"}"#).unwrap(),
        "0.4.0"
    );
    assert!(version::of_config(br#"{"cniVersion":4}"#).is_err());
    assert!(version::of_config(b"[]").is_err());
}

#[test]
fn version_info_golden() {
    assert_eq!(
        VersionInfo::plexus("1.0.0").render(),
        r#"{"cniVersion":"1.0.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}"#
    );
    let info = VersionInfo::parse(br#"{"cniVersion":"0.2.0"}"#).unwrap();
    assert_eq!(info.supported_versions, ["0.1.0", "0.2.0"]);
    assert!(VersionInfo::parse(br#"{"cniVersion":"0.4.0"}"#).is_err());
    assert!(VersionInfo::parse(br#"{"supportedVersions":["1.0.0"]}"#).is_err());
    let info =
        VersionInfo::parse(br#"{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}"#)
            .unwrap();
    assert!(info.supports("0.4.0") && !info.supports("1.1.0"));
    assert!(VersionInfo::legacy().supports("0.1.0"));
}

#[test]
fn cni_args_parse_and_render() {
    let text = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;MAC=";
    let args = CniArgs::parse(text).unwrap();
    assert_eq!(args.get("K8S_POD_NAME"), Some("web-0"));
    assert_eq!(args.get("MAC"), Some(""));
    assert!(args.ignore_unknown());
    assert_eq!(args.render(), text);
    assert!(CniArgs::parse("").unwrap().is_empty());
    for bad in ["A", "A=1;", "A=1=2", ";"] {
        let err = CniArgs::parse(bad).unwrap_err();
        assert!(matches!(err, Error::ParseCniArgs { .. }), "{bad}: {err}");
    }
    let mut args = CniArgs::new();
    args.set("IgnoreUnknown", "true").unwrap();
    args.set("IP", "10.0.0.2/24,fd00::2/64").unwrap();
    args.set("IgnoreUnknown", "1").unwrap();
    assert_eq!(args.render(), "IgnoreUnknown=1;IP=10.0.0.2/24,fd00::2/64");
    assert!(args.set("A", "b;c").is_err());
    assert!(args.set("", "x").is_err());
    assert!(args.set("A=", "x").is_err());
    assert!(!CniArgs::parse("IgnoreUnknown=0").unwrap().ignore_unknown());
    assert!(
        CniArgs::parse("IgnoreUnknown=TRUE")
            .unwrap()
            .ignore_unknown()
    );
}

#[test]
fn plugin_error_golden() {
    let e = PluginError::new(
        ErrorCode::INVALID_NETWORK_CONFIG,
        "invalid network config",
        "network 192.168.0.0/31 too small <x>",
    )
    .with_version("1.1.0");
    assert_eq!(
        e.render(),
        r#"{"cniVersion":"1.1.0","code":7,"msg":"invalid network config","details":"network 192.168.0.0/31 too small \u003cx\u003e"}"#
    );
    assert_eq!(
        e.to_string(),
        "invalid network config; network 192.168.0.0/31 too small <x>"
    );
    let parsed = PluginError::parse(e.render().as_bytes()).unwrap();
    assert_eq!(parsed, e);
    let bare = PluginError::parse(br#"{"code":11,"msg":"busy"}"#).unwrap();
    assert_eq!(bare.code, ErrorCode::TRY_AGAIN_LATER);
    assert_eq!(bare.to_string(), "busy");
    assert_eq!(bare.render(), r#"{"code":11,"msg":"busy"}"#);
    assert!(PluginError::parse(br#"{"msg":"no code"}"#).is_none());
    assert!(PluginError::parse(br#"{"cniVersion":"1.0.0","ips":[]}"#).is_none());
    assert!(PluginError::parse(b"plain text").is_none());
    assert_eq!(
        ErrorCode(51).describe(),
        Some("plugin not available, existing containers may have limited connectivity")
    );
    assert_eq!(ErrorCode(120).describe(), None);
    assert!(!ErrorCode(120).is_reserved());
}

#[test]
fn validation_matches_libcni() {
    assert!(validate::container_id("abc-1_2.3").is_ok());
    assert_eq!(
        validate::container_id("").unwrap_err().code,
        ErrorCode::UNKNOWN_CONTAINER
    );
    let e = validate::container_id("-abc").unwrap_err();
    assert_eq!(e.code, ErrorCode::INVALID_ENVIRONMENT);
    assert_eq!(e.details, "-abc");
    assert!(validate::container_id("a/b").is_err());
    assert!(validate::network_name("macvlan-conf").is_ok());
    assert_eq!(
        validate::network_name("default/macvlan").unwrap_err().code,
        ErrorCode::INVALID_NETWORK_CONFIG
    );
    assert!(validate::network_name("").is_err());
    assert!(validate::ifname("net1").is_ok());
    assert!(validate::ifname("abcdefghijklmno").is_ok());
    let too_long = validate::ifname("abcdefghijklmnop").unwrap_err();
    assert_eq!(
        too_long.details,
        "interface name should be less than 16 characters"
    );
    for bad in ["", ".", "..", "a/b", "a:b", "a b", "a\tb"] {
        assert_eq!(
            validate::ifname(bad).unwrap_err().code,
            ErrorCode::INVALID_ENVIRONMENT,
            "{bad:?}"
        );
    }
}

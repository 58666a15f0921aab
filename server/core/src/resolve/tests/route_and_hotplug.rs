//! Default-route planning (F15 with Q10 fixed) and hot-plug resolution.

use super::*;

fn routes(value: &str) -> Plan {
    plan(&networks(value), &Config::default())
}

#[test]
fn default_route_gateway_moves_only_its_family() {
    let p = routes(r#"[{"name":"a","default-route":["192.168.50.1"]},{"name":"b"}]"#);
    let [primary, a, b] = &p.attachments[..] else {
        panic!()
    };
    assert_eq!(a.route_plan.install, [ip("192.168.50.1")]);
    assert!(a.route_plan.remove_v4 && !a.route_plan.remove_v6);
    for other in [primary, b] {
        assert!(other.route_plan.install.is_empty());
        assert!(
            other.route_plan.remove_v4,
            "v4 defaults removed from {}",
            other.interface
        );
        assert!(
            !other.route_plan.remove_v6,
            "Q10: v6 untouched on {}",
            other.interface
        );
    }
    assert_eq!(a.default_route, Some(vec![ip("192.168.50.1")]));
    assert_eq!(b.default_route, None);
}

#[test]
fn empty_default_route_only_affects_its_own_interface() {
    let p = routes(r#"[{"name":"a","default-route":[]},{"name":"b"}]"#);
    assert!(p.attachments[1].route_plan.remove_v4 && p.attachments[1].route_plan.remove_v6);
    assert!(
        p.attachments[0].route_plan.is_noop(),
        "Q10: eth0 keeps its default route"
    );
    assert!(p.attachments[2].route_plan.is_noop());
}

#[test]
fn dual_stack_gateways_on_two_networks() {
    let p = routes(
        r#"[{"name":"a","default-route":["10.0.0.1"]},{"name":"b","default-route":["fd00::1"]}]"#,
    );
    let [primary, a, b] = &p.attachments[..] else {
        panic!()
    };
    assert_eq!(a.route_plan.install, [ip("10.0.0.1")]);
    assert_eq!(b.route_plan.install, [ip("fd00::1")]);
    for x in [primary, a, b] {
        assert!(x.route_plan.remove_v4 && x.route_plan.remove_v6);
    }
    let p = routes(r#"[{"name":"a","default-route":["10.0.0.1","fd00::1"]}]"#);
    assert_eq!(p.attachments[1].route_plan.install.len(), 2);
}

#[test]
fn ecmp_is_rejected_per_family() {
    for value in [
        r#"[{"name":"a","default-route":["10.0.0.1"]},{"name":"b","default-route":["10.0.1.1"]}]"#,
        r#"[{"name":"a","default-route":["fd00::1","fd00::2"]}]"#,
    ] {
        let e = fail(&networks(value), &Config::default());
        assert!(matches!(e, Error::DefaultRouteEcmp { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("multus does not support ECMP for default-route")
        );
    }
}

#[test]
fn hotplug_picks_the_next_free_index() {
    let config = Config::default();
    let existing: Vec<String> = ["eth0", "net1", "foo", "net3"].map(String::from).to_vec();
    let a = resolve_one(&pod(), "a", &existing, &config, &nads()).unwrap();
    assert_eq!(
        (a.index, a.interface.as_str(), a.origin),
        (4, "net4", Origin::Hotplug)
    );
    let existing: Vec<String> = ["eth0", "net7"].map(String::from).to_vec();
    let a = resolve_one(
        &pod(),
        r#"{"name":"a","ips":["10.0.0.5/24"]}"#,
        &existing,
        &config,
        &nads(),
    )
    .unwrap();
    assert_eq!(a.interface, "net8");
    assert_eq!(a.extra_cni_args[0].0, "IP");
    let a = resolve_one(&pod(), "a", &[], &config, &nads()).unwrap();
    assert_eq!(a.interface, "net1");
    let a = resolve_one(&pod(), "a@iot0", &existing, &config, &nads()).unwrap();
    assert_eq!((a.index, a.interface.as_str()), (8, "iot0"));
}

#[test]
fn hotplug_rejections() {
    let config = Config {
        namespace_isolation: true,
        ..Config::default()
    };
    let existing: Vec<String> = ["eth0", "net1"].map(String::from).to_vec();
    let one = |s: &str| resolve_one(&pod(), s, &existing, &config, &nads());
    assert!(matches!(
        one("a@net1"),
        Err(Error::DuplicateInterface { .. })
    ));
    assert!(matches!(
        one("other/x"),
        Err(Error::NamespaceIsolation { .. })
    ));
    let e = one("ghost").unwrap_err();
    assert!(
        matches!(&e, Error::NetworkNotFound { requested_by, .. } if requested_by == "the hot-plug selection (ghost)"),
        "{e:?}"
    );
    assert!(matches!(one("a,b"), Err(Error::InvalidAnnotation { .. })));
    let e = one(r#"{"name":"a","default-route":["10.0.0.1"]}"#).unwrap_err();
    assert!(matches!(e, Error::UnsupportedHotplug { .. }), "{e}");
    let a = one(r#"{"name":"a","default-route":[]}"#).unwrap();
    assert!(a.route_plan.remove_v4 && a.route_plan.remove_v6 && a.route_plan.install.is_empty());
}

#[test]
fn hotplug_index_does_not_overflow_on_a_huge_net_suffix() {
    // `net<usize::MAX>` among the existing names overflowed `n + 1` (a debug panic). The
    // next name would be no interface name at all (over 15 bytes): refused as such.
    let existing = vec![format!("net{}", usize::MAX)];
    let e = resolve_one(&pod(), "a", &existing, &Config::default(), &nads()).unwrap_err();
    assert!(matches!(e, Error::InvalidInterfaceName { .. }), "{e}");
    assert!(e.to_string().contains("longer than 15"), "{e}");
}

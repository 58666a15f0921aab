//! Reference cases not covered elsewhere: F1/F15 (nothing asked, nothing changed),
//! F3 trimming, F30 duplicates, F31 scope and F33 with a non-default namespace.

use super::*;

#[test]
fn without_default_route_requests_no_route_is_touched() {
    // F15: "Only if any delegate has default-route".
    let config = Config {
        default_networks: vec!["mon".into()],
        ..plexus_config()
    };
    let p = plan(
        &networks(r#"[{"name":"a"},{"name":"b","default-route":null}]"#),
        &config,
    );
    assert!(
        p.attachments
            .iter()
            .all(|a| a.route_plan.is_noop() && a.default_route.is_none())
    );
}

#[test]
fn duplicate_networks_get_their_own_interfaces_in_annotation_order() {
    // F30: annotation order, duplicates allowed; F7 names by position.
    let p = plan(&networks("a, b ,a"), &Config::default());
    let got: Vec<(&str, &str)> = p
        .attachments
        .iter()
        .skip(1)
        .map(|a| (a.network.as_str(), a.interface.as_str()))
        .collect();
    assert_eq!(
        got,
        [("apps/a", "net1"), ("apps/b", "net2"), ("apps/a", "net3")]
    );
}

#[test]
fn comma_items_are_trimmed_around_slash_and_at() {
    // F3: TrimSpace on the item, ns and name.
    let p = plan(&networks(" other / x @x1 "), &Config::default());
    assert_eq!(p.attachments[1].network, "other/x");
    assert_eq!(p.attachments[1].interface, "x1");
    // F3: the interface is trimmed too (Multus: `netIfName = strings.TrimSpace(atItems[1])`);
    // whitespace inside it still fails the name check.
    let p = plan(&networks("other/x@ x1"), &Config::default());
    assert_eq!(p.attachments[1].interface, "x1");
    let e = fail(&networks("other/x@x 1"), &Config::default());
    assert!(e.to_string().contains("whitespace"), "{e}");
}

#[test]
fn isolation_applies_to_the_networks_annotation_only() {
    // F31: defaultNetworks and the cluster network live in multusNamespace and are
    // not subject to isolation.
    let config = Config {
        namespace_isolation: true,
        global_namespaces: Vec::new(),
        default_networks: vec!["mon".into()],
        ..plexus_config()
    };
    let p = plan(&networks("a"), &config);
    assert_eq!(p.attachments[1].network, "kube-system/mon");
    let e = fail(&networks("default/shared"), &config);
    assert!(
        e.to_string()
            .ends_with("allowed: the pod's namespace and no global namespaces)"),
        "{e}"
    );
}

#[test]
fn multus_namespace_moves_configured_networks_and_the_override_default() {
    // F33 with a non-default value.
    let mut nads = nads();
    nads.insert(Nad::new("infra", "cbr0", r#"{"type":"calico"}"#));
    nads.insert(Nad::new("infra", "alt", r#"{"type":"cilium-cni"}"#));
    let config = Config {
        multus_namespace: "infra".into(),
        ..plexus_config()
    };
    let p = resolve(&pod(), &networks(""), &config, &nads).unwrap();
    assert_eq!(p.attachments[0].network, "infra/cbr0");
    let p = resolve(
        &pod(),
        &ann(&[(annotation::DEFAULT_NETWORK, "alt")]),
        &config,
        &nads,
    )
    .unwrap();
    assert_eq!(p.attachments[0].network, "infra/alt");
    assert_eq!(p.attachments[0].config.plugin_types, ["cilium-cni"]);
}

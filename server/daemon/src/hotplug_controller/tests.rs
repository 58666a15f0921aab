use super::*;

fn att(network: &str, interface: &str, origin: &str, primary: bool) -> AttachmentView {
    AttachmentView {
        network: network.to_string(),
        interface: interface.to_string(),
        ips: Vec::new(),
        mac: String::new(),
        driver: String::new(),
        plugin: String::new(),
        origin: origin.to_string(),
        state: AttachmentState::Attached,
        mtu: None,
        gateways: Vec::new(),
        primary,
        lease_expires: None,
        result: None,
    }
}

fn texts(c: &Changes) -> Vec<&str> {
    c.attach.iter().map(|w| w.text.as_str()).collect()
}

#[test]
fn an_added_network_is_attached_and_nothing_else_moves() {
    let actual = [
        att("kube-system/cluster", "eth0", "cluster", true),
        att("default/a", "net1", "annotation", false),
    ];
    let c = diff(&desired("a, b", "default").unwrap(), &actual);
    assert_eq!(texts(&c), ["b"]);
    assert!(c.detach.is_empty());
}

#[test]
fn a_removed_unnamed_network_is_detached_by_identity() {
    let actual = [
        att("default/a", "net1", "annotation", false),
        att("default/b", "net2", "annotation", false),
        att("default/c", "net3", "annotation", false),
    ];
    let c = diff(&desired("a,c", "default").unwrap(), &actual);
    assert!(c.attach.is_empty());
    assert_eq!(c.detach, ["net2"]);
}

#[test]
fn a_direct_attachment_is_left_alone() {
    // `plexusctl attach --direct` records origin hotplug: not in the annotation, not removed.
    let actual = [
        att("default/a", "net1", "annotation", false),
        att("default/x", "net2", "hotplug", false),
    ];
    let c = diff(&desired("a", "default").unwrap(), &actual);
    assert!(c.attach.is_empty() && c.detach.is_empty(), "{c:?}");
    // Nor does it satisfy an element asking for the same network.
    let c = diff(&desired("a,x", "default").unwrap(), &actual);
    assert_eq!(texts(&c), ["x"]);
    assert!(c.detach.is_empty(), "{c:?}");
}

#[test]
fn the_primary_and_configured_defaults_are_never_detached() {
    let actual = [
        att("default/a", "eth0", "annotation", true),
        att("kube-system/mon", "net1", "default", false),
    ];
    let c = diff(&desired("", "default").unwrap(), &actual);
    assert!(c.detach.is_empty(), "{c:?}");
}

#[test]
fn a_named_element_matches_only_its_interface() {
    let actual = [att("default/a", "net1", "annotation", false)];
    let c = diff(&desired("a@data", "default").unwrap(), &actual);
    assert_eq!(texts(&c), ["a@data"]);
    assert_eq!(c.detach, ["net1"]);
}

#[test]
fn the_same_network_twice_needs_two_attachments() {
    let actual = [att("default/a", "net1", "annotation", false)];
    let c = diff(&desired("a,a", "default").unwrap(), &actual);
    assert_eq!(texts(&c), ["a"]);
}

#[test]
fn json_elements_keep_their_own_text() {
    let w = desired(
        r#"[{"name":"a","interface":"x"},{"name":"b","namespace":"o"}]"#,
        "default",
    )
    .unwrap();
    assert_eq!(w[1].selection.network(), "o/b");
    let again = plexus_core::annotation::parse_selection(&w[0].text, "default").unwrap();
    assert_eq!(again.interface.as_deref(), Some("x"));
}

#[test]
fn a_bad_annotation_is_an_error_not_an_empty_list() {
    assert!(desired("[{", "default").is_err());
}

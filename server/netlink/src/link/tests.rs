//! Unit tests of link message decoding and change encoding (no root, no sockets).

use rtnetlink::LinkUnspec;
use rtnetlink::packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoMacVlan, InfoPortData, InfoPortKind, InfoVlan,
    LinkAttribute, LinkFlags, LinkInfo, LinkMessage, MacVlanMode,
};

use super::{Link, MacvlanMode};
use crate::handle::LinkChange;
use crate::mac::MacAddr;

fn message(attrs: Vec<LinkAttribute>, flags: LinkFlags) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = 7;
    m.header.flags = flags;
    m.attributes = attrs;
    m
}

#[test]
fn decodes_a_macvlan_reply() {
    let msg = message(
        vec![
            LinkAttribute::IfName("net1".into()),
            LinkAttribute::Mtu(1400),
            LinkAttribute::Address(vec![2, 0, 0, 0, 0, 9]),
            LinkAttribute::Group(0x706c78),
            LinkAttribute::Link(3),
            LinkAttribute::LinkNetNsId(0),
            LinkAttribute::IfAlias("eno1".into()),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::MacVlan),
                LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                    MacVlanMode::Vepa,
                )])),
            ]),
        ],
        LinkFlags::Up | LinkFlags::Promisc,
    );
    let l = Link::from_message(&msg);
    assert_eq!(l.index, 7);
    assert_eq!(l.name, "net1");
    assert_eq!(l.kind.as_deref(), Some("macvlan"));
    assert_eq!(l.macvlan_mode, Some(MacvlanMode::Vepa));
    assert_eq!(l.mtu, 1400);
    assert_eq!(l.mac, Some(MacAddr([2, 0, 0, 0, 0, 9])));
    assert_eq!(l.group, 0x706c78);
    assert_eq!(l.parent, Some(3));
    assert_eq!(l.parent_netns_id, Some(0));
    assert_eq!(l.alias.as_deref(), Some("eno1"));
    assert!(l.up && l.promisc);
    assert_eq!(l.master, None);
}

#[test]
fn decodes_bridge_port_and_vlan_data() {
    let msg = message(
        vec![
            LinkAttribute::IfName("veth0".into()),
            LinkAttribute::Controller(4),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Vlan),
                LinkInfo::Data(InfoData::Vlan(vec![InfoVlan::Id(42)])),
                LinkInfo::PortKind(InfoPortKind::Bridge),
                LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                    true,
                )])),
            ]),
        ],
        LinkFlags::empty(),
    );
    let l = Link::from_message(&msg);
    assert_eq!(l.master, Some(4));
    assert_eq!(l.vlan_id, Some(42));
    assert_eq!(l.hairpin, Some(true));
    assert!(!l.up);
    // Zero master/parent mean "none".
    let l = Link::from_message(&message(
        vec![LinkAttribute::Controller(0), LinkAttribute::Link(0)],
        LinkFlags::empty(),
    ));
    assert_eq!((l.master, l.parent), (None, None));
}

#[test]
fn link_change_encodes_only_what_is_set() {
    let empty = LinkChange::new()
        .apply(LinkUnspec::new_with_index(5))
        .build();
    assert!(empty.attributes.is_empty());
    assert!(empty.header.change_mask.is_empty());

    let mac = MacAddr([2, 1, 2, 3, 4, 5]);
    let msg = LinkChange::new()
        .name("eth1")
        .mtu(1300)
        .mac(mac)
        .master(None)
        .group(9)
        .up(true)
        .apply(LinkUnspec::new_with_index(5))
        .build();
    assert_eq!(msg.header.index, 5);
    assert!(msg.header.flags.contains(LinkFlags::Up));
    assert!(msg.header.change_mask.contains(LinkFlags::Up));
    assert!(!msg.header.change_mask.contains(LinkFlags::Promisc));
    let a = &msg.attributes;
    assert!(a.contains(&LinkAttribute::IfName("eth1".into())));
    assert!(a.contains(&LinkAttribute::Mtu(1300)));
    assert!(a.contains(&LinkAttribute::Address(mac.0.to_vec())));
    assert!(a.contains(&LinkAttribute::Controller(0)));
    assert!(a.contains(&LinkAttribute::Group(9)));

    let down = LinkChange::new()
        .up(false)
        .promisc(true)
        .apply(LinkUnspec::new_with_index(5))
        .build();
    assert!(!down.header.flags.contains(LinkFlags::Up));
    assert!(down.header.change_mask.contains(LinkFlags::Up));
    assert!(down.header.flags.contains(LinkFlags::Promisc));
}

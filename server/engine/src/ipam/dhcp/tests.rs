use std::net::Ipv4Addr;

use dhcproto::Encodable;
use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode};

use super::message::{self, parse_reply};
use super::*;

const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x42];

fn reply(kind: MessageType, xid: u32, chaddr: [u8; 6], opts: Vec<DhcpOption>) -> Vec<u8> {
    let u = Ipv4Addr::UNSPECIFIED;
    let mut m = Message::new_with_id(xid, u, Ipv4Addr::new(192, 0, 2, 50), u, u, &chaddr);
    m.set_opcode(Opcode::BootReply);
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    for o in opts {
        m.opts_mut().insert(o);
    }
    m.to_vec().unwrap()
}

fn server() -> DhcpOption {
    DhcpOption::ServerIdentifier(Ipv4Addr::new(192, 0, 2, 1))
}

#[test]
fn discover_carries_mac_client_id_and_broadcast_flag() {
    let bytes = message::discover(7, MAC).unwrap();
    let m = <Message as dhcproto::Decodable>::from_bytes(&bytes).unwrap();
    assert_eq!(m.xid(), 7);
    assert_eq!(m.chaddr(), &MAC);
    assert!(m.flags().broadcast());
    assert_eq!(m.opts().msg_type(), Some(MessageType::Discover));
    let mut id = vec![1u8];
    id.extend_from_slice(&MAC);
    assert_eq!(
        m.opts().get(dhcproto::v4::OptionCode::ClientIdentifier),
        Some(&DhcpOption::ClientIdentifier(id))
    );
}

#[test]
fn renewing_is_unicast_shaped_and_rebinding_broadcast() {
    let a = Ipv4Addr::new(192, 0, 2, 50);
    for (rebinding, bcast) in [(false, false), (true, true)] {
        let bytes = message::request_renew(9, MAC, a, rebinding).unwrap();
        let m = <Message as dhcproto::Decodable>::from_bytes(&bytes).unwrap();
        assert_eq!(m.ciaddr(), a);
        assert_eq!(m.flags().broadcast(), bcast);
        assert!(
            !m.opts()
                .contains(dhcproto::v4::OptionCode::ServerIdentifier)
        );
        assert!(
            !m.opts()
                .contains(dhcproto::v4::OptionCode::RequestedIpAddress)
        );
    }
}

#[test]
fn replies_for_another_xid_or_mac_are_ignored() {
    let ok = reply(MessageType::Offer, 5, MAC, vec![server()]);
    assert!(parse_reply(&ok, 5, MAC).is_some());
    assert_eq!(parse_reply(&ok, 6, MAC), None);
    assert_eq!(parse_reply(&ok, 5, [2, 0, 0, 0, 0, 1]), None);
    assert_eq!(parse_reply(&ok[..100], 5, MAC), None);
    // An OFFER without a server identifier cannot be requested.
    assert_eq!(
        parse_reply(&reply(MessageType::Offer, 5, MAC, vec![]), 5, MAC),
        None
    );
}

#[test]
fn ack_without_t1_t2_uses_rfc_defaults_and_classless_routes_replace_router() {
    let route: ipnet::Ipv4Net = "10.0.0.0/8".parse().unwrap();
    let bytes = reply(
        MessageType::Ack,
        5,
        MAC,
        vec![
            server(),
            DhcpOption::AddressLeaseTime(800),
            DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)),
            DhcpOption::Router(vec![Ipv4Addr::new(192, 0, 2, 1)]),
            DhcpOption::DomainNameServer(vec![Ipv4Addr::new(192, 0, 2, 53)]),
            DhcpOption::ClasslessStaticRoute(vec![
                (route, Ipv4Addr::new(192, 0, 2, 254)),
                ("198.51.100.0/24".parse().unwrap(), Ipv4Addr::UNSPECIFIED),
            ]),
        ],
    );
    let Some(Reply::Ack(g)) = parse_reply(&bytes, 5, MAC) else {
        panic!("not an ack")
    };
    assert_eq!((g.t1_secs, g.t2_secs), (400, 700));
    assert_eq!(g.address_net().to_string(), "192.0.2.50/24");
    let a = g.allocation();
    assert_eq!(a.ips[0].gateway, None, "router ignored with option 121");
    let routes: Vec<String> = a
        .routes
        .iter()
        .map(|r| format!("{} {:?}", r.dst, r.gw))
        .collect();
    assert_eq!(
        routes,
        ["10.0.0.0/8 Some(192.0.2.254)", "198.51.100.0/24 None"]
    );
    assert_eq!(a.dns.nameservers, ["192.0.2.53"]);
}

#[test]
fn ack_with_router_only_gives_default_route_and_clamps_times() {
    let bytes = reply(
        MessageType::Ack,
        5,
        MAC,
        vec![
            server(),
            DhcpOption::AddressLeaseTime(100),
            DhcpOption::Renewal(500),
            DhcpOption::Rebinding(300),
            DhcpOption::Router(vec![Ipv4Addr::new(192, 0, 2, 1)]),
        ],
    );
    let Some(Reply::Ack(g)) = parse_reply(&bytes, 5, MAC) else {
        panic!("not an ack")
    };
    assert_eq!((g.t1_secs, g.t2_secs), (100, 100));
    assert_eq!(g.prefix_len, 24);
    let a = g.allocation();
    assert_eq!(a.routes.len(), 1);
    assert_eq!(a.routes[0].dst.to_string(), "0.0.0.0/0");
    assert_eq!(a.ips[0].gateway, Some(Ipv4Addr::new(192, 0, 2, 1).into()));
}

#[test]
fn ack_with_a_non_contiguous_mask_or_no_lease_time_is_rejected() {
    let bad_mask = reply(
        MessageType::Ack,
        5,
        MAC,
        vec![
            server(),
            DhcpOption::AddressLeaseTime(100),
            DhcpOption::SubnetMask(Ipv4Addr::new(255, 0, 255, 0)),
        ],
    );
    assert_eq!(parse_reply(&bad_mask, 5, MAC), None);
    let no_time = reply(MessageType::Ack, 5, MAC, vec![server()]);
    assert_eq!(parse_reply(&no_time, 5, MAC), None);
}

#[test]
fn nak_carries_its_message() {
    let bytes = reply(
        MessageType::Nak,
        5,
        MAC,
        vec![server(), DhcpOption::Message("wrong network".into())],
    );
    assert_eq!(
        parse_reply(&bytes, 5, MAC),
        Some(Reply::Nak {
            server: Ipv4Addr::new(192, 0, 2, 1),
            message: "wrong network".into()
        })
    );
}

#[test]
fn config_accepts_type_and_timeout_only() {
    let p = |s: &str| crate::ipam::Config::parse(&serde_json::from_str(s).unwrap());
    assert!(matches!(
        p(r#"{"type":"dhcp"}"#),
        Some(crate::ipam::Config::Dhcp(_))
    ));
    let Some(crate::ipam::Config::Dhcp(c)) = p(r#"{"type":"dhcp","timeout":3}"#) else {
        panic!()
    };
    assert_eq!(c.request_timeout(), Some(std::time::Duration::from_secs(3)));
    assert_eq!(p(r#"{"type":"dhcp","timeout":0}"#), None);
    assert_eq!(p(r#"{"type":"dhcp","timeout":301}"#), None);
    assert_eq!(p(r#"{"type":"dhcp","daemonSocketPath":"/x"}"#), None);
}

fn lease(sandbox: &str, ifname: &str) -> LeaseFile {
    LeaseFile {
        network: "lan".into(),
        sandbox_id: sandbox.into(),
        ifname: ifname.into(),
        netns: "/var/run/netns/x".into(),
        mac: MAC,
        timeout_secs: 10,
        granted: Granted {
            lease_secs: 100,
            t1_secs: 50,
            t2_secs: 87,
            ..Granted::placeholder()
        },
        bound_at: 1000,
        renewals: 0,
    }
}

#[test]
fn lease_store_round_trips_and_rejects_path_like_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = LeaseStore::new(dir.path().join("dhcp"));
    let l = lease("sb1", "net1");
    store.save(&l).unwrap();
    assert_eq!(store.load("sb1", "net1").unwrap(), Some(l.clone()));
    assert_eq!(store.list(), vec![l]);
    for (sb, ifn) in [
        ("..", "net1"),
        ("sb1", "../x"),
        ("a/b", "net1"),
        ("", "net1"),
    ] {
        let err = store.load(sb, ifn).unwrap_err().to_string();
        assert!(err.contains("A-Z a-z 0-9"), "{err}");
    }
    store.remove("sb1", "net1").unwrap();
    store.remove("sb1", "net1").unwrap();
    assert!(!dir.path().join("dhcp/sb1").exists());
}

#[test]
fn renewal_is_due_at_t1_and_immediately_after() {
    let l = lease("sb1", "net1");
    assert_eq!(l.next_due(1000), Some(1050));
    assert_eq!(l.next_due(1049), Some(1050));
    assert_eq!(l.next_due(1050), Some(1050));
    assert_eq!(l.next_due(1090), Some(1090));
    assert_eq!(l.expires_at(), Some(1100));
    let mut inf = l;
    inf.granted.lease_secs = u32::MAX;
    assert_eq!(inf.next_due(5000), None);
}

//! Privileged tests of netns snapshots and interface_info.

use ipnet::IpNet;
use plexus_netlink::inspect::{interface_info, snapshot};
use plexus_netlink::link::{MacvlanMode, MacvlanSpec, PodLink, macvlan};
use plexus_netlink::test_util::{TestNetns, require_privileged, unique_name};
use plexus_netlink::{OnExists, RouteSpec};

#[tokio::test]
async fn snapshot_and_interface_info_of_a_pod() {
    if !require_privileged() {
        return;
    }
    let host = TestNetns::new().await;
    let pod = TestNetns::new().await;
    let up = unique_name("iu");
    host.veth_pair(&up, &unique_name("ip")).await.unwrap();
    let hh = host.handle().await;
    let ph = pod.handle().await;
    let mut link = PodLink::new("net1");
    link.mtu = Some(1400);
    link.mac = Some("02:00:00:00:aa:01".parse().unwrap());
    let spec = MacvlanSpec {
        master: Some(up.clone()),
        master_in_pod: false,
        mode: MacvlanMode::Vepa,
        link,
        layer3: true,
    };
    let l = macvlan::add(&hh, &ph, &spec).await.unwrap();
    let addr: IpNet = "10.88.0.5/24".parse().unwrap();
    ph.add_address(&l, addr).await.unwrap();
    ph.add_address(&l, "fd00:88::5/64".parse().unwrap())
        .await
        .unwrap();
    let default = RouteSpec::new("0.0.0.0/0".parse().unwrap()).via("10.88.0.1".parse().unwrap());
    ph.add_route(&l, &default, OnExists::Fail).await.unwrap();

    let snap = snapshot(&ph).await.unwrap();
    let net1 = snap.links.iter().find(|l| l.name == "net1").unwrap();
    assert_eq!(net1.kind, "macvlan");
    assert_eq!(net1.macvlan_mode, Some(MacvlanMode::Vepa));
    assert_eq!(net1.mtu, 1400);
    assert!(net1.up);
    assert!(
        snap.addresses
            .iter()
            .any(|a| a.link == "net1" && a.addr == addr)
    );
    assert!(snap.routes.iter().any(|r| r.dst.prefix_len() == 0
        && r.dev.as_deref() == Some("net1")
        && r.gateway == Some("10.88.0.1".parse().unwrap())));
    // Only the main table: no local-table broadcast/local routes.
    assert!(
        !snap
            .routes
            .iter()
            .any(|r| r.dst == "10.88.0.5/32".parse::<IpNet>().unwrap())
    );
    assert_eq!(
        snap.sysctls
            .get("net/ipv4/conf/net1/arp_notify")
            .map(String::as_str),
        Some("1")
    );
    assert_eq!(
        snap.sysctls
            .get("net/ipv6/conf/net1/ndisc_notify")
            .map(String::as_str),
        Some("0")
    );
    assert!(snap.sysctls.contains_key("net/ipv4/ip_forward"));
    let text = snap.stable().to_string();
    assert!(
        text.contains("link net1 kind=macvlan mtu=1400 up=true"),
        "{text}"
    );
    assert!(!text.contains("02:00:00:00:aa:01"), "{text}");

    let info = interface_info(&ph, "net1").await.unwrap();
    assert_eq!(info.mac, Some("02:00:00:00:aa:01".parse().unwrap()));
    assert_eq!(info.mtu, 1400);
    assert_eq!(info.addrs, vec![addr, "fd00:88::5/64".parse().unwrap()]);
    assert!(
        interface_info(&ph, "nope")
            .await
            .unwrap_err()
            .is_not_found()
    );
}

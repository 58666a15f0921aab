//! Privileged tests of the bridge and host-device drivers and of link-group teardown.

mod common;

use common::{Fixture, fixture, macvlan_spec, pod_link};
use ipnet::IpNet;
use plexus_netlink::Error;
use plexus_netlink::link::{
    self, BridgeAttachment, BridgeSpec, DEFAULT_LINK_GROUP, HostDeviceSpec, MacvlanMode, bridge,
    host_device, macvlan,
};
use plexus_netlink::test_util::{
    KernelFeature, TestNetns, assert_peek_agrees, require_privileged, skip_if_kernel_lacks,
    unique_name,
};

#[tokio::test]
async fn bridge_creates_bridge_veth_hairpin_and_gateway() {
    if !require_privileged() {
        return;
    }
    let f = fixture().await;
    let br = unique_name("br");
    let mut spec = BridgeSpec::new(&br, pod_link("eth1", Some(1450), Some("02:00:00:00:be:01")));
    spec.hairpin = true;
    spec.layer3 = true;
    spec.gateways = vec!["10.66.0.1/24".parse::<IpNet>().unwrap()];
    let att = bridge::add(&f.hh, &f.ph, &spec).await.unwrap();
    // What add returns is read by ioctl; the kernel's full answer agrees with it.
    let peeked = (
        att.bridge.clone(),
        att.host_veth.clone(),
        att.pod_link.clone(),
    );
    let att = reread(&f, att).await;
    for (l, full) in [
        (&peeked.0, &att.bridge),
        (&peeked.1, &att.host_veth),
        (&peeked.2, &att.pod_link),
    ] {
        assert_peek_agrees(l, full);
    }
    assert_eq!(peeked.2.kind.as_deref(), Some("veth"));

    assert_eq!(att.bridge.kind.as_deref(), Some("bridge"));
    assert!(att.bridge.up);
    assert_eq!(att.bridge.mtu, 1450);
    assert_eq!(att.host_veth.master, Some(att.bridge.index));
    assert_eq!(att.host_veth.hairpin, Some(true));
    assert!(att.host_veth.name.starts_with("veth") && att.host_veth.name.len() == 12);
    assert_eq!(att.host_veth.mtu, 1450);
    assert!(att.host_veth.up);
    assert_eq!(
        att.host_veth.group, 0,
        "host end stays out of the pod's group"
    );
    let p = &att.pod_link;
    assert_eq!(
        (p.name.as_str(), p.kind.as_deref(), p.mtu),
        ("eth1", Some("veth"), 1450)
    );
    assert_eq!(p.mac, Some("02:00:00:00:be:01".parse().unwrap()));
    assert_eq!(p.group, DEFAULT_LINK_GROUP);
    assert!(p.up);

    let br_addrs = f.hh.addresses(Some(att.bridge.index)).await.unwrap();
    assert!(
        br_addrs
            .iter()
            .any(|a| a.addr == "10.66.0.1/24".parse::<IpNet>().unwrap())
    );
    assert_eq!(f.hh.sysctl("net.ipv4.ip_forward").await.unwrap(), "1");
    assert_eq!(
        f.hh.sysctl(&format!("net/ipv6/conf/{br}/accept_ra"))
            .await
            .unwrap(),
        "0"
    );
    assert_eq!(
        f.ph.sysctl("net.ipv6.conf.eth1.accept_dad").await.unwrap(),
        "0"
    );
    assert_eq!(
        f.ph.sysctl("net.ipv4.conf.eth1.arp_notify").await.unwrap(),
        "1"
    );

    // A second pod on the same bridge reuses it; a conflicting gateway is refused.
    let pod2 = TestNetns::new().await;
    let ph2 = pod2.handle().await;
    let mut spec2 = BridgeSpec::new(&br, pod_link("eth1", Some(1450), None));
    spec2.gateways = vec!["10.66.0.1/24".parse().unwrap()];
    let att2 = bridge::add(&f.hh, &ph2, &spec2).await.unwrap();
    assert_eq!(att2.bridge.index, att.bridge.index);
    spec2.gateways = vec!["10.67.0.1/24".parse().unwrap()];
    spec2.link.name = "eth2".into();
    let err = bridge::add(&f.hh, &ph2, &spec2).await.unwrap_err();
    assert!(err.to_string().contains("forceAddress"), "{err}");
    assert!(
        ph2.try_find_link("eth2").await.unwrap().is_none(),
        "failed attach undone"
    );

    // Teardown removes both veth ends and leaves the bridge.
    bridge::del(&f.ph, "eth1").await.unwrap();
    assert!(
        f.hh.try_find_link(&att.host_veth.name)
            .await
            .unwrap()
            .is_none()
    );
    assert!(f.hh.try_find_link(&br).await.unwrap().is_some());
    bridge::del(&f.ph, "eth1").await.unwrap();
}

/// The driver skips bringing an existing bridge up when it already is (a request less on
/// the rtnl lock per pod); one that was set down, or is not promiscuous when asked to be,
/// is still changed.
#[tokio::test]
async fn an_existing_bridge_that_was_set_down_is_brought_up_again() {
    if !require_privileged() {
        return;
    }
    let f = fixture().await;
    let br = unique_name("bd");
    let spec = BridgeSpec::new(&br, pod_link("eth1", None, None));
    let first = bridge::add(&f.hh, &f.ph, &spec).await.unwrap();
    assert!(first.bridge.up && !first.bridge.promisc);
    f.hh.set_down(&first.bridge).await.unwrap();
    assert!(!f.hh.find_link(&br).await.unwrap().up);

    let mut spec = BridgeSpec::new(&br, pod_link("eth2", None, None));
    spec.promisc = true;
    let second = bridge::add(&f.hh, &f.ph, &spec).await.unwrap();
    assert!(second.bridge.up, "the bridge was left down");
    assert!(second.bridge.promisc, "the bridge was not made promiscuous");
    let second = reread(&f, second).await;
    assert_eq!(second.host_veth.master, Some(second.bridge.index));
    assert!(second.host_veth.up && second.pod_link.up);
}

#[tokio::test]
async fn bridge_promisc_and_validation() {
    if !require_privileged() {
        return;
    }
    let f = fixture().await;
    let br = unique_name("bp");
    let mut spec = BridgeSpec::new(&br, pod_link("eth1", None, None));
    spec.promisc = true;
    let att = bridge::add(&f.hh, &f.ph, &spec).await.unwrap();
    assert!(att.bridge.promisc);
    let att = reread(&f, att).await;
    assert_eq!(att.pod_link.mtu, 1500);
    assert_eq!(att.host_veth.hairpin, Some(false));

    spec.hairpin = true;
    spec.link.name = "eth2".into();
    let err = bridge::add(&f.hh, &f.ph, &spec).await.unwrap_err();
    assert!(matches!(err, Error::InvalidSpec { kind: "bridge", .. }));

    // A non-bridge link with the bridge's name is refused.
    let spec = BridgeSpec::new(f.uplink.clone(), pod_link("eth3", None, None));
    let err = bridge::add(&f.hh, &f.ph, &spec).await.unwrap_err();
    assert!(err.to_string().contains("not a bridge"), "{err}");
    assert!(f.ph.try_find_link("eth3").await.unwrap().is_none());
}

#[tokio::test]
async fn bridge_vlan_port_or_kernel_skip() {
    if !require_privileged() {
        return;
    }
    if skip_if_kernel_lacks(
        "bridge_vlan_port_or_kernel_skip",
        KernelFeature::BridgeVlanFiltering,
    ) {
        return;
    }
    let f = fixture().await;
    let br = unique_name("bv");
    let mut spec = BridgeSpec::new(&br, pod_link("eth1", None, None));
    spec.vlan = Some(100);
    let att = bridge::add(&f.hh, &f.ph, &spec).await.unwrap();
    assert_eq!(att.bridge.vlan_filtering, Some(true));
    assert_eq!(att.host_veth.master, Some(att.bridge.index));
}

#[tokio::test]
async fn host_device_moves_in_and_back_out_with_its_name() {
    if !require_privileged() {
        return;
    }
    let f = fixture().await;
    let dev = unique_name("hd");
    let peer = unique_name("hp");
    let orig = f.host.veth_pair(&dev, &peer).await.unwrap();
    let mac = orig.mac.unwrap();

    let att = host_device::add(&f.hh, &f.ph, &HostDeviceSpec::Mac(mac), "net3")
        .await
        .unwrap();
    assert_eq!(att.original_name, dev);
    assert_eq!(att.pod_link.name, "net3");
    assert_eq!(att.pod_link.alias.as_deref(), Some(dev.as_str()));
    assert!(att.pod_link.up);
    assert_eq!(
        att.pod_link.group, 0,
        "host devices are never in the pod's group"
    );
    assert!(f.hh.try_find_link(&dev).await.unwrap().is_none());

    // Group deletion in the pod leaves the host device alone.
    f.ph.delete_group(DEFAULT_LINK_GROUP).await.unwrap();
    assert!(f.ph.try_find_link("net3").await.unwrap().is_some());

    // Back out using only the alias.
    host_device::del(&f.hh, &f.ph, "net3", None).await.unwrap();
    let back = f.hh.find_link(&dev).await.unwrap();
    assert_eq!(back.mac, Some(mac));
    assert!(f.ph.try_find_link("net3").await.unwrap().is_none());
    host_device::del(&f.hh, &f.ph, "net3", Some(&dev))
        .await
        .unwrap();

    // By name, restored through the recorded original name.
    let att = host_device::add(&f.hh, &f.ph, &HostDeviceSpec::Name(dev.clone()), "net4")
        .await
        .unwrap();
    host_device::del(&f.hh, &f.ph, "net4", Some(&att.original_name))
        .await
        .unwrap();
    assert!(f.hh.try_find_link(&dev).await.unwrap().is_some());
}

#[tokio::test]
async fn group_delete_removes_all_pod_links_at_once() {
    if !require_privileged() {
        return;
    }
    let f = fixture().await;
    let br = unique_name("bg");
    let att = bridge::add(
        &f.hh,
        &f.ph,
        &BridgeSpec::new(&br, pod_link("eth0", None, None)),
    )
    .await
    .unwrap();
    for name in ["net1", "net2"] {
        let spec = macvlan_spec(&f.uplink, MacvlanMode::Bridge, pod_link(name, None, None));
        macvlan::add(&f.hh, &f.ph, &spec).await.unwrap();
    }
    // A link outside the group survives.
    let other = link::PodLink {
        group: 0,
        ..pod_link("net3", None, None)
    };
    macvlan::add(
        &f.hh,
        &f.ph,
        &macvlan_spec(&f.uplink, MacvlanMode::Bridge, other),
    )
    .await
    .unwrap();

    f.ph.delete_group(DEFAULT_LINK_GROUP).await.unwrap();
    let names: Vec<String> =
        f.ph.links()
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect();
    assert_eq!(names, vec!["lo".to_string(), "net3".to_string()]);
    assert!(
        f.hh.try_find_link(&att.host_veth.name)
            .await
            .unwrap()
            .is_none(),
        "veth peer gone too"
    );
    // Empty group and group 0.
    f.ph.delete_group(DEFAULT_LINK_GROUP).await.unwrap();
    assert!(matches!(
        f.ph.delete_group(0).await,
        Err(Error::InvalidSpec { .. })
    ));
    drop(f.pod);
}

/// The attachment's links as the kernel reports them in full (`RTM_GETLINK`).
async fn reread(f: &Fixture, att: BridgeAttachment) -> BridgeAttachment {
    BridgeAttachment {
        bridge: f.hh.find_link(&att.bridge.name).await.unwrap(),
        host_veth: f.hh.find_link(&att.host_veth.name).await.unwrap(),
        pod_link: f.ph.find_link(&att.pod_link.name).await.unwrap(),
    }
}

//! Privileged tests of the macvlan, ipvlan and vlan drivers. Each test builds a "host"
//! test netns with a veth uplink and a "pod" test netns; no packet leaves them.

mod common;

use common::{fixture, macvlan_spec, pod_link};
use plexus_netlink::link::{
    DEFAULT_LINK_GROUP, IpvlanFlag, IpvlanMode, IpvlanSpec, MacvlanMode, VlanSpec, ipvlan, macvlan,
    vlan,
};
use plexus_netlink::test_util::{
    KernelFeature, assert_peek_agrees, require_privileged, skip_if_kernel_lacks, unique_name,
};
use plexus_netlink::{Error, MacAddr, OnExists, RouteSpec};

#[tokio::test]
async fn macvlan_every_mode_lands_in_pod_configured() {
    if !require_privileged() {
        return;
    }
    let f = fixture().await;
    let master = f.hh.find_link(&f.uplink).await.unwrap();
    let modes = [
        MacvlanMode::Bridge,
        MacvlanMode::Private,
        MacvlanMode::Vepa,
        MacvlanMode::Source,
    ];
    for (i, mode) in modes.into_iter().enumerate() {
        let name = format!("net{}", i + 1);
        let mac = format!("02:00:00:00:10:0{}", i + 1);
        let spec = macvlan_spec(&f.uplink, mode, pod_link(&name, Some(1400), Some(&mac)));
        let l = macvlan::add(&f.hh, &f.ph, &spec).await.unwrap();
        // What add returns is read by ioctl; the kernel's full answer agrees with it.
        let full = f.ph.find_link(&name).await.unwrap();
        assert_peek_agrees(&l, &full);
        assert_eq!(l.name, name);
        assert_eq!(l.kind.as_deref(), Some("macvlan"));
        assert_eq!(full.kind.as_deref(), Some("macvlan"));
        assert_eq!(full.macvlan_mode, Some(mode));
        assert_eq!(full.group, DEFAULT_LINK_GROUP);
        assert_eq!(l.mtu, 1400);
        assert_eq!(l.mac, Some(mac.parse::<MacAddr>().unwrap()));
        assert_eq!(l.group, DEFAULT_LINK_GROUP);
        assert!(l.up);
        assert!(
            full.parent_netns_id.is_some(),
            "lower device lives in another netns"
        );
        // Never visible in the host netns.
        assert!(f.hh.try_find_link(&name).await.unwrap().is_none());
    }
    // Default MTU is inherited from the master.
    let spec = macvlan_spec(&f.uplink, MacvlanMode::Bridge, pod_link("net9", None, None));
    let l = macvlan::add(&f.hh, &f.ph, &spec).await.unwrap();
    assert_eq!(l.mtu, master.mtu);
    macvlan::del(&f.ph, "net9").await.unwrap();
    macvlan::del(&f.ph, "net9").await.unwrap();
    assert!(f.ph.try_find_link("net9").await.unwrap().is_none());
}

#[tokio::test]
async fn macvlan_passthru_and_layer3_sysctls() {
    if !require_privileged() {
        return;
    }
    let f = fixture().await;
    let mut spec = macvlan_spec(
        &f.uplink,
        MacvlanMode::Passthru,
        pod_link("net1", None, None),
    );
    spec.layer3 = true;
    let l = macvlan::add(&f.hh, &f.ph, &spec).await.unwrap();
    let l = f.ph.find_link(&l.name).await.unwrap();
    assert_eq!(l.macvlan_mode, Some(MacvlanMode::Passthru));
    assert_eq!(
        f.ph.sysctl("net.ipv4.conf.net1.arp_notify").await.unwrap(),
        "1"
    );
    // v1.1.1 leaves ndisc_notify alone.
    assert_eq!(
        f.ph.sysctl("net.ipv6.conf.net1.ndisc_notify")
            .await
            .unwrap(),
        "0"
    );
}

#[tokio::test]
async fn macvlan_rejects_mtu_above_master_and_missing_master() {
    if !require_privileged() {
        return;
    }
    let f = fixture().await;
    let spec = macvlan_spec(
        &f.uplink,
        MacvlanMode::Bridge,
        pod_link("net1", Some(9000), None),
    );
    let err = macvlan::add(&f.hh, &f.ph, &spec).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidSpec {
                kind: "macvlan",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("9000"));
    let spec = macvlan_spec("nosuch0", MacvlanMode::Bridge, pod_link("net1", None, None));
    let err = macvlan::add(&f.hh, &f.ph, &spec).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    // No default route in the host test netns: a master-less spec says so.
    let mut spec = spec;
    spec.master = None;
    let err = macvlan::add(&f.hh, &f.ph, &spec).await.unwrap_err();
    assert!(err.to_string().contains("no default route"), "{err}");
}

#[tokio::test]
async fn macvlan_master_defaults_to_default_route_link() {
    if !require_privileged() {
        return;
    }
    let f = fixture().await;
    let up = f.hh.find_link(&f.uplink).await.unwrap();
    f.hh.add_address(&up, "10.77.0.2/24".parse().unwrap())
        .await
        .unwrap();
    let default = RouteSpec::new("0.0.0.0/0".parse().unwrap()).via("10.77.0.1".parse().unwrap());
    f.hh.add_route(&up, &default, OnExists::Fail).await.unwrap();
    let mut spec = macvlan_spec(&f.uplink, MacvlanMode::Bridge, pod_link("net1", None, None));
    spec.master = None;
    let l = macvlan::add(&f.hh, &f.ph, &spec).await.unwrap();
    let l = f.ph.find_link(&l.name).await.unwrap();
    assert_eq!(l.parent, Some(up.index));
}

#[tokio::test]
async fn pod_name_taken_in_host_does_not_collide() {
    if !require_privileged() {
        return;
    }
    let f = fixture().await;
    // A host link already called "net1": the reference plugin needs a temp name for
    // this; creating straight into the pod netns does not.
    f.host.veth_pair("net1", &unique_name("np")).await.unwrap();
    let spec = macvlan_spec(&f.uplink, MacvlanMode::Bridge, pod_link("net1", None, None));
    let l = macvlan::add(&f.hh, &f.ph, &spec).await.unwrap();
    assert_eq!(l.name, "net1");
    // But a taken name inside the pod is an error.
    let err = macvlan::add(&f.hh, &f.ph, &spec).await.unwrap_err();
    assert!(err.is_exists(), "{err:?}");
}

#[tokio::test]
async fn ipvlan_modes_or_kernel_skip() {
    if !require_privileged() {
        return;
    }
    if skip_if_kernel_lacks("ipvlan_modes_or_kernel_skip", KernelFeature::Ipvlan) {
        return;
    }
    let f = fixture().await;
    let spec = IpvlanSpec {
        master: Some(f.uplink.clone()),
        master_in_pod: false,
        mode: IpvlanMode::L3,
        flag: IpvlanFlag::Private,
        link: pod_link("net1", Some(1400), None),
    };
    // The kernel has ipvlan: any error here, EOPNOTSUPP included, is a driver bug.
    let l = ipvlan::add(&f.hh, &f.ph, &spec).await.unwrap();
    let l = f.ph.find_link(&l.name).await.unwrap();
    assert_eq!(l.kind.as_deref(), Some("ipvlan"));
    assert_eq!(l.ipvlan, Some((IpvlanMode::L3, IpvlanFlag::Private)));
    assert_eq!(l.mtu, 1400);
    assert!(l.up);
    let spec2 = IpvlanSpec {
        mode: IpvlanMode::L2,
        flag: IpvlanFlag::Bridge,
        link: pod_link("net2", None, None),
        ..spec.clone()
    };
    let l2 = ipvlan::add(&f.hh, &f.ph, &spec2).await.unwrap();
    let l2 = f.ph.find_link(&l2.name).await.unwrap();
    assert_eq!(l2.ipvlan, Some((IpvlanMode::L2, IpvlanFlag::Bridge)));
}

#[tokio::test]
async fn ipvlan_refuses_a_mac() {
    let spec = IpvlanSpec {
        master: Some("x".into()),
        master_in_pod: false,
        mode: IpvlanMode::L2,
        flag: IpvlanFlag::Bridge,
        link: pod_link("net1", None, Some("02:00:00:00:00:01")),
    };
    if !require_privileged() {
        return;
    }
    let f = fixture().await;
    let err = ipvlan::add(&f.hh, &f.ph, &spec).await.unwrap_err();
    assert!(matches!(err, Error::InvalidSpec { kind: "ipvlan", .. }));
}

#[tokio::test]
async fn vlan_or_kernel_skip() {
    if !require_privileged() {
        return;
    }
    if skip_if_kernel_lacks("vlan_or_kernel_skip", KernelFeature::Vlan) {
        return;
    }
    let f = fixture().await;
    let spec = VlanSpec {
        master: f.uplink.clone(),
        master_in_pod: false,
        id: 42,
        link: pod_link("net1", Some(1400), Some("02:00:00:00:42:01")),
    };
    // The kernel has 802.1q: any error here (a wrongly chosen master answering
    // EOPNOTSUPP included) is a driver bug, not a skip.
    let l = vlan::add(&f.hh, &f.ph, &spec).await.unwrap();
    let l = f.ph.find_link(&l.name).await.unwrap();
    assert_eq!(l.kind.as_deref(), Some("vlan"));
    assert_eq!(l.vlan_id, Some(42));
    assert_eq!(l.mtu, 1400);
    assert!(l.up);
}

#[tokio::test]
async fn macvlan_master_in_pod() {
    if !require_privileged() {
        return;
    }
    let f = fixture().await;
    let inner = unique_name("pu");
    let parent = f.pod.veth_pair(&inner, &unique_name("pq")).await.unwrap();
    let mut spec = macvlan_spec(&inner, MacvlanMode::Bridge, pod_link("net1", None, None));
    spec.master_in_pod = true;
    let l = macvlan::add(&f.hh, &f.ph, &spec).await.unwrap();
    let l = f.ph.find_link(&l.name).await.unwrap();
    assert_eq!(l.parent, Some(parent.index));
    assert_eq!(l.parent_netns_id, None, "lower device is in the same netns");
    // The host's uplink name is unknown inside the pod.
    spec.master = Some(f.uplink.clone());
    spec.link.name = "net2".into();
    assert!(
        macvlan::add(&f.hh, &f.ph, &spec)
            .await
            .unwrap_err()
            .is_not_found()
    );
}

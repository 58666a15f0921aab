//! Privileged tests of namespaces and the Handle: each test makes its own netns.

use std::net::IpAddr;
use std::os::unix::process::CommandExt;

use ipnet::IpNet;
use plexus_netlink::test_util::{TestNetns, assert_peek_agrees, require_privileged, unique_name};
use plexus_netlink::{Error, Handle, LinkChange, MacAddr, OnExists, RouteSpec, netns};

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[tokio::test]
async fn handle_is_bound_to_its_netns() {
    if !require_privileged() {
        return;
    }
    let ns = TestNetns::new().await;
    let h = ns.handle().await;
    let names: Vec<String> = h
        .links()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names, vec!["lo".to_string()]);

    let a = unique_name("ha");
    let b = unique_name("hb");
    ns.veth_pair(&a, &b).await.unwrap();
    // Visible through the test netns handle, invisible from this process's netns.
    assert!(h.try_find_link(&a).await.unwrap().is_some());
    let host = Handle::current().await.unwrap();
    assert!(host.try_find_link(&a).await.unwrap().is_none());
    assert_ne!(host.netns().inode().unwrap(), h.netns().inode().unwrap());
}

#[tokio::test]
async fn find_link_errors_and_try_find_returns_none() {
    if !require_privileged() {
        return;
    }
    let ns = TestNetns::new().await;
    let h = ns.handle().await;
    assert!(h.try_find_link("nope0").await.unwrap().is_none());
    let err = h.find_link("nope0").await.unwrap_err();
    assert!(matches!(err, Error::LinkNotFound { .. }), "{err:?}");
    assert!(err.is_not_found());
    assert!(err.to_string().contains("nope0"));
    // Deleting something already gone succeeds.
    assert!(!h.delete_link_by_name("nope0").await.unwrap());
}

/// `peek_link` reads by ioctl, without the rtnl lock, in the handle's own netns: what it
/// reports agrees with the kernel's full netlink answer, through changes, and a name that
/// is not there (or that no link could have) is `None`.
#[tokio::test]
async fn peek_link_agrees_with_the_netlink_answer() {
    if !require_privileged() {
        return;
    }
    let ns = TestNetns::new().await;
    let h = ns.handle().await;
    let (a, b) = (unique_name("pa"), unique_name("pb"));
    let link = ns.veth_pair(&a, &b).await.unwrap();
    assert_peek_agrees(&h.peek_link(&a).unwrap().unwrap(), &link);
    let mac: MacAddr = "02:aa:bb:cc:dd:07".parse().unwrap();
    h.set_down(&link).await.unwrap();
    let change = LinkChange::new().mtu(1300).mac(mac).promisc(true);
    h.set_link(&link, &change).await.unwrap();
    let peeked = h.peek_link(&a).unwrap().unwrap();
    assert_peek_agrees(&peeked, &h.find_link(&a).await.unwrap());
    assert_eq!(
        (peeked.mtu, peeked.mac, peeked.up, peeked.promisc),
        (1300, Some(mac), false, true)
    );
    // Another netns's handle does not see it; missing and impossible names are None.
    let other = TestNetns::new().await;
    assert!(other.handle().await.peek_link(&a).unwrap().is_none());
    assert!(h.peek_link("nope0").unwrap().is_none());
    assert!(h.peek_link("a-name-far-too-long").unwrap().is_none());
    assert!(h.peek_link("").unwrap().is_none());
}

#[tokio::test]
async fn link_attributes_change_in_one_request() {
    if !require_privileged() {
        return;
    }
    let ns = TestNetns::new().await;
    let h = ns.handle().await;
    let a = unique_name("la");
    let b = unique_name("lb");
    let link = ns.veth_pair(&a, &b).await.unwrap();
    assert!(link.up);
    assert_eq!(link.kind.as_deref(), Some("veth"));

    let mac: MacAddr = "02:aa:bb:cc:dd:01".parse().unwrap();
    let renamed = unique_name("lr");
    h.set_down(&link).await.unwrap();
    let change = LinkChange::new()
        .name(renamed.clone())
        .mtu(1400)
        .mac(mac)
        .group(4242)
        .promisc(true)
        .up(true);
    h.set_link(&link, &change).await.unwrap();
    let got = h.find_link(&renamed).await.unwrap();
    assert_eq!(got.index, link.index);
    assert_eq!(got.mtu, 1400);
    assert_eq!(got.mac, Some(mac));
    assert_eq!(got.group, 4242);
    assert!(got.promisc);
    assert!(got.up);
    assert!(h.try_find_link(&a).await.unwrap().is_none());

    h.set_down(&got).await.unwrap();
    assert!(!h.find_link(&renamed).await.unwrap().up);
    h.delete_link(&got).await.unwrap();
    // The peer goes with it; deleting again is fine.
    assert!(h.try_find_link(&b).await.unwrap().is_none());
    h.delete_link(&got).await.unwrap();
}

#[tokio::test]
async fn move_and_rename_in_one_request() {
    if !require_privileged() {
        return;
    }
    let host = TestNetns::new().await;
    let pod = TestNetns::new().await;
    let hh = host.handle().await;
    let ph = pod.handle().await;
    let a = unique_name("ma");
    let b = unique_name("mb");
    let link = host.veth_pair(&a, &b).await.unwrap();
    let change = LinkChange::new().name("eth7").mtu(1300).group(77).up(true);
    hh.move_link(&link, pod.netns(), &change).await.unwrap();
    assert!(hh.try_find_link(&a).await.unwrap().is_none());
    let moved = ph.find_link("eth7").await.unwrap();
    assert_eq!(moved.mtu, 1300);
    assert_eq!(moved.group, 77);
    assert!(moved.up);
    // The peer stayed behind.
    assert!(hh.try_find_link(&b).await.unwrap().is_some());
}

#[tokio::test]
async fn addresses_and_routes() {
    if !require_privileged() {
        return;
    }
    let ns = TestNetns::new().await;
    let h = ns.handle().await;
    let a = unique_name("ra");
    let b = unique_name("rb");
    let link = ns.veth_pair(&a, &b).await.unwrap();

    let v4 = net("10.99.0.2/24");
    let v6 = net("fd00:99::2/64");
    h.add_address(&link, v4).await.unwrap();
    h.add_address(&link, v6).await.unwrap();
    let err = h.add_address(&link, v4).await.unwrap_err();
    assert!(err.is_exists(), "{err:?}");
    let addrs: Vec<IpNet> = h
        .addresses(Some(link.index))
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.addr)
        .collect();
    assert!(addrs.contains(&v4) && addrs.contains(&v6), "{addrs:?}");

    let gw: IpAddr = "10.99.0.1".parse().unwrap();
    let default = RouteSpec::new(net("0.0.0.0/0")).via(gw);
    h.add_route(&link, &default, OnExists::Fail).await.unwrap();
    let err = h
        .add_route(&link, &default, OnExists::Fail)
        .await
        .unwrap_err();
    assert!(err.is_exists(), "{err:?}");
    h.add_route(&link, &default, OnExists::Ignore)
        .await
        .unwrap();
    let mut extra = RouteSpec::new(net("192.168.77.0/24")).via(gw);
    extra.priority = Some(50);
    extra.mtu = Some(1280);
    h.add_route(&link, &extra, OnExists::Fail).await.unwrap();

    let defaults = h.default_routes(link.index, Some(false)).await.unwrap();
    assert_eq!(defaults.len(), 1, "{defaults:?}");
    assert_eq!(defaults[0].gateway, Some(gw));
    assert_eq!(
        defaults[0].protocol, 3,
        "routes are added with proto boot like netlink.RouteAdd"
    );
    assert!(
        h.default_routes(link.index, Some(true))
            .await
            .unwrap()
            .is_empty()
    );
    let routes = h.routes().await.unwrap();
    let r = routes
        .iter()
        .find(|r| r.dst == net("192.168.77.0/24"))
        .expect("extra route listed");
    assert_eq!((r.priority, r.mtu, r.table), (Some(50), Some(1280), 254));

    let mixed = RouteSpec::new(net("fd00:1::/64")).via(gw);
    let err = h
        .add_route(&link, &mixed, OnExists::Fail)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidSpec { kind: "route", .. }),
        "{err:?}"
    );
    h.delete_route(&link, &extra).await.unwrap();
    h.delete_route(&link, &extra).await.unwrap();
    h.delete_route(&link, &default).await.unwrap();
    assert!(h.default_routes(link.index, None).await.unwrap().is_empty());

    h.delete_address(&link, v4).await.unwrap();
    h.delete_address(&link, v4).await.unwrap();
    let left: Vec<IpNet> = h
        .addresses(Some(link.index))
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.addr)
        .collect();
    assert!(!left.contains(&v4) && left.contains(&v6), "{left:?}");
}

#[tokio::test]
async fn sysctl_follows_thread_netns() {
    if !require_privileged() {
        return;
    }
    let ns = TestNetns::new().await;
    let h = ns.handle().await;
    let host = Handle::current().await.unwrap();
    let key = "net.ipv4.conf.lo.arp_notify";
    let host_before = host.sysctl(key).await.unwrap();
    let flipped = if host_before == "1" { "0" } else { "1" };
    h.set_sysctl(key, flipped).await.unwrap();
    assert_eq!(h.sysctl(key).await.unwrap(), flipped);
    assert_eq!(host.sysctl(key).await.unwrap(), host_before);
    // A link that exists only in the test netns has sysctls only there.
    let a = unique_name("sa");
    let b = unique_name("sb");
    ns.veth_pair(&a, &b).await.unwrap();
    let key = format!("net/ipv6/conf/{a}/accept_dad");
    h.set_sysctl(&key, "0").await.unwrap();
    assert_eq!(h.sysctl(&key).await.unwrap(), "0");
    let err = host.sysctl(&key).await.unwrap_err();
    assert!(matches!(err, Error::Sysctl { .. }));
}

#[tokio::test]
async fn child_process_enters_netns_before_exec() {
    if !require_privileged() {
        return;
    }
    let ns = TestNetns::new().await;
    let a = unique_name("ca");
    let b = unique_name("cb");
    ns.veth_pair(&a, &b).await.unwrap();
    let path = std::ffi::CString::new(ns.path().into_os_string().into_encoded_bytes()).unwrap();
    let mut cmd = std::process::Command::new("cat");
    cmd.arg("/proc/self/net/dev");
    // SAFETY: enter_netns_in_child only makes async-signal-safe calls.
    unsafe {
        cmd.pre_exec(move || netns::enter_netns_in_child(&path));
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&a) && text.contains(&b), "{text}");
    let here = std::fs::read_to_string("/proc/self/net/dev").unwrap();
    assert!(!here.contains(&a));
}

#[tokio::test]
async fn run_in_executes_inside_the_netns() {
    if !require_privileged() {
        return;
    }
    let ns = TestNetns::new().await;
    let inode = ns.netns().inode().unwrap();
    let seen = netns::run_in(ns.netns(), || {
        std::fs::metadata("/proc/thread-self/ns/net")
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(seen, inode);
    let seen = netns::run_in_blocking(ns.netns(), || {
        std::fs::metadata("/proc/thread-self/ns/net")
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
    })
    .unwrap()
    .unwrap();
    assert_eq!(seen, inode);
    // The calling thread did not move.
    let mine = std::fs::metadata("/proc/thread-self/ns/net").unwrap();
    assert_ne!(std::os::unix::fs::MetadataExt::ino(&mine), inode);
}

#[tokio::test]
async fn named_netns_create_and_delete() {
    if !require_privileged() {
        return;
    }
    let name = format!("plexus-t-{}-named", std::process::id());
    let ns = netns::create_named(&name).unwrap();
    assert!(
        std::path::Path::new(netns::NETNS_RUN_DIR)
            .join(&name)
            .exists()
    );
    let again = netns::create_named(&name).unwrap_err();
    assert!(matches!(again, Error::CreateNetns { .. }));
    drop(ns);
    netns::delete_named(&name).unwrap();
    assert!(
        !std::path::Path::new(netns::NETNS_RUN_DIR)
            .join(&name)
            .exists()
    );
    netns::delete_named(&name).unwrap();
}

//! `unaddress::remove_addresses`: every listed address removed from its link in one job
//! inside the namespace; others left alone; links and addresses already gone are fine.

use ipnet::IpNet;
use plexus_netlink::test_util::{TestNetns, require_privileged, unique_name};
use plexus_netlink::unaddress::{LinkAddresses, remove_addresses};
use plexus_netlink::{Handle, Link};

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

async fn addresses(h: &Handle, link: &Link) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = h
        .addresses(Some(link.index))
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.addr)
        .filter(|a| !matches!(a, IpNet::V6(v6) if v6.addr().segments()[0] == 0xfe80))
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn removes_exactly_the_listed_addresses_in_one_trip() {
    if !require_privileged() {
        return;
    }
    let ns = TestNetns::new().await;
    let h = ns.handle().await;
    let (a, b) = (unique_name("ua"), unique_name("ub"));
    let la = ns.veth_pair(&a, &b).await.unwrap();
    let lb = h.find_link(&b).await.unwrap();
    for (link, addr) in [
        (&la, "10.98.0.2/24"),
        (&la, "fd00:98::2/64"),
        (&la, "10.98.1.2/24"),
        (&lb, "10.98.2.2/24"),
    ] {
        h.add_address(link, net(addr)).await.unwrap();
    }
    let listed = vec![
        LinkAddresses {
            link: a.clone(),
            addrs: vec![net("10.98.0.2/24"), net("fd00:98::2/64")],
        },
        LinkAddresses {
            link: b.clone(),
            // The second was never there: already gone is fine.
            addrs: vec![net("10.98.2.2/24"), net("10.98.3.3/24")],
        },
        LinkAddresses {
            link: unique_name("gone"),
            addrs: vec![net("10.98.4.4/24")],
        },
    ];
    let results = remove_addresses(ns.netns(), listed.clone()).await.unwrap();
    assert_eq!(results.len(), 3);
    for r in &results {
        assert!(r.is_ok(), "{r:?}");
    }
    assert_eq!(
        addresses(&h, &la).await,
        [net("10.98.1.2/24")],
        "the unlisted one stays"
    );
    assert!(addresses(&h, &lb).await.is_empty());
    // Idempotent: everything is gone already.
    let again = remove_addresses(ns.netns(), listed).await.unwrap();
    assert!(again.iter().all(|r| r.is_ok()), "{again:?}");
    assert_eq!(addresses(&h, &la).await, [net("10.98.1.2/24")]);
}

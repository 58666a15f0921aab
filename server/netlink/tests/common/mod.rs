//! Shared fixture of the driver tests: a "host" test netns with a veth uplink and a
//! "pod" test netns.

#![allow(dead_code)]

use plexus_netlink::Handle;
use plexus_netlink::link::{DEFAULT_LINK_GROUP, MacvlanMode, MacvlanSpec, PodLink};
use plexus_netlink::test_util::{TestNetns, unique_name};

pub struct Fixture {
    pub host: TestNetns,
    pub pod: TestNetns,
    pub hh: Handle,
    pub ph: Handle,
    pub uplink: String,
}

pub async fn fixture() -> Fixture {
    let host = TestNetns::new().await;
    let pod = TestNetns::new().await;
    let uplink = unique_name("up");
    let peer = unique_name("upp");
    host.veth_pair(&uplink, &peer).await.unwrap();
    let hh = host.handle().await;
    let ph = pod.handle().await;
    Fixture {
        host,
        pod,
        hh,
        ph,
        uplink,
    }
}

pub fn pod_link(name: &str, mtu: Option<u32>, mac: Option<&str>) -> PodLink {
    PodLink {
        name: name.to_string(),
        mtu,
        mac: mac.map(|m| m.parse().unwrap()),
        group: DEFAULT_LINK_GROUP,
    }
}

pub fn macvlan_spec(master: &str, mode: MacvlanMode, link: PodLink) -> MacvlanSpec {
    MacvlanSpec {
        master: Some(master.to_string()),
        master_in_pod: false,
        mode,
        link,
        layer3: false,
    }
}

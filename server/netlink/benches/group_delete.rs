//! Teardown cost of a pod's links: one RTM_DELLINK per link vs one group delete.
//!
//! Each round builds a pod like the perf baseline (a bridge+veth eth0 and two macvlans on
//! a veth uplink, in test namespaces), then tears it down either link by link or with
//! `Handle::delete_group`. Prints medians (setup of the links too). Needs root: `sudo cargo bench -p plexus-netlink`.

use std::time::{Duration, Instant};

use plexus_netlink::Handle;
use plexus_netlink::link::{BridgeSpec, MacvlanMode, MacvlanSpec, PodLink, bridge, macvlan};
use plexus_netlink::test_util::{TestNetns, unique_name};

const ROUNDS: usize = 15;

async fn build_pod(host: &Handle, pod: &Handle, uplink: &str, br: &str) {
    bridge::add(host, pod, &BridgeSpec::new(br, PodLink::new("eth0")))
        .await
        .expect("bridge attach");
    for name in ["net1", "net2"] {
        let spec = MacvlanSpec {
            master: Some(uplink.to_string()),
            master_in_pod: false,
            mode: MacvlanMode::Bridge,
            link: PodLink::new(name),
            layer3: false,
        };
        macvlan::add(host, pod, &spec)
            .await
            .expect("macvlan attach");
    }
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("group_delete bench needs root (it creates network namespaces)");
        std::process::exit(1);
    }
    let host = TestNetns::new().await;
    let uplink = unique_name("bu");
    host.veth_pair(&uplink, &unique_name("bq"))
        .await
        .expect("uplink");
    let hh = host.handle().await;
    let br = unique_name("bb");
    let mut one_by_one = Vec::new();
    let mut grouped = Vec::new();
    let mut setup = Vec::new();
    for _ in 0..ROUNDS {
        for grouped_delete in [false, true] {
            let pod = TestNetns::new().await;
            let ph = pod.handle().await;
            let start = Instant::now();
            build_pod(&hh, &ph, &uplink, &br).await;
            setup.push(start.elapsed());
            let start = Instant::now();
            if grouped_delete {
                ph.delete_group(plexus_netlink::link::DEFAULT_LINK_GROUP)
                    .await
                    .expect("group delete");
                grouped.push(start.elapsed());
            } else {
                for name in ["eth0", "net1", "net2"] {
                    ph.delete_link_by_name(name).await.expect("delete");
                }
                one_by_one.push(start.elapsed());
            }
            assert_eq!(ph.links().await.expect("links").len(), 1, "only lo left");
        }
    }
    println!(
        "pod setup, 3 links (bridge+veth, 2 macvlan, links only, no IPAM), {} runs: median {:.1} ms",
        setup.len(),
        median(setup)
    );
    println!(
        "pod teardown, 3 links (veth+2 macvlan), {ROUNDS} rounds: one-by-one median {:.1} ms, group delete median {:.1} ms",
        median(one_by_one),
        median(grouped)
    );
}

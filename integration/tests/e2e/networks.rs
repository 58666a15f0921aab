//! Pods with secondary networks through NRI: interface naming, static IP and MAC,
//! what plexusd records, traffic between pods, and complete teardown.

use std::time::Duration;

use plexus_integration::containerd::PRIMARY_NETWORK;
use plexus_integration::env::{BRIDGE, IOT, MACVLAN, NAMESPACE};
use plexus_integration::{Env, PodSpec, require_privileged, traffic};

use crate::common::{assert_nothing_left, interface_names, ipv4_of, secondary, wait_nothing_left};

fn in_subnet(addr: &str, subnet: &str) -> bool {
    let net: ipnet::Ipv4Net = subnet.parse().unwrap();
    let a: ipnet::Ipv4Net = addr.parse().unwrap();
    net.contains(&a.addr()) && a.prefix_len() == net.prefix_len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_networks_give_eth0_net1_net2_and_teardown_removes_everything() {
    if !require_privileged() {
        return;
    }
    let env = Env::start().await.unwrap();
    let spec = PodSpec::new(NAMESPACE, "two-nets").networks(&format!("{MACVLAN},{BRIDGE}"));
    let pod = env.containerd.run_pod(&spec).await.unwrap();

    assert_eq!(interface_names(&pod), ["lo", "eth0", "net1", "net2"]);
    let net1 = pod.interface("net1").unwrap();
    let net2 = pod.interface("net2").unwrap();
    assert!(net1.up && net2.up, "{net1:?} {net2:?}");
    assert!(
        in_subnet(&net1.addresses[0], &env.subnets.macvlan),
        "{net1:?}"
    );
    assert!(
        in_subnet(&net2.addresses[0], &env.subnets.bridge),
        "{net2:?}"
    );

    let all = env.plexus.attachments_of(&pod.id).await.unwrap();
    let eth0 = all.iter().find(|a| a.interface == "eth0").unwrap();
    assert_eq!(
        (eth0.driver.as_str(), eth0.origin.as_str()),
        ("runtime", "cluster")
    );
    let mut atts = secondary(all);
    atts.sort_by(|a, b| a.interface.cmp(&b.interface));
    assert_eq!(atts.len(), 2, "{atts:?}");
    assert_eq!(atts[0].interface, "net1");
    assert_eq!(atts[0].network, format!("{NAMESPACE}/{MACVLAN}"));
    assert_eq!(atts[0].ips, net1.addresses);
    assert_eq!(atts[0].mac, net1.mac);
    assert_eq!(atts[1].network, format!("{NAMESPACE}/{BRIDGE}"));
    assert_eq!(atts[1].ips, net2.addresses);
    let pod_ref = atts[0].pod.clone().unwrap();
    assert_eq!(
        (pod_ref.namespace.as_str(), pod_ref.name.as_str()),
        (NAMESPACE, "two-nets")
    );
    assert_eq!(env.plexus_leases().len(), 2);
    // Host ends of eth0's and net2's veths (the macvlan has none).
    let links = env.host_links_left().unwrap();
    assert_eq!(links.len(), 2, "{links:?}");

    env.containerd.delete_pod(&pod).await.unwrap();
    assert!(!pod.netns_exists());
    wait_nothing_left(&env, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_interfaces_static_ip_and_mac_are_honoured() {
    if !require_privileged() {
        return;
    }
    let env = Env::start().await.unwrap();
    let prefix = env.subnets.iot.trim_end_matches(".0/24");
    let ip = format!("{prefix}.10/24");
    let selection = format!(
        r#"[{{"name":"{IOT}","interface":"iot0","ips":["{ip}"],"mac":"02:42:ac:11:00:0a"}},
            {{"name":"{BRIDGE}","namespace":"{NAMESPACE}","interface":"br7"}}]"#
    );
    let spec = PodSpec::new(NAMESPACE, "named").networks(&selection);
    let pod = env.containerd.run_pod(&spec).await.unwrap();

    let iot0 = pod.interface("iot0").unwrap();
    assert_eq!(iot0.addresses, std::slice::from_ref(&ip));
    assert_eq!(iot0.mac, "02:42:ac:11:00:0a");
    let br7 = pod.interface("br7").unwrap();
    assert!(in_subnet(&br7.addresses[0], &env.subnets.bridge), "{br7:?}");
    assert!(pod.interface("net1").is_err());

    let atts = secondary(env.plexus.attachments_of(&pod.id).await.unwrap());
    assert_eq!(atts.len(), 2, "{atts:?}");
    let iot = atts.iter().find(|a| a.interface == "iot0").unwrap();
    assert_eq!(iot.ips, std::slice::from_ref(&ip));
    assert_eq!(iot.mac, "02:42:ac:11:00:0a");
    assert_eq!(iot.network, format!("{NAMESPACE}/{IOT}"));

    // network-status in Multus's shape: the primary (eth0, made by the runtime, named by
    // clusterNetwork) first with "default": true, then one entry per secondary network,
    // keys in Multus's order, addresses without prefix length, 4-space indented like
    // Go's json.MarshalIndent output that Multus writes.
    let text = env.plexus.network_status(&pod).await.unwrap();
    let ctl = env
        .plexus
        .plexusctl(&["status", "--sandbox", &pod.id])
        .unwrap();
    assert_eq!(
        ctl.trim_end(),
        text,
        "plexusctl status differs from the API"
    );
    assert!(text.starts_with("[{\n    \"name\": "), "{text}");
    let mut status: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_str(&text).unwrap();
    assert_eq!(status.len(), 3, "{text}");
    let primary = status.remove(0);
    let keys: Vec<&str> = primary.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["name", "interface", "ips", "mac", "mtu", "default", "dns"],
        "{text}"
    );
    let eth0 = pod.interface("eth0").unwrap();
    assert_eq!(primary["name"], PRIMARY_NETWORK, "{text}");
    assert_eq!(primary["interface"], "eth0");
    assert_eq!(primary["default"], true);
    assert_eq!(primary["mac"], eth0.mac.as_str());
    assert_eq!(
        primary["ips"],
        serde_json::json!([eth0.addresses[0].split('/').next().unwrap()])
    );
    let keys: Vec<&str> = status[0].keys().map(String::as_str).collect();
    assert_eq!(keys, ["name", "interface", "ips", "mac", "dns"], "{text}");
    let expect_iot = serde_json::json!({
        "name": format!("{NAMESPACE}/{IOT}"), "interface": "iot0",
        "ips": [ip.trim_end_matches("/24")], "mac": "02:42:ac:11:00:0a", "dns": {},
    });
    assert_eq!(serde_json::Value::Object(status[0].clone()), expect_iot);
    assert_eq!(status[1]["name"], format!("{NAMESPACE}/{BRIDGE}"));
    assert_eq!(status[1]["interface"], "br7");
    assert_eq!(status[1]["mac"], br7.mac.as_str());
    // A runtime retry of the same SetupPod answers the same and changes nothing.
    let retried = env.plexus.retry_setup(&pod, &spec).await.unwrap();
    assert_eq!(retried, text);
    let after = secondary(env.plexus.attachments_of(&pod.id).await.unwrap());
    assert_eq!(after, atts, "a retried SetupPod changed the records");

    env.containerd.delete_pod(&pod).await.unwrap();
    wait_nothing_left(&env, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_on_the_same_macvlan_reach_each_other_with_unicast_and_multicast() {
    if !require_privileged() {
        return;
    }
    let env = Env::start().await.unwrap();
    let a = env
        .containerd
        .run_pod(&PodSpec::new(NAMESPACE, "mac-a").networks(MACVLAN))
        .await
        .unwrap();
    let b = env
        .containerd
        .run_pod(&PodSpec::new(NAMESPACE, "mac-b").networks(MACVLAN))
        .await
        .unwrap();
    let ip_a = ipv4_of(&a, "net1");
    let ip_b = ipv4_of(&b, "net1");
    assert_ne!(ip_a, ip_b);

    a.ping("net1", &ip_b, 3).unwrap();
    b.ping("net1", &ip_a, 3).unwrap();

    let helper = std::path::Path::new(env!("CARGO_BIN_EXE_plexus-e2e-udp"));
    let got = traffic::multicast(helper, &a, &ip_a, &b, &ip_b, "plexus-mdns").unwrap();
    assert!(
        got.starts_with(&format!("plexus-mdns from {ip_a}:")),
        "{got}"
    );

    env.containerd.delete_pod(&a).await.unwrap();
    env.containerd.delete_pod(&b).await.unwrap();
    wait_nothing_left(&env, Duration::from_secs(5)).await;
    assert_nothing_left(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_plugged_network_via_plexusctl_is_torn_down_with_the_pod() {
    if !require_privileged() {
        return;
    }
    let env = Env::start().await.unwrap();
    let spec = PodSpec::new(NAMESPACE, "hotplug").networks(MACVLAN);
    let pod = env.containerd.run_pod(&spec).await.unwrap();
    assert!(pod.interface("net2").is_err());

    let pod_ref = format!("{NAMESPACE}/hotplug");
    let out = env
        .plexus
        .plexusctl(&["attach", "--pod", &pod_ref, "--output", "json", BRIDGE])
        .unwrap();
    let net2 = pod.interface("net2").unwrap();
    assert!(
        in_subnet(&net2.addresses[0], &env.subnets.bridge),
        "{net2:?}"
    );
    assert!(out.contains("net2"), "plexusctl attach printed: {out}");
    let atts = secondary(env.plexus.attachments_of(&pod.id).await.unwrap());
    let hot = atts.iter().find(|a| a.interface == "net2").unwrap();
    assert_eq!(hot.origin, "hotplug");

    env.containerd.delete_pod(&pod).await.unwrap();
    wait_nothing_left(&env, Duration::from_secs(5)).await;
}

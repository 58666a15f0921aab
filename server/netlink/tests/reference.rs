//! Parity with the reference CNI plugins: the same attachment made by the plugin binary
//! (run in a "host" test netns) and by our driver must leave the pod in the same state,
//! compared through `inspect::Snapshot::stable` text. Needs the plugins in
//! `/usr/lib/cni` (or `PLEXUS_CNI_BIN`); when privileged tests are required their absence
//! fails the test (`test_util::unavailable`).

use std::ffi::CString;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use plexus_netlink::inspect::{Snapshot, snapshot};
use plexus_netlink::link::{
    BridgeSpec, HostDeviceSpec, MacvlanMode, MacvlanSpec, PodLink, bridge, host_device, macvlan,
};
use plexus_netlink::test_util::{TestNetns, require_privileged, unavailable, unique_name};
use plexus_netlink::{Handle, Link, OnExists, RouteSpec, netns};

fn cni_bin() -> Option<PathBuf> {
    let dir =
        PathBuf::from(std::env::var("PLEXUS_CNI_BIN").unwrap_or_else(|_| "/usr/lib/cni".into()));
    if dir.join("macvlan").exists() {
        return Some(dir);
    }
    unavailable(&format!(
        "reference CNI plugins not found in {}",
        dir.display()
    ));
    None
}

/// Runs a reference plugin ADD with the host netns entered before exec.
fn run_plugin(
    bin: &std::path::Path,
    command: &str,
    host: &TestNetns,
    pod: &TestNetns,
    ifname: &str,
    conf: &str,
) {
    let plugin: String = conf
        .split("\"type\":\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let host_path = CString::new(host.path().into_os_string().into_encoded_bytes()).unwrap();
    let mut cmd = Command::new(bin.join(&plugin));
    cmd.env_clear()
        .env("CNI_COMMAND", command)
        .env(
            "CNI_CONTAINERID",
            format!("plexus-ref-{}", std::process::id()),
        )
        .env("CNI_NETNS", pod.path())
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: enter_netns_in_child only makes async-signal-safe calls.
    unsafe {
        cmd.pre_exec(move || netns::enter_netns_in_child(&host_path));
    }
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{plugin} {command} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What `ipam.ConfigureIface` does after our driver: addresses, then routes via the gateway.
async fn configure(pod: &Handle, link: &Link, addr: &str, gw: &str) {
    pod.add_address(link, addr.parse().unwrap()).await.unwrap();
    let route = RouteSpec::new("0.0.0.0/0".parse().unwrap()).via(gw.parse().unwrap());
    pod.add_route(link, &route, OnExists::Fail).await.unwrap();
}

fn comparable(s: &Snapshot) -> String {
    let mut s = s.stable();
    // The link group is plexus's own teardown marker; the plugins leave 0.
    for l in &mut s.links {
        l.group = 0;
    }
    s.to_string()
}

#[tokio::test]
async fn macvlan_matches_reference_plugin() {
    if !require_privileged() {
        return;
    }
    let Some(bin) = cni_bin() else { return };
    let host = TestNetns::new().await;
    let uplink = unique_name("ru");
    host.veth_pair(&uplink, &unique_name("rp")).await.unwrap();
    let hh = host.handle().await;

    let ref_pod = TestNetns::new().await;
    let conf = format!(
        r#"{{"cniVersion":"1.0.0","name":"parity","type":"macvlan","master":"{uplink}","mode":"private","mtu":1400,"ipam":{{"type":"static","addresses":[{{"address":"10.9.0.2/24","gateway":"10.9.0.1"}}],"routes":[{{"dst":"0.0.0.0/0"}}]}}}}"#
    );
    run_plugin(&bin, "ADD", &host, &ref_pod, "net1", &conf);
    let want = comparable(&snapshot(&ref_pod.handle().await).await.unwrap());

    let pod = TestNetns::new().await;
    let ph = pod.handle().await;
    let mut link = PodLink::new("net1");
    link.mtu = Some(1400);
    let spec = MacvlanSpec {
        master: Some(uplink.clone()),
        master_in_pod: false,
        mode: MacvlanMode::Private,
        link,
        layer3: true,
    };
    let l = macvlan::add(&hh, &ph, &spec).await.unwrap();
    configure(&ph, &l, "10.9.0.2/24", "10.9.0.1").await;
    let got = comparable(&snapshot(&ph).await.unwrap());
    assert_eq!(got, want, "ours:\n{got}\nreference:\n{want}");
}

#[tokio::test]
async fn bridge_matches_reference_plugin() {
    if !require_privileged() {
        return;
    }
    let Some(bin) = cni_bin() else { return };
    // Separate host netns per side: the bridge and its sysctls live there.
    let mut results = Vec::new();
    for reference in [true, false] {
        let host = TestNetns::new().await;
        let pod = TestNetns::new().await;
        if reference {
            let conf = r#"{"cniVersion":"1.0.0","name":"parity","type":"bridge","bridge":"br-par","isGateway":true,"hairpinMode":true,"mtu":1450,"ipam":{"type":"static","addresses":[{"address":"10.10.0.2/24","gateway":"10.10.0.1"}],"routes":[{"dst":"0.0.0.0/0"}]}}"#;
            run_plugin(&bin, "ADD", &host, &pod, "eth1", conf);
        } else {
            let hh = host.handle().await;
            let ph = pod.handle().await;
            let mut link = PodLink::new("eth1");
            link.mtu = Some(1450);
            let mut spec = BridgeSpec::new("br-par", link);
            spec.hairpin = true;
            spec.layer3 = true;
            spec.gateways = vec!["10.10.0.1/24".parse().unwrap()];
            let att = bridge::add(&hh, &ph, &spec).await.unwrap();
            configure(&ph, &att.pod_link, "10.10.0.2/24", "10.10.0.1").await;
        }
        let host_state = comparable(&snapshot(&host.handle().await).await.unwrap());
        let pod_state = comparable(&snapshot(&pod.handle().await).await.unwrap());
        results.push((host_state, pod_state));
    }
    let (want, got) = (&results[0], &results[1]);
    assert_eq!(
        got.1, want.1,
        "pod differs; ours:\n{}\nreference:\n{}",
        got.1, want.1
    );
    assert_eq!(
        got.0, want.0,
        "host differs; ours:\n{}\nreference:\n{}",
        got.0, want.0
    );
}

#[tokio::test]
async fn host_device_matches_reference_plugin_in_and_out() {
    if !require_privileged() {
        return;
    }
    let Some(bin) = cni_bin() else { return };
    let host = TestNetns::new().await;
    let dev = unique_name("rd");
    host.veth_pair(&dev, &unique_name("rq")).await.unwrap();
    let hh = host.handle().await;
    let conf = format!(
        r#"{{"cniVersion":"1.0.0","name":"parity","type":"host-device","device":"{dev}"}}"#
    );

    let ref_pod = TestNetns::new().await;
    run_plugin(&bin, "ADD", &host, &ref_pod, "net5", &conf);
    let want_pod = comparable(&snapshot(&ref_pod.handle().await).await.unwrap());
    let want_host = comparable(&snapshot(&hh).await.unwrap());
    run_plugin(&bin, "DEL", &host, &ref_pod, "net5", &conf);
    // The plugin leaves the device down in the host, with the alias it set.
    let want_after = comparable(&snapshot(&hh).await.unwrap());
    assert!(hh.find_link(&dev).await.is_ok());

    let pod = TestNetns::new().await;
    let ph = pod.handle().await;
    let att = host_device::add(&hh, &ph, &HostDeviceSpec::Name(dev.clone()), "net5")
        .await
        .unwrap();
    let got_pod = comparable(&snapshot(&ph).await.unwrap());
    let got_host = comparable(&snapshot(&hh).await.unwrap());
    assert_eq!(
        got_pod, want_pod,
        "ours:\n{got_pod}\nreference:\n{want_pod}"
    );
    assert_eq!(got_host, want_host);
    host_device::del(&hh, &ph, "net5", Some(&att.original_name))
        .await
        .unwrap();
    let after = comparable(&snapshot(&hh).await.unwrap());
    assert_eq!(
        after, want_after,
        "ours:\n{after}\nreference:\n{want_after}"
    );
}

#[tokio::test]
async fn layer2_bridge_and_macvlan_match_reference_plugins() {
    if !require_privileged() {
        return;
    }
    let Some(bin) = cni_bin() else { return };
    let mut results = Vec::new();
    for reference in [true, false] {
        let host = TestNetns::new().await;
        let uplink = "uplink0";
        host.veth_pair(uplink, "uplink0p").await.unwrap();
        let pod = TestNetns::new().await;
        if reference {
            let br = r#"{"cniVersion":"1.0.0","name":"l2","type":"bridge","bridge":"br-l2","promiscMode":true}"#;
            run_plugin(&bin, "ADD", &host, &pod, "eth1", br);
            let mv = r#"{"cniVersion":"1.0.0","name":"l2m","type":"macvlan","master":"uplink0","mode":"vepa"}"#;
            run_plugin(&bin, "ADD", &host, &pod, "net1", mv);
        } else {
            let hh = host.handle().await;
            let ph = pod.handle().await;
            let mut spec = BridgeSpec::new("br-l2", PodLink::new("eth1"));
            spec.promisc = true;
            bridge::add(&hh, &ph, &spec).await.unwrap();
            let spec = MacvlanSpec {
                master: Some(uplink.to_string()),
                master_in_pod: false,
                mode: MacvlanMode::Vepa,
                link: PodLink::new("net1"),
                layer3: false,
            };
            macvlan::add(&hh, &ph, &spec).await.unwrap();
        }
        let host_state = comparable(&snapshot(&host.handle().await).await.unwrap());
        let pod_state = comparable(&snapshot(&pod.handle().await).await.unwrap());
        results.push((host_state, pod_state));
    }
    let (want, got) = (&results[0], &results[1]);
    assert_eq!(
        got.1, want.1,
        "pod differs; ours:\n{}\nreference:\n{}",
        got.1, want.1
    );
    assert_eq!(
        got.0, want.0,
        "host differs; ours:\n{}\nreference:\n{}",
        got.0, want.0
    );
}

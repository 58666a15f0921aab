//! Privileged test: the real reference plugins from `/usr/lib/cni` (bridge + host-local,
//! chained with tuning) run by the executor inside test namespaces it never leaves: the
//! plugins run in a "host" test netns (via `Config::host_netns`) and put the interface
//! into a "pod" test netns. Both are deleted on drop.

use plexus_netlink::test_util::{TestNetns, require_privileged, unique_name};

use super::*;

const REFERENCE_BIN: &str = "/usr/lib/cni";

fn ip(args: &[&str]) -> String {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn reference_bridge_chain_add_then_del_in_test_namespaces() {
    if !require_privileged() {
        return;
    }
    let host = TestNetns::new().await;
    let pod = TestNetns::new().await;
    let work = tempfile::tempdir().unwrap();
    let bridge = unique_name("pxb");
    let config_text = json!({
        "cniVersion": "1.0.0",
        "name": "ref-chain",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipam": {
                    "type": "host-local",
                    "dataDir": work.path().join("ipam"),
                    "ranges": [[{"subnet": "10.77.0.0/24"}]],
                    "routes": [{"dst": "0.0.0.0/0"}]
                }
            },
            {"type": "tuning", "promisc": true}
        ]
    })
    .to_string();
    let config = conflist(&config_text);
    let ex = Executor::new(Config {
        host_netns: Some(host.path()),
        timeout: Duration::from_secs(20),
        ..Config::new(
            vec![PathBuf::from(REFERENCE_BIN)],
            work.path().join("cache"),
        )
    });
    let identity = PodIdentity::new("default", "ref-pod", "uid-ref");
    let rc = RuntimeConfig::default();
    let pod_path = pod.path();
    let container_id = super::sid(&format!("plexus-test-{}", std::process::id()));
    let ifname = super::ifn("net1");
    let inv = Invocation {
        container_id: &container_id,
        netns: Some(&pod_path),
        ifname: &ifname,
        pod: &identity,
        config: &config,
        runtime_config: &rc,
        runtime_capabilities: None,
        extra_cni_args: &[],
        prev_result: None,
    };

    let out = ex.add(&inv).await.unwrap();
    let result = &out.result;
    assert_eq!(result.cni_version, "1.0.0");
    let sandbox: Vec<&cni::Interface> = result
        .interfaces
        .iter()
        .filter(|i| !i.sandbox.is_empty())
        .collect();
    assert_eq!(sandbox.len(), 1, "{result:?}");
    assert_eq!(sandbox[0].name, "net1");
    assert!(
        result
            .interfaces
            .iter()
            .any(|i| i.name == bridge && i.sandbox.is_empty())
    );
    let addr = result.ips[0].address;
    assert!(
        "10.77.0.0/24"
            .parse::<ipnet::IpNet>()
            .unwrap()
            .contains(&addr.addr())
    );
    assert_eq!(result.ips[0].gateway, Some("10.77.0.1".parse().unwrap()));
    // What the Go plugin printed (interfaces with mac/sandbox, ips with interface) is
    // exactly what plexus renders back from the parsed result.
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        result.render("1.0.0").unwrap(),
        serde_json::to_string(&printed).unwrap()
    );

    // The interface is in the pod netns with the address and tuning's promisc flag; the
    // bridge is in the host test netns, not in ours.
    let link = ip(&["-n", pod.name(), "-o", "link", "show", "net1"]);
    assert!(link.contains("PROMISC"), "{link}");
    let addrs = ip(&["-n", pod.name(), "-o", "addr", "show", "net1"]);
    assert!(addrs.contains(&addr.to_string()), "{addrs}");
    ip(&["-n", host.name(), "link", "show", &bridge]);
    assert!(
        !std::path::Path::new("/sys/class/net")
            .join(&bridge)
            .exists()
    );

    let cache_file = work
        .path()
        .join(format!("cache/results/ref-chain-{container_id}-net1"));
    let entry: Value = serde_json::from_slice(&std::fs::read(&cache_file).unwrap()).unwrap();
    assert_eq!(entry["kind"], "cniCacheV1");
    assert_eq!(entry["result"]["ips"][0]["address"], addr.to_string());

    ex.del(&inv).await.unwrap();
    let gone = std::process::Command::new("ip")
        .args(["-n", pod.name(), "link", "show", "net1"])
        .output()
        .unwrap();
    assert!(!gone.status.success(), "net1 still exists after DEL");
    assert!(!cache_file.exists());
    // The lease is released: the IPAM dir holds no file named after the address.
    let lease = work
        .path()
        .join("ipam/ref-chain")
        .join(addr.addr().to_string());
    assert!(!lease.exists());
    // DEL again (everything already gone) succeeds.
    ex.del(&inv).await.unwrap();
}

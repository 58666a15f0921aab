//! The harness alone, without plexus: a pod comes up with eth0 from the primary bridge
//! network of the private containerd, and deleting it leaves nothing behind (netns, host
//! veth, host-local lease, sandbox).

use plexus_integration::{Containerd, Options, PodSpec, require_privileged};

/// Files in the host-local data dir of the primary network that hold a lease (an IP).
fn leases(c: &Containerd) -> Vec<String> {
    let dir = c
        .paths()
        .primary_ipam_dir
        .join(plexus_integration::containerd::PRIMARY_NETWORK);
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Links in containerd's namespace other than loopback and the primary bridge.
fn host_veths(c: &Containerd) -> Vec<String> {
    let out = c
        .host_netns()
        .exec("ip", ["-o", "link", "show", "type", "veth"])
        .unwrap();
    out.lines().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_gets_eth0_from_the_primary_network_and_leaves_nothing() {
    if !require_privileged() {
        return;
    }
    let c = Containerd::start(Options::default()).await.unwrap();
    let v = c.cri().version().await.unwrap();
    assert_eq!(v.runtime_name, "containerd");

    let pod = c
        .run_pod(&PodSpec::new("e2e", "primary-only"))
        .await
        .unwrap();
    assert!(pod.netns.starts_with("/var/run/netns"), "{:?}", pod.netns);
    let eth0 = pod.interface("eth0").unwrap();
    assert!(eth0.up);
    assert_eq!(eth0.addresses.len(), 1, "{eth0:?}");
    assert!(eth0.addresses[0].starts_with("10.241."), "{eth0:?}");
    assert_eq!(leases(&c).len(), 1);
    assert_eq!(host_veths(&c).len(), 1);
    let ifs = pod.interfaces().unwrap();
    let names: Vec<_> = ifs.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["lo", "eth0"]);

    c.delete_pod(&pod).await.unwrap();
    assert!(!pod.netns_exists(), "netns {:?} still exists", pod.netns);
    assert!(leases(&c).is_empty(), "leases left: {:?}", leases(&c));
    assert!(
        host_veths(&c).is_empty(),
        "veths left: {:?}",
        host_veths(&c)
    );
    assert!(c.cri().list_pod_sandboxes().await.unwrap().is_empty());

    let run_dir = c.paths().run_dir.clone();
    let host_ns = c.host_netns().path().to_owned();
    drop(c);
    assert!(!run_dir.exists(), "{run_dir:?} left behind");
    assert!(!host_ns.exists(), "{host_ns:?} left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_harness_removes_running_pods_and_everything_else() {
    if !require_privileged() {
        return;
    }
    let c = Containerd::start(Options::default()).await.unwrap();
    let a = c.run_pod(&PodSpec::new("e2e", "left-a")).await.unwrap();
    let b = c.run_pod(&PodSpec::new("e2e", "left-b")).await.unwrap();
    let socket = c.paths().socket.display().to_string();
    let run_dir = c.paths().run_dir.clone();
    assert!(!plexus_integration::process::pids_with_arg(&socket).is_empty());

    drop(c);
    assert!(!a.netns_exists() && !b.netns_exists(), "pod netns left");
    assert!(!run_dir.exists(), "{run_dir:?} left behind");
    let procs = plexus_integration::process::pids_with_arg(&socket);
    assert!(
        procs.is_empty(),
        "processes of that containerd left: {procs:?}"
    );
    let mounts = plexus_integration::cleanup::mounts_under(&run_dir);
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
}

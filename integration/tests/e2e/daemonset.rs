//! The chart's DaemonSet on a real runtime, in NRI mode and in shim mode: the chart is
//! rendered by Helm with its host paths pointed at this test's private directories (and
//! containerd's private NRI socket or CNI dirs), the image from `make image` is imported
//! into the private containerd, and the rendered pod is run through CRI — sandbox with the
//! host network and PID namespaces, init containers to completion, then the containers
//! with their args, env, capabilities and mounts (`plexus_integration::daemonset`). A pod
//! started afterwards through CRI gets its macvlan network from that containerised plexus.
//! Every host path is under the run dir except the netns directory, which containerd 1.7
//! fixes at `/var/run/netns` (mounted read-only, `HostToContainer`, as the chart renders it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use plexus_integration::containerd::{Containerd, Options};
use plexus_integration::daemonset::Running;
use plexus_integration::nad::{Nad, create_uplink};
use plexus_integration::plexus::NRI_PLUGIN;
use plexus_integration::{Pod, PodSpec, release_image, require_privileged};
use serde_json::{Value, json};

fn python() -> PathBuf {
    let venv = std::env::var_os("PLEXUS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/plexus/venv"));
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "no virtualenv python at {}: run `make setup`",
        python.display()
    );
    python
}

fn render(mode: &str, values: &Value) -> Vec<Value> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/chart_check.py");
    let out = Command::new(python())
        .arg(script)
        .args(["render", "generic", mode, &values.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "render: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What one DaemonSet test set up: the rendered pod running, the NAD's subnet.
struct Deployed {
    running: Running,
    subnet: String,
}

/// Writes a macvlan NAD, renders the chart in `mode` with `paths` (merged over the private
/// state/socket paths under `ds`), imports the image and runs the DaemonSet's pod through
/// CRI until plexusd's rendered readiness probe passes.
async fn deploy(containerd: &Containerd, mode: &str, paths: Value) -> Deployed {
    let run_dir = containerd.paths().run_dir.clone();
    let ds = run_dir.join("ds");
    let uplink = create_uplink(containerd.host_netns()).unwrap();
    let n = plexus_integration::netns::next_id() % 256;
    let subnet = format!("10.245.{n}.0/24");
    let networks = ds.join("networks");
    std::fs::create_dir_all(&networks).unwrap();
    // The chart mounts the containerd socket's directory read-only; the private socket sits
    // in the run dir above the other mounted dirs, so it is hard-linked into a directory of
    // its own (a link to a socket connects to the same listener).
    let containerd_dir = ds.join("containerd");
    std::fs::create_dir_all(&containerd_dir).unwrap();
    let containerd_socket = containerd_dir.join("containerd.sock");
    std::fs::hard_link(&containerd.paths().socket, &containerd_socket).unwrap();
    Nad::macvlan(
        "default",
        "ds-macvlan",
        &uplink,
        &subnet,
        &ds.join("cni/networks"),
    )
    .write_to(&networks)
    .unwrap();
    let mut all_paths = json!({
        // Private and empty: macvlan + host-local run in-process (native drivers).
        "cniBinDir": ds.join("cni-bin"),
        "nriSocket": containerd.paths().nri_socket,
        // Shim mode adopts through containerd's API: the private containerd, never the host's.
        "containerdSocket": containerd_socket,
        "stateDir": ds.join("state"),
        "cniStateDir": ds.join("cni"),
        "nadConfDir": ds.join("nadconf"),
        "socketDir": ds.join("run"),
        "podResourcesDir": ds.join("pod-resources"),
        // The real directory, not `/var/run/netns`: containerd 1.7 checks that a
        // `HostToContainer` source is on a shared or slave mount by the path's text,
        // without resolving the `/var/run` symlink, and on this machine `/` is private
        // while `/run/netns` is shared (systemd hosts make `/` shared, so the chart's
        // default passes there). The image's `/var/run` links to `/run`, so the runtime's
        // `/var/run/netns/...` paths resolve inside the container too.
        "netnsDir": "/run/netns",
    });
    for (k, v) in paths.as_object().unwrap() {
        all_paths[k] = v.clone();
    }
    let values = json!({
        "paths": all_paths,
        "plexusd": {
            "nadSource": {"type": "directory", "directory": networks},
            "logFormat": "human",
            "logLevel": "debug",
        },
        "nri": {"logFormat": "human"},
    });
    let objects = render(mode, &values);

    let image = release_image::build(
        &plexus_integration::plexus::bin_dir().unwrap(),
        None,
        &ds.join("image"),
        &run_dir.join("plexus-image.tar"),
    )
    .unwrap();
    plexus_integration::image::import(&containerd.paths().socket, &image.archive).unwrap();
    let work = ds.join("containers");
    let running = Running::start(
        &containerd.paths().socket,
        &objects,
        &release_image::image_name(),
        &work,
    )
    .await
    .unwrap();
    // The rendered readiness probe, run in the plexusd container through CRI ExecSync.
    let daemonset = objects.iter().find(|o| o["kind"] == "DaemonSet").unwrap();
    let plexusd = &daemonset["spec"]["template"]["spec"]["containers"][0];
    let probe: Vec<String> =
        serde_json::from_value(plexusd["readinessProbe"]["exec"]["command"].clone()).unwrap();
    if let Err(e) = running
        .wait_ready("plexusd", &probe, Duration::from_secs(30))
        .await
    {
        panic!("{e}\nplexusd log:\n{}", running.log("plexusd"));
    }
    Deployed { running, subnet }
}

/// Runs a pod asking for the NAD and checks its `net1` got an address of the NAD's subnet.
async fn pod_gets_macvlan(containerd: &Containerd, d: &Deployed, name: &str) -> Pod {
    let logs = || {
        ["plexusd", "plexus-nri"]
            .map(|c| format!("{c}:\n{}", d.running.log(c)))
            .join("\n")
    };
    let pod = containerd
        .run_pod(&PodSpec::new("default", name).networks("ds-macvlan"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let net1 = pod
        .interface("net1")
        .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", pod.brief_addresses(), logs()));
    let prefix = d.subnet.trim_end_matches("0/24");
    assert!(
        net1.addresses.iter().any(|a| a.starts_with(prefix)),
        "net1 {net1:?} has no address in {}",
        d.subnet
    );
    pod
}

fn nri_connections(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches(&format!("plugin \\\"{NRI_PLUGIN}\\\" connected"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_daemonset_through_cri_gives_a_pod_its_macvlan_network_over_nri() {
    if !require_privileged() {
        return;
    }
    let containerd = Containerd::start(Options::default()).await.unwrap();
    let before = nri_connections(&containerd.paths().log);
    let d = deploy(&containerd, "nri", json!({})).await;
    // plexus-nri registered with containerd before any pod is created.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while nri_connections(&containerd.paths().log) <= before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "plexus-nri never connected; its log:\n{}",
            d.running.log("plexus-nri")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pod = pod_gets_macvlan(&containerd, &d, "ds-pod").await;
    containerd.delete_pod(&pod).await.unwrap();
    d.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_daemonset_through_cri_gives_a_pod_its_networks_over_the_shim_without_nri() {
    if !require_privileged() {
        return;
    }
    // NRI off: the only way in is the CNI config plexusd writes into the runtime's dir.
    let containerd = Containerd::start(Options {
        nri: false,
        private_cni_bin: true,
        ..Options::default()
    })
    .await
    .unwrap();
    let p = containerd.paths();
    // containerd's private CNI dirs (bin, conf, and the primary's host-local leases) all
    // live under `<run>/cni`, which the chart mounts as its CNI state dir.
    let cni = p.cni_conf_dir.parent().unwrap().to_path_buf();
    let d = deploy(
        &containerd,
        "shim",
        json!({
            "cniBinDir": cni.join("bin"),
            "cniConfDir": p.cni_conf_dir,
            "cniStateDir": cni,
        }),
    )
    .await;
    // The init container installed the shim; plexusd wrapped the primary conflist.
    assert!(cni.join("bin/plexus-cni").is_file(), "plexus-cni installed");
    containerd
        .wait_cni_config("\"type\":\"plexus-cni\"", Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}\nplexusd:\n{}", d.running.log("plexusd")));
    let pod = pod_gets_macvlan(&containerd, &d, "ds-shim-pod").await;
    let eth0 = pod
        .interface("eth0")
        .expect("eth0 from the wrapped primary");
    assert!(!eth0.addresses.is_empty(), "{eth0:?}");
    // The chart's containerd mount works from inside the container: the listing at start
    // (adoption of pods started before plexus) reached the private containerd.
    let log = d.running.log("plexusd");
    assert!(
        log.contains("adopting running pods") && !log.contains("cannot list containerd"),
        "{log}"
    );
    containerd.delete_pod(&pod).await.unwrap();
    d.running.stop().await;
}

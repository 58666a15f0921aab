//! The chart's DaemonSet on a real runtime, NRI mode: the chart is rendered by Helm with
//! its host paths pointed at this test's private directories (and containerd's private
//! NRI socket), the image from `make image` is imported into the private containerd, and
//! the rendered containers are started from it with their args, env, capabilities and
//! mounts (`plexus_integration::daemonset`). A pod started afterwards through CRI gets its
//! macvlan network from that containerised plexus. Every host path is under the run dir
//! except the netns directory, which containerd 1.7 fixes at `/var/run/netns` (mounted
//! read-only, `HostToContainer`, as the chart renders it).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use plexus_integration::containerd::{Containerd, Options};
use plexus_integration::daemonset::Running;
use plexus_integration::nad::{Nad, create_uplink};
use plexus_integration::plexus::NRI_PLUGIN;
use plexus_integration::{PodSpec, release_image, require_privileged};
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

fn render(values: &Value) -> Vec<Value> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/chart_check.py");
    let out = Command::new(python())
        .arg(script)
        .args(["render", "generic", "nri", &values.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "render: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn chart_daemonset_in_containerd_gives_a_pod_its_macvlan_network() {
    if !require_privileged() {
        return;
    }
    let containerd = Containerd::start(Options::default()).await.unwrap();
    let run_dir = containerd.paths().run_dir.clone();
    let ds = run_dir.join("ds");
    let uplink = create_uplink(containerd.host_netns()).unwrap();
    let n = plexus_integration::netns::next_id() % 256;
    let subnet = format!("10.245.{n}.0/24");
    let networks = ds.join("networks");
    std::fs::create_dir_all(&networks).unwrap();
    Nad::macvlan(
        "default",
        "ds-macvlan",
        &uplink,
        &subnet,
        &ds.join("cni/networks"),
    )
    .write_to(&networks)
    .unwrap();

    let values = json!({
        "paths": {
            // Private and empty: macvlan + host-local run in-process (native drivers).
            "cniBinDir": ds.join("cni-bin"),
            "nriSocket": containerd.paths().nri_socket,
            "stateDir": ds.join("state"),
            "cniStateDir": ds.join("cni"),
            "nadConfDir": ds.join("nadconf"),
            "socketDir": ds.join("run"),
            "podResourcesDir": ds.join("pod-resources"),
        },
        "plexusd": {
            "nadSource": {"type": "directory", "directory": networks},
            "logFormat": "human",
            "logLevel": "debug",
        },
        "nri": {"logFormat": "human"},
    });
    let objects = render(&values);

    let image = release_image::build(
        &plexus_integration::plexus::bin_dir().unwrap(),
        &ds.join("image"),
        &run_dir.join("plexus-image.tar"),
    )
    .unwrap();
    plexus_integration::image::import(&containerd.paths().socket, &image.archive).unwrap();

    let before = std::fs::read_to_string(&containerd.paths().log)
        .unwrap_or_default()
        .matches(&format!("plugin \\\"{NRI_PLUGIN}\\\" connected"))
        .count();
    let work = ds.join("containers");
    std::fs::create_dir_all(&work).unwrap();
    let running = Running::start(
        &containerd.paths().socket,
        &objects,
        &release_image::image_name(),
        &work,
    )
    .unwrap();

    // The rendered readiness probe, run in the plexusd container.
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
    // plexus-nri registered with containerd before any pod is created.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let log = std::fs::read_to_string(&containerd.paths().log).unwrap_or_default();
        let count = log
            .matches(&format!("plugin \\\"{NRI_PLUGIN}\\\" connected"))
            .count();
        if count > before {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "plexus-nri never connected; its log:\n{}",
            running.log("plexus-nri")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let pod = containerd
        .run_pod(&PodSpec::new("default", "ds-pod").networks("ds-macvlan"))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e}\nplexusd:\n{}\nplexus-nri:\n{}",
                running.log("plexusd"),
                running.log("plexus-nri")
            )
        });
    let net1 = pod.interface("net1").unwrap_or_else(|e| {
        panic!(
            "{e}: {:?}\nplexusd:\n{}",
            pod.brief_addresses(),
            running.log("plexusd")
        )
    });
    let prefix = subnet.trim_end_matches("0/24");
    assert!(
        net1.addresses.iter().any(|a| a.starts_with(prefix)),
        "net1 {net1:?} has no address in {subnet}"
    );
    containerd.delete_pod(&pod).await.unwrap();
    drop(running);
}

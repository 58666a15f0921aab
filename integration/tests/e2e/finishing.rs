//! A setup slower than the NRI hook's budget (containerd's default 2 s timeout, plexus-nri's
//! 1.5 s deadline): RunPodSandbox succeeds while plexusd finishes the setup, and the pod's
//! container is created only once its networks are up (plexus-nri holds it back at NRI
//! CreateContainer, as the kubelet would see: a CreateContainer error it retries). The
//! slow network is a chain of the reference macvlan plugin and an exec plugin that
//! sleeps 2.5 s and then writes a marker file.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use plexus_integration::cri::api;
use plexus_integration::env::{MACVLAN, NAMESPACE};
use plexus_integration::image::PAUSE_IMAGE;
use plexus_integration::nad::Nad;
use plexus_integration::{Env, PodSpec, containerd, plexus, require_privileged};
use serde_json::json;

use crate::common::{interface_names, wait_nothing_left};

/// An exec CNI plugin that, on ADD, sleeps 2.5 s, writes `marker` and passes the previous
/// result on; every other command succeeds at once.
fn slow_plugin(marker: &Path) -> String {
    format!(
        "#!/usr/bin/python3\nimport json, os, sys, time\nconf = json.load(sys.stdin)\n\
         if os.environ.get('CNI_COMMAND') == 'ADD':\n    time.sleep(2.5)\n    \
         open('{m}', 'w').close()\n    \
         print(json.dumps(conf.get('prevResult', {{'cniVersion': conf['cniVersion']}})))\n",
        m = marker.display()
    )
}

fn container(name: &str) -> api::ContainerConfig {
    api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(api::ImageSpec {
            image: PAUSE_IMAGE.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setup_slower_than_the_hook_holds_the_containers_back_not_the_pod() {
    if !require_privileged() {
        return;
    }
    let c = containerd::Containerd::start(containerd::Options {
        private_cni_bin: true,
        ..containerd::Options::default()
    })
    .await
    .unwrap();
    let env = Env::start_on(c, plexus::Options::default(), |_| Ok(()))
        .await
        .unwrap();
    let dir = env.containerd.paths().run_dir.clone();
    let marker = dir.join("slow-done");
    let plugin = env.containerd.options().cni_bin_dir.join("plexus-e2e-slow");
    // Written aside and renamed: a file still open for writing cannot be executed.
    let aside = dir.join("plexus-e2e-slow.tmp");
    std::fs::write(&aside, slow_plugin(&marker)).unwrap();
    std::fs::set_permissions(&aside, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&aside, &plugin).unwrap();
    let subnet = format!("10.248.{}.0/24", plexus_integration::netns::next_id() % 256);
    Nad::macvlan_then(
        NAMESPACE,
        "slow",
        &env.uplink,
        &subnet,
        &env.plexus.paths().ipam_dir,
        json!({"type": "plexus-e2e-slow"}),
    )
    .write_to(&env.plexus.paths().networks_dir)
    .unwrap();

    let spec = PodSpec::new(NAMESPACE, "slow").networks(&format!("{MACVLAN},slow"));
    let started = Instant::now();
    let pod = env.containerd.run_pod(&spec).await.unwrap();
    let answered = started.elapsed();
    eprintln!("RunPodSandbox answered after {answered:?}");
    assert!(
        !marker.exists(),
        "the slow network finished before RunPodSandbox was answered: nothing was held back"
    );

    // The kubelet creates the pod's container and retries while that fails.
    let cri = env.containerd.cri();
    let mut refused = Vec::new();
    let id = loop {
        match cri
            .create_container(&pod.id, container("app"), spec.to_config())
            .await
        {
            Ok(id) => break id,
            Err(err) => {
                let msg = err.cri_message().unwrap_or_default().to_owned();
                assert!(
                    msg.contains("the container is not created until the pod's networks are up"),
                    "{err}"
                );
                refused.push(msg);
                assert!(started.elapsed() < Duration::from_secs(30), "{refused:#?}");
            }
        }
    };
    eprintln!(
        "container created after {:?} ({} attempts refused)",
        started.elapsed(),
        refused.len()
    );
    assert!(
        marker.exists(),
        "the container was created before the slow network was set up"
    );
    // The container sees every network from its start.
    cri.start_container(&id).await.unwrap();
    assert_eq!(interface_names(&pod), ["lo", "eth0", "net1", "net2"]);
    let made = env.plexus.attachments_of(&pod.id).await.unwrap();
    assert_eq!(
        made.iter().filter(|a| a.driver != "runtime").count(),
        2,
        "{made:?}"
    );
    // A second container passes at once.
    let second = cri
        .create_container(&pod.id, container("sidecar"), spec.to_config())
        .await
        .unwrap();
    assert!(!second.is_empty());

    cri.stop_container(&id, 0).await.unwrap();
    env.containerd.delete_pod(&pod).await.unwrap();
    wait_nothing_left(&env, Duration::from_secs(10)).await;
}

//! Early setup (issue 14): with containerd's socket configured on the NRI path, plexusd
//! sets a pod's networks up when containerd creates the sandbox container, while runc
//! creates its task, and the NRI hook answers from the record. Seen in plexusd's debug log
//! ("early setup done" with the sandbox id) and in the pod's interfaces and record; the
//! teardown leaves nothing. A network that fails is still reported by the hook, naming it,
//! and the early attempt leaves nothing behind either.

use std::time::Duration;

use plexus_integration::containerd;
use plexus_integration::env::{BRIDGE, BROKEN, MACVLAN, NAMESPACE};
use plexus_integration::{Env, PodSpec, plexus, require_privileged};

use crate::common::{interface_names, wait_nothing_left};
use crate::failures::assert_pod_fails_naming;

async fn early_env() -> Env {
    Env::start_with(
        containerd::Options::default(),
        plexus::Options {
            containerd_adoption: true,
            log_level: "debug".into(),
            ..plexus::Options::default()
        },
    )
    .await
    .unwrap()
}

fn plexusd_log(env: &Env) -> String {
    std::fs::read_to_string(&env.plexus.paths().plexusd_log).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networks_are_set_up_when_containerd_creates_the_sandbox() {
    if !require_privileged() {
        return;
    }
    let env = early_env().await;
    let spec = PodSpec::new(NAMESPACE, "early").networks(&format!("{MACVLAN},{BRIDGE}"));
    let pod = env.containerd.run_pod(&spec).await.unwrap();

    let log = plexusd_log(&env);
    let done = log
        .lines()
        .find(|l| l.contains("early setup done") && l.contains(&pod.id))
        .unwrap_or_else(|| panic!("no early setup of {} in plexusd's log:\n{log}", pod.id));
    eprintln!("{done}");
    // The hook came after it and was answered from the record: the pod has each network
    // once, as planned.
    assert_eq!(interface_names(&pod), ["lo", "eth0", "net1", "net2"]);
    let all = env.plexus.attachments_of(&pod.id).await.unwrap();
    let made: Vec<_> = all.iter().filter(|a| a.driver != "runtime").collect();
    assert_eq!(made.len(), 2, "{all:?}");
    // Set up after the runtime's own network: its eth0 is described with its address.
    let eth0 = all.iter().find(|a| a.interface == "eth0").unwrap();
    assert_eq!(
        eth0.ips,
        pod.interface("eth0").unwrap().addresses,
        "{eth0:?}"
    );
    assert!(!eth0.ips.is_empty(), "{eth0:?}");
    assert_eq!(env.plexus_leases().len(), 2);

    env.containerd.delete_pod(&pod).await.unwrap();
    wait_nothing_left(&env, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_network_is_reported_by_the_hook_after_an_early_attempt() {
    if !require_privileged() {
        return;
    }
    let env = early_env().await;
    assert_pod_fails_naming(&env, "early-broken", &format!("{MACVLAN},{BROKEN}"), BROKEN).await;
    let log = plexusd_log(&env);
    assert!(
        log.contains("early setup failed; left to the NRI hook"),
        "no failed early attempt in plexusd's log:\n{log}"
    );
}

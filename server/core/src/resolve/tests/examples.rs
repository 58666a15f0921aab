//! The shipped examples (`deploy/examples/`) load without errors and resolve as their
//! comments promise, with namespace isolation off and on.

use std::path::PathBuf;

use super::*;
use crate::explain::pod_from_manifest;
use crate::nad::DirSource;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples")
}

fn resolve_example(file: &str, config: &Config, nads: &DirSource) -> Result<Plan> {
    let text = std::fs::read_to_string(examples().join("pods").join(file)).unwrap();
    let (pod, annotations) = pod_from_manifest(&text).unwrap();
    resolve(&pod, &annotations, config, nads)
}

#[test]
fn example_networks_load_cleanly() {
    let nads = DirSource::new(examples().join("networks.d"));
    let names: Vec<String> = nads.list().unwrap().iter().map(Nad::key).collect();
    assert_eq!(
        names,
        [
            "default/lab-bridge",
            "default/tuned-bridge",
            "home/iot-macvlan",
            "shared/backup-net",
            "shared/storage-net"
        ]
    );
    assert!(nads.errors().is_empty(), "{:?}", nads.errors());
}

#[test]
fn example_pods_resolve() {
    let nads = DirSource::new(examples().join("networks.d"));
    let config = Config::default();

    let ha = resolve_example("home-assistant.yaml", &config, &nads).unwrap();
    let iot = &ha.attachments[1];
    assert_eq!(
        (iot.network.as_str(), iot.interface.as_str()),
        ("home/iot-macvlan", "iot0")
    );
    assert_eq!(iot.runtime_config.ips, ["192.168.50.10/24"]);
    assert_eq!(iot.runtime_config.mac.as_deref(), Some("02:00:5e:10:00:10"));
    assert_eq!(iot.config.plugin_types, ["macvlan"]);

    let bridge = resolve_example("bridge-pod.yaml", &config, &nads).unwrap();
    assert_eq!(bridge.attachments[1].interface, "net1");
    assert_eq!(bridge.attachments[1].config.plugin_types, ["bridge"]);

    let chain = resolve_example("conflist-pod.yaml", &config, &nads).unwrap();
    assert_eq!(
        chain.attachments[1].config.plugin_types,
        ["bridge", "tuning"]
    );
    assert_eq!(chain.attachments[1].interface, "tuned0");

    let cross = resolve_example("cross-namespace-pod.yaml", &config, &nads).unwrap();
    assert_eq!(ifnames(&cross), ["eth0", "lab0", "net2"]);

    let shared = resolve_example("isolation-violation-pod.yaml", &config, &nads).unwrap();
    assert!(shared.attachments[1].force_exec);
}

#[test]
fn example_pods_under_namespace_isolation() {
    let nads = DirSource::new(examples().join("networks.d"));
    let config = Config {
        namespace_isolation: true,
        ..Config::default()
    };
    for ok in [
        "home-assistant.yaml",
        "bridge-pod.yaml",
        "conflist-pod.yaml",
        "cross-namespace-pod.yaml",
    ] {
        resolve_example(ok, &config, &nads).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    let e = resolve_example("isolation-violation-pod.yaml", &config, &nads).unwrap_err();
    assert!(matches!(e, Error::NamespaceIsolation { .. }), "{e}");
}

/// The samples in `docs/explain.md` are real output for the example pods.
#[test]
fn explain_doc_samples_match_the_examples() {
    let doc = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/explain.md"),
    )
    .unwrap();
    let nads = DirSource::new(examples().join("networks.d"));
    let text = std::fs::read_to_string(examples().join("pods/home-assistant.yaml")).unwrap();
    let (pod, annotations) = pod_from_manifest(&text).unwrap();
    let outcome = resolve(&pod, &annotations, &Config::default(), &nads);
    let out = crate::explain::explain(&pod, &outcome);
    assert!(
        doc.contains(&out.text),
        "docs/explain.md lacks:\n{}",
        out.text
    );

    let config = Config {
        namespace_isolation: true,
        ..Config::default()
    };
    let text =
        std::fs::read_to_string(examples().join("pods/isolation-violation-pod.yaml")).unwrap();
    let (pod, annotations) = pod_from_manifest(&text).unwrap();
    let e = resolve(&pod, &annotations, &config, &nads).unwrap_err();
    assert!(doc.contains(&e.to_string()), "docs/explain.md lacks: {e}");
    assert!(doc.contains(&format!("\"kind\": \"{}\"", e.kind())));
}

//! F16, F22, F24: device ids from the pod's allocation go to the networks naming
//! their resource, in plan order; written into the config and runtimeConfig.

use serde_json::{Value, json};

use super::*;

fn allocated(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(r, ids)| (r.to_string(), ids.iter().map(|s| s.to_string()).collect()))
        .collect()
}

fn sriov_nads() -> MemorySource {
    let mut nads = nads();
    let mut list = Nad::new(
        "apps",
        "sriov-chain",
        r#"{"name":"sc","plugins":[{"type":"sriov"},{"type":"tuning"}]}"#,
    );
    list.annotations
        .insert(RESOURCE_NAME.into(), "intel.com/vf".into());
    nads.insert(list);
    nads
}

fn bytes(a: &PlannedAttachment) -> Value {
    serde_json::from_slice(&a.config.bytes).unwrap()
}

#[test]
fn each_network_of_a_resource_takes_the_next_sorted_id() {
    let mut p = resolve(
        &pod(),
        &networks(r#"[{"name":"sriov","deviceID":"0000:99:00.0"},{"name":"a"},{"name":"sriov-chain"},{"name":"sriov"}]"#),
        &Config::default(),
        &sriov_nads(),
    )
    .unwrap();
    let assigned = assign_devices(
        &mut p,
        &allocated(&[("intel.com/vf", &["0000:03:00.2", "0000:03:00.1"])]),
    )
    .unwrap();
    assert_eq!(
        assigned,
        [
            DeviceAssignment {
                index: 1,
                resource_name: "intel.com/vf".into(),
                device_id: "0000:03:00.1".into()
            },
            DeviceAssignment {
                index: 3,
                resource_name: "intel.com/vf".into(),
                device_id: "0000:03:00.2".into()
            },
        ]
    );
    let [_, first, plain, chain, last] = &p.attachments[..] else {
        panic!("{p:?}")
    };
    assert_eq!(
        first.runtime_config.device_id.as_deref(),
        Some("0000:03:00.1"),
        "F16: the resource map wins over the selection's deviceID"
    );
    assert_eq!(bytes(first)["deviceID"], "0000:03:00.1");
    assert_eq!(bytes(first)["pciBusID"], "0000:03:00.1");
    assert_eq!(bytes(first)["type"], "sriov", "other keys kept");
    assert!(plain.runtime_config.device_id.is_none());
    assert!(bytes(plain).get("deviceID").is_none());
    for plugin in bytes(chain)["plugins"].as_array().unwrap() {
        assert_eq!(plugin["deviceID"], "0000:03:00.2", "F24: every plugin");
        assert_eq!(plugin["pciBusID"], "0000:03:00.2");
    }
    assert!(bytes(chain).get("deviceID").is_none());
    assert!(
        last.runtime_config.device_id.is_none() && bytes(last).get("deviceID").is_none(),
        "no id left: no device, not an error"
    );
}

#[test]
fn selection_device_id_is_runtime_config_only_without_allocation() {
    let mut p = plan(
        &networks(r#"[{"name":"sriov","deviceID":"0000:99:00.0"}]"#),
        &Config::default(),
    );
    let assigned = assign_devices(&mut p, &BTreeMap::new()).unwrap();
    assert!(assigned.is_empty());
    let a = &p.attachments[1];
    assert_eq!(a.runtime_config.device_id.as_deref(), Some("0000:99:00.0"));
    assert!(
        bytes(a).get("deviceID").is_none(),
        "F16: the selection's deviceID is not written into the config"
    );
}

#[test]
fn primary_gets_the_id_in_its_config_only_and_runtime_managed_takes_none() {
    let mut nads = sriov_nads();
    let mut primary = Nad::new("kube-system", "cbr0", r#"{"type":"sriov"}"#);
    primary
        .annotations
        .insert(RESOURCE_NAME.into(), "intel.com/vf".into());
    nads.insert(primary);
    let ids = allocated(&[("intel.com/vf", &["0000:03:00.1"])]);

    let mut p = resolve(&pod(), &networks("sriov"), &plexus_config(), &nads).unwrap();
    assign_devices(&mut p, &ids).unwrap();
    assert_eq!(bytes(&p.attachments[0])["deviceID"], "0000:03:00.1");
    assert!(p.attachments[0].runtime_config.device_id.is_none());
    assert!(p.attachments[1].runtime_config.device_id.is_none());

    let runtime = Config {
        primary_mode: PrimaryMode::Runtime,
        ..plexus_config()
    };
    let mut p = resolve(&pod(), &networks("sriov"), &runtime, &nads).unwrap();
    assign_devices(&mut p, &ids).unwrap();
    assert!(bytes(&p.attachments[0]).get("deviceID").is_none());
    assert_eq!(
        p.attachments[1].runtime_config.device_id.as_deref(),
        Some("0000:03:00.1")
    );
}

#[test]
fn injection_rejects_configs_it_cannot_edit() {
    let mut config = DelegateConfig {
        form: ConfigForm::Conflist,
        name: "x".into(),
        cni_version: String::new(),
        plugin_types: vec![],
        bytes: serde_json::to_vec(&json!({"name": "x"})).unwrap(),
    };
    let e = inject_device_id(&mut config, "apps/x", "0000:03:00.1").unwrap_err();
    assert_eq!(
        e.to_string(),
        "network apps/x: cannot add deviceID \"0000:03:00.1\": unable to get plugin list"
    );
    config.bytes = b"[1]".to_vec();
    config.form = ConfigForm::Conf;
    let e = inject_device_id(&mut config, "apps/x", "d").unwrap_err();
    assert!(e.to_string().contains("not a JSON object"), "{e}");
}

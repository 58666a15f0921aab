use serde_json::json;

use super::*;

fn daemonset() -> Value {
    json!({
        "kind": "DaemonSet",
        "metadata": {"name": "plexus", "namespace": "kube-system"},
        "spec": {"template": {
            "metadata": {"labels": {"app": "plexus"}, "annotations": {"a": "b"}},
            "spec": {
                "hostNetwork": true,
                "hostPID": true,
                "volumes": [
                    {"name": "netns", "hostPath": {"path": "/var/run/netns"}},
                    {"name": "config", "configMap": {"name": "plexus-config"}}
                ],
                "containers": [{
                    "name": "plexusd",
                    "command": ["/usr/local/bin/plexusd"],
                    "args": ["--config=/etc/plexus/plexusd.yaml"],
                    "env": [
                        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                        {"name": "RUST_LOG", "value": "info"}
                    ],
                    "securityContext": {
                        "allowPrivilegeEscalation": false,
                        "capabilities": {"add": ["NET_ADMIN", "SYS_ADMIN"], "drop": ["ALL"]}
                    },
                    "volumeMounts": [
                        {"name": "netns", "mountPath": "/var/run/netns",
                         "mountPropagation": "HostToContainer", "readOnly": true},
                        {"name": "config", "mountPath": "/etc/plexus"}
                    ]
                }]
            }
        }}
    })
}

#[test]
fn the_sandbox_shares_the_node_network_and_pid_namespaces() {
    let work = tempfile::tempdir().unwrap();
    let cfg = sandbox_config(&daemonset(), work.path());
    let ns = cfg
        .linux
        .unwrap()
        .security_context
        .unwrap()
        .namespace_options
        .unwrap();
    assert_eq!(ns.network, api::NamespaceMode::Node as i32);
    assert_eq!(ns.pid, api::NamespaceMode::Node as i32);
    assert_eq!(ns.ipc, api::NamespaceMode::Pod as i32);
    let meta = cfg.metadata.unwrap();
    assert_eq!(meta.namespace, "kube-system");
    assert_eq!(cfg.labels["app"], "plexus");
    assert_eq!(cfg.annotations["a"], "b");
}

#[test]
fn a_pod_without_host_namespaces_gets_its_own() {
    let mut ds = daemonset();
    ds["spec"]["template"]["spec"]["hostNetwork"] = false.into();
    ds["spec"]["template"]["spec"]["hostPID"] = false.into();
    let ns = namespace_options(&ds["spec"]["template"]["spec"]);
    assert_eq!(ns.network, api::NamespaceMode::Pod as i32);
    assert_eq!(ns.pid, api::NamespaceMode::Container as i32);
}

#[test]
fn the_container_config_carries_args_env_caps_and_mounts() {
    let ds = daemonset();
    let spec = &ds["spec"]["template"]["spec"];
    let cm = json!({"kind": "ConfigMap", "metadata": {"name": "plexus-config"},
        "data": {"plexusd.yaml": "socket: /run/plexus/plexus.sock\n"}});
    let work = tempfile::tempdir().unwrap();
    let cfg = container_config(
        spec,
        &spec["containers"][0],
        &[cm],
        "plexus:test",
        work.path(),
    )
    .unwrap();
    assert_eq!(cfg.image.unwrap().image, "plexus:test");
    assert_eq!(cfg.command, ["/usr/local/bin/plexusd"]);
    assert_eq!(cfg.args, ["--config=/etc/plexus/plexusd.yaml"]);
    let env: Vec<(String, String)> = cfg.envs.into_iter().map(|e| (e.key, e.value)).collect();
    assert_eq!(
        env,
        [
            ("NODE_NAME".to_owned(), NODE_NAME.to_owned()),
            ("RUST_LOG".to_owned(), "info".to_owned())
        ]
    );
    let sc = cfg.linux.unwrap().security_context.unwrap();
    let caps = sc.capabilities.unwrap();
    assert_eq!(caps.add_capabilities, ["NET_ADMIN", "SYS_ADMIN"]);
    assert_eq!(caps.drop_capabilities, ["ALL"]);
    assert!(sc.no_new_privs);
    assert!(!sc.privileged);
    assert_eq!(cfg.mounts.len(), 2);
    let netns = &cfg.mounts[0];
    assert_eq!(
        (netns.host_path.as_str(), netns.container_path.as_str()),
        ("/var/run/netns", "/var/run/netns")
    );
    assert!(netns.readonly);
    assert_eq!(
        netns.propagation,
        api::MountPropagation::PropagationHostToContainer as i32
    );
    let config = &cfg.mounts[1];
    assert_eq!(
        std::fs::read_to_string(Path::new(&config.host_path).join("plexusd.yaml")).unwrap(),
        "socket: /run/plexus/plexus.sock\n"
    );
    assert_eq!(cfg.log_path, "plexusd.log");
}

#[test]
fn unsupported_env_and_missing_volumes_are_errors() {
    let ds = daemonset();
    let spec = &ds["spec"]["template"]["spec"];
    let work = tempfile::tempdir().unwrap();
    let mut c = spec["containers"][0].clone();
    c["env"] = json!([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]);
    let err = container_config(spec, &c, &[], "i", work.path()).unwrap_err();
    assert!(err.to_string().contains("env X"), "{err}");
    let mut c = spec["containers"][0].clone();
    c["env"] = json!([]);
    c["volumeMounts"] = json!([{"name": "nope", "mountPath": "/x"}]);
    let err = container_config(spec, &c, &[], "i", work.path()).unwrap_err();
    assert!(
        err.to_string().contains("volumeMount nope has no volume"),
        "{err}"
    );
}

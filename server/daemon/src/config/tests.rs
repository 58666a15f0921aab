//! Config parsing and validation: defaults, Multus aliases, every rejection names its key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn parse(text: &str) -> Result<Config> {
    Config::parse(text, Path::new("test.yaml"), Path::new("/etc/plexus"))
}

fn rejected(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn empty_file_gives_documented_defaults() {
    let c = parse("{}").unwrap();
    assert_eq!(c.socket, PathBuf::from("/run/plexus/plexus.sock"));
    assert_eq!(c.state_dir, PathBuf::from("/var/lib/plexus"));
    assert_eq!(c.cni_bin_dirs, [PathBuf::from("/opt/cni/bin")]);
    assert_eq!(c.cni_conf_dir, PathBuf::from("/etc/cni/multus/net.d"));
    assert_eq!(c.ipam_data_dir, PathBuf::from("/var/lib/cni/networks"));
    assert_eq!(
        c.nad_source,
        NadSource::Directory("/etc/plexus/networks.d".into())
    );
    assert_eq!(c.multus_namespace, "kube-system");
    assert_eq!(c.system_namespaces, ["kube-system"]);
    assert_eq!(c.global_namespaces, ["default"]);
    assert!(!c.namespace_isolation);
    assert_eq!((c.max_parallel, c.max_queued), (16, 256));
    assert_eq!(c.nice, -10);
    assert_eq!(c.nri_deadline_budget, Duration::from_millis(1500));
    assert_eq!(c.reconcile_interval, Some(Duration::from_secs(60)));
    assert_eq!(c.telemetry.log_level, "info");
    assert_eq!(c.telemetry.metrics_address, None);
    assert_eq!(c.delegation, Delegation::Auto);
    assert_eq!(c.primary_mode, PrimaryMode::Runtime);
}

#[test]
fn multus_daemon_config_names_are_accepted() {
    let c = parse(
        r#"{"binDir": "/opt/cni/bin", "confDir": "/etc/cni/multus/net.d", "cniDir": "/var/lib/cni/multus",
            "socketDir": "/run/multus/", "connectionLimit": 3, "metricsPort": 9091,
            "logLevel": "verbose", "logToStderr": true, "namespaceIsolation": true,
            "globalNamespaces": "default, shared", "multusNamespace": "multus",
            "clusterNetwork": "cbr0", "defaultNetworks": ["kube-system/extra"]}"#,
    )
    .unwrap();
    assert_eq!(c.socket, PathBuf::from("/run/multus/plexus.sock"));
    assert_eq!(c.cni_cache_dir, PathBuf::from("/var/lib/cni/multus"));
    assert_eq!(c.max_parallel, 3);
    assert_eq!(
        c.telemetry.metrics_address,
        Some(SocketAddr::from(([0, 0, 0, 0], 9091)))
    );
    assert_eq!(c.telemetry.log_level, "debug");
    assert_eq!(c.global_namespaces, ["default", "shared"]);
    let r = c.resolver();
    assert!(r.namespace_isolation);
    assert_eq!(r.multus_namespace, "multus");
    assert_eq!(r.cluster_network.as_deref(), Some("cbr0"));
    assert_eq!(r.default_networks, ["kube-system/extra"]);
    assert_eq!(r.conf_dir, PathBuf::from("/etc/cni/multus/net.d"));
}

#[test]
fn relative_paths_follow_the_config_file() {
    let c = parse("nadSource: {directory: networks.d}\nstateDir: state\n").unwrap();
    assert_eq!(
        c.nad_source,
        NadSource::Directory("/etc/plexus/networks.d".into())
    );
    assert_eq!(c.state_dir, PathBuf::from("/etc/plexus/state"));
}

#[test]
fn unknown_keys_are_named() {
    assert!(rejected("sockett: /x").contains("sockett"));
    assert!(rejected("concurrency: {maxParalel: 2}").contains("maxParalel"));
    assert!(rejected("telemetry: {otlp: x}").contains("otlp"));
}

#[test]
fn bad_values_are_rejected_with_their_key() {
    let cases = [
        (
            "nadSource: {kubernetes: {namespaces: [Bad_Name]}}",
            "nadSource.kubernetes.namespaces",
        ),
        ("nadSource: {directory: d, kubernetes: {}}", "nadSource"),
        (
            "kubeconfig: /a\nnadSource: {kubernetes: {kubeconfig: /b}}",
            "kubeconfig",
        ),
        ("concurrency: {maxParallel: 0}", "concurrency.maxParallel"),
        ("connectionLimit: -1", "connectionLimit"),
        (
            "connectionLimit: 2\nconcurrency: {maxParallel: 2}",
            "concurrency.maxParallel",
        ),
        ("concurrency: {maxQueued: -1}", "concurrency.maxQueued"),
        ("nri: {deadlineBudget: soon}", "nri.deadlineBudget"),
        ("nri: {deadlineBudget: 0ms}", "nri.deadlineBudget"),
        ("delegateTimeout: 3h", "delegateTimeout"),
        ("reconcile: {interval: soon}", "reconcile.interval"),
        ("reconcile: {interval: 30}", "reconcile.interval"),
        ("reconcile: {interval: 500ms}", "reconcile.interval"),
        ("reconcile: {interval: -1s}", "reconcile.interval"),
        ("reconcile: {interval: true}", "reconcile.interval"),
        ("reconcile: {interval: [1s]}", "reconcile.interval"),
        ("logLevel: loud", "telemetry.logLevel"),
        ("logToStderr: false", "logToStderr"),
        ("metricsPort: 70000", "metricsPort"),
        (
            "telemetry: {metricsAddress: nowhere}",
            "telemetry.metricsAddress",
        ),
        ("socket: /a\nsocketDir: /b", "socket"),
        ("multusNamespace: ''", "multusNamespace"),
        ("cniBinDirs: []", "cniBinDirs"),
        ("lockWait: 30", "lockWait"),
        ("lockWait: soon", "lockWait"),
        ("lockWait: 2h", "lockWait"),
        ("connections: {max: 0}", "connections.max"),
        ("connections: {idleTimeout: 0s}", "connections.idleTimeout"),
    ];
    for (text, key) in cases {
        let msg = rejected(text);
        assert!(msg.contains(&format!("`{key}`")), "{text:?} gave {msg}");
    }
    let long = format!("socket: /{}", "s".repeat(120));
    assert!(rejected(&long).contains("`socket`"));
    assert!(rejected("delegation: sometimes").contains("delegation"));
    assert!(rejected("primaryMode: cni").contains("primaryMode"));
}

#[test]
fn reconcile_interval_parses_and_turns_off() {
    let interval = |text: &str| parse(text).unwrap().reconcile_interval;
    assert_eq!(
        interval("reconcile: {interval: 30s}"),
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        interval("reconcile: {interval: 5m}"),
        Some(Duration::from_secs(300))
    );
    assert_eq!(
        interval("reconcile: {interval: 1500ms}"),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(interval("reconcile: {}"), Some(Duration::from_secs(60)));
    for off in ["0", "'0'", "0s", "off", "' off '"] {
        assert_eq!(
            interval(&format!("reconcile: {{interval: {off}}}")),
            None,
            "{off}"
        );
    }
    assert!(rejected("reconcile: {period: 1s}").contains("period"));
    let msg = rejected("reconcile: {interval: 30}");
    assert!(
        msg.contains("has no unit") && msg.contains("0 or off"),
        "{msg}"
    );
}

#[test]
fn durations_parse() {
    // The one grammar's table, for the config as for every flag.
    for (text, want) in plexus_core::duration::EXAMPLES {
        assert_eq!(parse_duration(text), *want, "{text:?}");
    }
}

#[test]
fn embedded_standalone_config_is_valid() {
    let c = Config::standalone(Path::new("/srv/demo")).unwrap();
    assert_eq!(
        c.nad_source,
        NadSource::Directory("/srv/demo/networks.d".into())
    );
    assert_eq!(c.socket, PathBuf::from("/run/plexus/plexus.sock"));
    assert!(c.state_dir.starts_with("/var/lib/plexus"));
}

#[test]
fn lock_wait_and_connection_limits_parse() {
    let defaults = parse("").unwrap();
    assert_eq!(defaults.lock_wait, Duration::ZERO);
    assert_eq!(defaults.connections.max, 256);
    assert_eq!(defaults.connections.idle_timeout, Duration::from_secs(300));
    let set = parse("lockWait: 30s\nconnections: {max: 8, idleTimeout: 1500ms}").unwrap();
    assert_eq!(set.lock_wait, Duration::from_secs(30));
    assert_eq!(set.connections.max, 8);
    assert_eq!(set.connections.idle_timeout, Duration::from_millis(1500));
    for off in ["lockWait: 0", "lockWait: off", "lockWait: '0'"] {
        assert_eq!(parse(off).unwrap().lock_wait, Duration::ZERO, "{off}");
    }
    assert_eq!(
        crate::config::parse_lock_wait("2m").unwrap(),
        Duration::from_secs(120)
    );
    assert!(crate::config::parse_lock_wait("forever").is_err());
}

#[test]
fn deeply_nested_config_is_refused_before_parsing() {
    // 1 MiB of nested flow sequences: libyaml would take minutes on it.
    let text = format!("clusterNetwork: {}", "[".repeat(1024 * 1024));
    let err = rejected(&text);
    assert!(
        err.contains("test.yaml") && err.contains("nesting deeper than 64 levels at line 1"),
        "{err}"
    );
}

#[test]
fn multus_delegates_are_accepted_and_reach_the_resolver() {
    use plexus_core::nad::MemorySource;
    use plexus_core::pod::PodIdentity;
    use std::collections::BTreeMap;

    let pod = PodIdentity::new("apps", "web", "uid");
    let none = BTreeMap::<String, String>::new();
    let nads = MemorySource::default();
    // Without clusterNetwork or delegates, the error tells the user to set `delegates` ...
    let bare = parse("primaryMode: plexus\n").unwrap();
    let e = plexus_core::resolve(&pod, &none, &bare.resolver(), &nads).unwrap_err();
    assert_eq!(e.kind(), "cluster-network-missing");
    assert!(
        e.to_string().contains("or delegates (inline CNI configs)"),
        "{e}"
    );
    // ... and the key it names is accepted, in Multus's shape.
    let c = parse(
        "primaryMode: plexus\n\
         delegates:\n\
         - {cniVersion: 1.0.0, name: flannel-net, type: flannel}\n\
         - {\"cniVersion\": \"1.0.0\", \"name\": \"extra\", \"plugins\": [{\"type\": \"bridge\"}]}\n",
    )
    .unwrap();
    assert_eq!(c.delegates.len(), 2);
    assert_eq!(c.resolver().delegates, c.delegates);
    let plan = plexus_core::resolve(&pod, &none, &c.resolver(), &nads).unwrap();
    let networks: Vec<&str> = plan
        .attachments
        .iter()
        .map(|a| a.network.as_str())
        .collect();
    assert_eq!(networks, ["flannel-net", "extra"]);
    assert_eq!(plan.attachments[0].interface, "eth0");
    assert_eq!(plan.attachments[0].config.plugin_types, ["flannel"]);

    // A broken entry fails at start, naming the key and the entry.
    let err = rejected("delegates:\n- {name: x}\n");
    assert!(
        err.contains("`delegates`") && err.contains("delegates[0]"),
        "{err}"
    );
    assert!(rejected("delegates: {type: flannel}\n").contains("delegates"));
}

#[test]
fn cni_install_keys_and_their_multus_names() {
    let c = parse("{}").unwrap();
    assert_eq!(
        c.cni.install,
        super::Install::Off,
        "the NRI path touches no CNI dir"
    );
    assert_eq!(c.cni.conf_dir, std::path::PathBuf::from("/etc/cni/net.d"));
    assert_eq!(c.cni.primary_dir, c.cni.conf_dir);
    assert_eq!(c.cni.bin_dir, std::path::PathBuf::from("/opt/cni/bin"));
    let c = parse(
        r#"{"multusConfigFile":"auto","cniConfigDir":"/host/etc/cni/net.d","multusAutoconfigDir":"/host/etc/cni/primary","readinessindicatorfile":"/run/flannel/subnet.env","binDir":"/host/opt/cni/bin"}"#,
    )
    .unwrap();
    assert_eq!(c.cni.install, super::Install::Auto);
    assert_eq!(
        c.cni.conf_dir,
        std::path::PathBuf::from("/host/etc/cni/net.d")
    );
    assert_eq!(
        c.cni.primary_dir,
        std::path::PathBuf::from("/host/etc/cni/primary")
    );
    assert_eq!(c.cni.bin_dir, std::path::PathBuf::from("/host/opt/cni/bin"));
    assert_eq!(
        c.cni.readiness_file.as_deref(),
        Some(std::path::Path::new("/run/flannel/subnet.env"))
    );
    let c = parse("cni:\n  install: auto\n  confDir: /etc/cni/net.d\n  binDir: /opt/cni/bin\n")
        .unwrap();
    assert_eq!(c.cni.install, super::Install::Auto);
    for (text, key) in [
        (
            "multusConfigFile: /etc/cni/net.d/00-multus.conf",
            "multusConfigFile",
        ),
        (
            "readinessindicatorfile: run/flannel",
            "readinessindicatorfile",
        ),
        ("cni:\n  confDir: /a\ncniConfigDir: /b\n", "cni.confDir"),
        ("cni:\n  install: sometimes\n", "install"),
    ] {
        let err = rejected(text);
        assert!(err.contains(key), "{text}: {err}");
    }
}

#[test]
fn the_kubernetes_source_takes_a_kubeconfig_and_namespaces() {
    let c = parse("nadSource: {kubernetes: {}}").unwrap();
    assert_eq!(
        c.nad_source,
        NadSource::Kubernetes {
            kubeconfig: None,
            namespaces: Vec::new(),
            pod_resources_socket: "/var/lib/kubelet/pod-resources/kubelet.sock".into(),
        }
    );
    let c = parse("nadSource: {kubernetes: {kubeconfig: kc, namespaces: [a, b, a]}}").unwrap();
    assert_eq!(
        c.nad_source,
        NadSource::Kubernetes {
            kubeconfig: Some("/etc/plexus/kc".into()),
            namespaces: vec!["a".into(), "b".into()],
            pod_resources_socket: "/var/lib/kubelet/pod-resources/kubelet.sock".into(),
        }
    );
    // Multus's top-level key means the same.
    let c = parse("kubeconfig: /etc/cni/net.d/multus.d/multus.kubeconfig").unwrap();
    assert_eq!(
        c.nad_source,
        NadSource::Kubernetes {
            kubeconfig: Some("/etc/cni/net.d/multus.d/multus.kubeconfig".into()),
            namespaces: Vec::new(),
            pod_resources_socket: "/var/lib/kubelet/pod-resources/kubelet.sock".into(),
        }
    );
    assert!(rejected("nadSource: {kubernetes: {kubeconfg: x}}").contains("kubeconfg"));
    // The kubelet's pod-resources socket, for device-plugin networks.
    let c = parse("nadSource: {kubernetes: {podResourcesSocket: /run/k/pr.sock}}").unwrap();
    assert!(matches!(
        c.nad_source,
        NadSource::Kubernetes { pod_resources_socket, .. } if pod_resources_socket == std::path::Path::new("/run/k/pr.sock")
    ));
    let err = rejected("nadSource: {kubernetes: {podResourcesSocket: pr.sock}}");
    assert!(
        err.contains("nadSource.kubernetes.podResourcesSocket") && err.contains("absolute"),
        "{err}"
    );
}

#[test]
fn dhcp_daemon_socket_is_off_by_default_and_relative_paths_are_resolved() {
    assert_eq!(parse("{}").unwrap().dhcp_daemon_socket, None);
    let c = parse(r#"{"dhcpDaemonSocket": "/run/cni/dhcp.sock"}"#).unwrap();
    assert_eq!(
        c.dhcp_daemon_socket,
        Some(PathBuf::from("/run/cni/dhcp.sock"))
    );
    let c = parse(r#"{"dhcpDaemonSocket": "run/dhcp.sock"}"#).unwrap();
    assert_eq!(
        c.dhcp_daemon_socket,
        Some(PathBuf::from("/etc/plexus/run/dhcp.sock"))
    );
}

#[test]
fn adoption_through_containerd_is_off_unless_a_socket_is_given() {
    assert_eq!(parse("{}").unwrap().containerd, None);
    assert_eq!(parse("containerd: {socket: off}").unwrap().containerd, None);
    let k3s = parse("containerd: {socket: /run/k3s/containerd/containerd.sock}").unwrap();
    assert_eq!(
        k3s.containerd,
        Some(ContainerdConfig {
            socket: PathBuf::from("/run/k3s/containerd/containerd.sock"),
            namespace: "k8s.io".to_owned(),
            early_setup: true,
        })
    );
    let relative = parse("containerd: {socket: run/c.sock, namespace: cri_1.x}").unwrap();
    let relative = relative.containerd.unwrap();
    assert_eq!(relative.socket, PathBuf::from("/etc/plexus/run/c.sock"));
    assert_eq!(relative.namespace, "cri_1.x");
    for bad in ["''", "'-x'", "'k8s io'", "'a\\nb'"] {
        let err = rejected(&format!(
            "containerd: {{socket: /c.sock, namespace: {bad}}}"
        ));
        assert!(err.contains("containerd.namespace"), "{bad}: {err}");
        assert!(err.contains("k8s.io"), "{bad}: {err}");
    }
    assert!(rejected("containerd: {sockets: /c.sock}").contains("sockets"));
    let late = parse("containerd: {socket: /c.sock, earlySetup: false}").unwrap();
    assert!(!late.containerd.unwrap().early_setup);
    assert!(
        rejected("containerd: {socket: /c.sock, earlySetup: sometimes}").contains("earlySetup")
    );
}

#[test]
fn niceness_is_a_nice_value_and_zero_leaves_it_alone() {
    assert_eq!(parse(r#"{"concurrency": {"nice": 0}}"#).unwrap().nice, 0);
    assert_eq!(
        parse(r#"{"concurrency": {"nice": -20}}"#).unwrap().nice,
        -20
    );
    assert_eq!(parse(r#"{"concurrency": {"nice": 19}}"#).unwrap().nice, 19);
    for bad in ["-21", "20", "99999999999"] {
        let err = parse(&format!(r#"{{"concurrency": {{"nice": {bad}}}}}"#))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("concurrency.nice") && err.contains("accepted: -20"),
            "{bad}: {err}"
        );
    }
}

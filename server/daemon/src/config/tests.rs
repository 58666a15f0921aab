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
        ("nadSource: {kubernetes: {}}", "nadSource.kubernetes"),
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
    assert_eq!(parse_duration("1500ms"), Some(Duration::from_millis(1500)));
    assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
    assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
    assert_eq!(parse_duration("2"), None);
    assert_eq!(parse_duration("s"), None);
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

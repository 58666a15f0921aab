//! The Helm chart (`deploy/helm/plexus`) and the kustomize tree (`deploy/kustomize`), checked
//! with the real Helm engine (PyPI helm-python-sdk, Helm v4's library), the Kubernetes
//! OpenAPI schemas (kubernetes-validate), `kubectl kustomize`, and plexus's own parsers:
//! the rendered plexusd config by `plexusd check-config`, the rendered container args by
//! each binary's argument parser. The Python side is `integration/scripts/chart_check.py`
//! in the virtualenv `integration/scripts/setup.sh` makes; with
//! privileged tests required (`PLEXUS_REQUIRE_PRIVILEGED=1`) a missing virtualenv or kubectl
//! fails the tests.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

/// The virtualenv's python and the kubectl to use, or `None` when they are missing and
/// the run does not require them.
fn tools() -> Option<(PathBuf, String)> {
    let venv = std::env::var_os("PLEXUS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/plexus/venv"));
    let python = venv.join("bin/python");
    let kubectl = std::env::var("PLEXUS_KUBECTL").unwrap_or_else(|_| "kubectl".to_owned());
    let kubectl_ok = Command::new(&kubectl)
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    let missing = match (python.is_file(), kubectl_ok) {
        (true, true) => return Some((python, kubectl)),
        (false, _) => format!("no virtualenv python at {}", python.display()),
        (true, false) => format!("no working {kubectl}"),
    };
    plexus_integration::privileged::unavailable(&format!(
        "{missing}: run `make setup` (integration/scripts/setup.sh) first"
    ));
    None
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the integration crate sits in the repository")
        .to_path_buf()
}

fn chart_check(python: &Path, kubectl: &str, args: &[&str]) -> Output {
    Command::new(python)
        .arg(repo().join("integration/scripts/chart_check.py"))
        .args(args)
        .env("PLEXUS_KUBECTL", kubectl)
        .output()
        .expect("running chart_check.py")
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every matrix render (platforms × modes × value variants), rendered once per test binary.
fn renders(python: &Path, kubectl: &str) -> &'static [Value] {
    static RENDERS: OnceLock<Vec<Value>> = OnceLock::new();
    RENDERS.get_or_init(|| {
        let out = chart_check(python, kubectl, &["render-matrix"]);
        let text = ok(&out, "chart_check.py render-matrix");
        match serde_json::from_str(&text).expect("render-matrix prints JSON") {
            Value::Array(v) => v,
            other => panic!("render-matrix printed {other}"),
        }
    })
}

fn label(entry: &Value) -> String {
    format!(
        "{}/{}/{}",
        entry["platform"].as_str().unwrap_or("?"),
        entry["mode"].as_str().unwrap_or("?"),
        entry["variant"].as_str().unwrap_or("?")
    )
}

fn object<'a>(entry: &'a Value, kind: &str) -> &'a Value {
    entry["objects"]
        .as_array()
        .and_then(|objs| objs.iter().find(|o| o["kind"] == kind))
        .unwrap_or_else(|| panic!("{}: no {kind} rendered", label(entry)))
}

fn containers<'a>(entry: &'a Value, field: &str) -> Vec<&'a Value> {
    object(entry, "DaemonSet")["spec"]["template"]["spec"][field]
        .as_array()
        .map(|v| v.iter().collect())
        .unwrap_or_default()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn bin(name: &str) -> PathBuf {
    let dir = plexus_integration::plexus::bin_dir().expect("locating the plexus binaries");
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "{} missing: cargo build --workspace --bins",
        p.display()
    );
    p
}

/// Replaces the value of `--flag=value` in `args`; panics when the flag is not there.
fn replace_flag(args: &[String], flag: &str, value: &str) -> Vec<String> {
    let prefix = format!("{flag}=");
    assert!(
        args.iter().any(|a| a.starts_with(&prefix)),
        "{flag}= not in {args:?}"
    );
    args.iter()
        .map(|a| {
            if a.starts_with(&prefix) {
                format!("{prefix}{value}")
            } else {
                a.clone()
            }
        })
        .collect()
}

#[test]
fn chart_lints_cleanly_for_every_platform_mode_and_variant() {
    let Some((python, kubectl)) = tools() else {
        return;
    };
    let out = chart_check(&python, &kubectl, &["lint"]);
    let text = ok(&out, "helm lint");
    assert!(text.contains("60 value sets clean"), "{text}");
}

#[test]
fn every_rendered_object_validates_against_the_kubernetes_schemas() {
    let Some((python, kubectl)) = tools() else {
        return;
    };
    let out = chart_check(&python, &kubectl, &["validate"]);
    let report: Value = serde_json::from_str(&ok(&out, "schema validation")).unwrap();
    let kinds: BTreeSet<String> = strings(&report["kinds"]).into_iter().collect();
    for kind in [
        "CustomResourceDefinition",
        "ConfigMap",
        "DaemonSet",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Service",
    ] {
        assert!(kinds.contains(kind), "{kind} never rendered: {kinds:?}");
    }
    assert!(report["validated"].as_u64().unwrap_or(0) >= 300, "{report}");
}

#[test]
fn kustomize_overlays_render_exactly_what_the_chart_renders() {
    let Some((python, kubectl)) = tools() else {
        return;
    };
    let out = chart_check(&python, &kubectl, &["compare-kustomize"]);
    let report: Value = serde_json::from_str(&ok(&out, "kustomize comparison")).unwrap();
    assert_eq!(strings(&report["overlays"]).len(), 5, "{report}");
    assert!(report["compared"].as_u64().unwrap_or(0) >= 30, "{report}");
}

#[test]
fn a_misspelled_value_fails_the_render_naming_the_key() {
    let Some((python, kubectl)) = tools() else {
        return;
    };
    for (values, named) in [
        (r#"{"platfrom": "k3s"}"#, "platfrom"),
        (
            r#"{"plexusd": {"namespaceIsolaton": true}}"#,
            "namespaceIsolaton",
        ),
        (r#"{"paths": {"cniBinDir": "opt/cni/bin"}}"#, "cniBinDir"),
    ] {
        let out = chart_check(&python, &kubectl, &["render", "generic", "nri", values]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{values} rendered");
        assert!(stderr.contains(named), "{values}: {stderr}");
    }
}

#[test]
fn presets_put_each_platform_s_paths_into_config_and_mounts() {
    let Some((python, kubectl)) = tools() else {
        return;
    };
    for entry in renders(&python, &kubectl) {
        let k3s = entry["platform"] == "k3s";
        let bin_dir = if k3s {
            "/var/lib/rancher/k3s/data/cni"
        } else {
            "/opt/cni/bin"
        };
        let config = object(entry, "ConfigMap")["data"]["plexusd.yaml"]
            .as_str()
            .unwrap();
        assert!(
            config.contains(&format!("- {bin_dir}\n")),
            "{}",
            label(entry)
        );
        let volumes = &object(entry, "DaemonSet")["spec"]["template"]["spec"]["volumes"];
        let host = |name: &str| {
            volumes
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == name)
                .map(|v| v["hostPath"]["path"].as_str().unwrap_or("").to_owned())
        };
        assert_eq!(
            host("cni-bin").as_deref(),
            Some(bin_dir),
            "{}",
            label(entry)
        );
        let shim = entry["mode"] != "nri";
        let conf_dir = if k3s {
            "/var/lib/rancher/k3s/agent/etc/cni/net.d"
        } else {
            "/etc/cni/net.d"
        };
        assert_eq!(
            host("cni-conf").as_deref(),
            shim.then_some(conf_dir),
            "{}",
            label(entry)
        );
        assert_eq!(
            host("nri").is_some(),
            entry["mode"] != "shim",
            "{}",
            label(entry)
        );
        // Shim mode (adoption: no NRI Synchronize reports live pods) and NRI mode (early
        // setup), not auto: containerd's socket directory mounted, and the socket in the
        // config, with early setup on in NRI mode only.
        let adopts = entry["mode"] == "shim" || entry["mode"] == "nri";
        let containerd_dir = if k3s || entry["platform"] == "rke2" {
            "/run/k3s/containerd"
        } else {
            "/run/containerd"
        };
        assert_eq!(
            host("containerd").as_deref(),
            adopts.then_some(containerd_dir),
            "{}",
            label(entry)
        );
        assert_eq!(
            config.contains(&format!("socket: {containerd_dir}/containerd.sock")),
            adopts,
            "{}: {config}",
            label(entry)
        );
        assert_eq!(
            config.contains("earlySetup: true"),
            entry["mode"] == "nri",
            "{}: {config}",
            label(entry)
        );
        let primary = if shim {
            "primaryMode: plexus"
        } else {
            "primaryMode: runtime"
        };
        assert!(config.contains(primary), "{}: {config}", label(entry));
    }
}

/// Loads each rendered ConfigMap's config with plexusd's strict parser.
fn check_rendered_configs(source: &str) -> usize {
    let Some((python, kubectl)) = tools() else {
        return 0;
    };
    let plexusd = bin("plexusd");
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for entry in renders(&python, &kubectl) {
        let config = object(entry, "ConfigMap")["data"]["plexusd.yaml"]
            .as_str()
            .unwrap();
        let is_kubernetes = config.contains("\nnadSource:\n  kubernetes:");
        if is_kubernetes != (source == "kubernetes") {
            continue;
        }
        let path = dir.path().join("plexusd.yaml");
        std::fs::write(&path, config).unwrap();
        let out = Command::new(&plexusd)
            .arg("--config")
            .arg(&path)
            .arg("check-config")
            .output()
            .unwrap();
        ok(
            &out,
            &format!("plexusd check-config of {} ({config})", label(entry)),
        );
        checked += 1;
    }
    checked
}

#[test]
fn rendered_config_with_a_directory_nad_source_loads_in_plexusd() {
    if tools().is_none() {
        return;
    }
    assert_eq!(check_rendered_configs("directory"), 15);
}

/// The default: NADs from the API server (`nadSource.kubernetes`, issue 8). Fails until
/// plexusd's parser accepts that source.
#[test]
fn rendered_config_with_the_kubernetes_nad_source_loads_in_plexusd() {
    if tools().is_none() {
        return;
    }
    assert_eq!(check_rendered_configs("kubernetes"), 45);
}

#[test]
fn rendered_container_args_parse_with_each_binary() {
    let Some((python, kubectl)) = tools() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let empty_config = dir.path().join("empty.yaml");
    std::fs::write(&empty_config, "{}\n").unwrap();
    for entry in renders(&python, &kubectl) {
        let what = label(entry);
        for c in containers(entry, "containers")
            .into_iter()
            .chain(containers(entry, "initContainers"))
        {
            let command = strings(&c["command"]);
            let args = strings(&c["args"]);
            let name = command
                .first()
                .and_then(|p| p.strip_prefix("/usr/local/bin/"))
                .unwrap_or_else(|| panic!("{what}: command {command:?} not in /usr/local/bin"));
            match (c["name"].as_str().unwrap(), name) {
                ("plexusd", "plexusd") => {
                    // The args as rendered, the config swapped for a minimal valid one (the
                    // rendered config itself is checked by the tests above).
                    let mut args = replace_flag(&args, "--config", empty_config.to_str().unwrap());
                    args.push("check-config".into());
                    let out = Command::new(bin("plexusd")).args(&args).output().unwrap();
                    ok(&out, &format!("{what}: plexusd {args:?}"));
                }
                ("plexus-nri", "plexus-nri") => {
                    let mut args = args.clone();
                    args.push("--check".into());
                    let out = Command::new(bin("plexus-nri"))
                        .args(&args)
                        .output()
                        .unwrap();
                    let text = ok(&out, &format!("{what}: plexus-nri {args:?}"));
                    assert!(
                        text.contains("plexusd_socket=/run/plexus/plexus.sock"),
                        "{text}"
                    );
                }
                ("install-cni", "plexusd") => {
                    let dest = tempfile::tempdir().unwrap();
                    let shim = bin("plexus-cni");
                    let args = replace_flag(&args, "--source", shim.to_str().unwrap());
                    let args = replace_flag(&args, "--dest-dir", dest.path().to_str().unwrap());
                    let out = Command::new(bin("plexusd")).args(&args).output().unwrap();
                    ok(&out, &format!("{what}: plexusd {args:?}"));
                    let installed = std::fs::read(dest.path().join("plexus-cni")).unwrap();
                    assert!(installed == std::fs::read(&shim).unwrap(), "{what}");
                }
                (container, binary) => {
                    panic!("{what}: unexpected container {container} running {binary}")
                }
            }
            if let Some(probe) = c["readinessProbe"]["exec"]["command"].as_array() {
                let probe: Vec<String> = probe
                    .iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect();
                assert_eq!(
                    probe.first().map(String::as_str),
                    Some("/usr/local/bin/plexusctl")
                );
                // Parsed by plexusctl; with no plexusd on the socket it is a connect
                // failure (exit 1), not a usage error (exit 2).
                let absent = dir.path().join("absent.sock");
                let args = replace_flag(&probe[1..], "--socket", absent.to_str().unwrap());
                let out = Command::new(bin("plexusctl")).args(&args).output().unwrap();
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert_eq!(out.status.code(), Some(1), "{what}: {args:?}: {stderr}");
                assert!(stderr.contains("cannot connect"), "{what}: {stderr}");
            }
        }
    }
}

#[test]
fn example_annotations_resolve_against_the_example_nad() {
    let Some((python, kubectl)) = tools() else {
        return;
    };
    let out = chart_check(&python, &kubectl, &["example-pods"]);
    let pods: Vec<Value> = serde_json::from_str(&ok(&out, "example-pods")).unwrap();
    assert_eq!(pods.len(), 3, "{pods:?}");
    let dir = tempfile::tempdir().unwrap();
    let networks = dir.path().join("networks");
    std::fs::create_dir(&networks).unwrap();
    std::fs::copy(
        repo().join("deploy/examples/flux/apps/home-assistant/iot-macvlan.yaml"),
        networks.join("iot-macvlan.yaml"),
    )
    .unwrap();
    for entry in pods {
        let source = entry["source"].as_str().unwrap();
        let pod = dir.path().join("pod.json");
        std::fs::write(&pod, entry["pod"].to_string()).unwrap();
        let out = Command::new(bin("plexusd"))
            .args(["explain", "--output", "json", "--pod"])
            .arg(&pod)
            .arg("--networks")
            .arg(&networks)
            .output()
            .unwrap();
        let plan: Value = serde_json::from_str(&ok(&out, source)).unwrap();
        let iot = plan["attachments"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["interface"] == "iot0"))
            .unwrap_or_else(|| panic!("{source}: no iot0 in {plan}"));
        assert_eq!(iot["network"], "home/iot-macvlan", "{source}");
        assert_eq!(
            iot["runtimeConfig"]["ips"][0], "192.168.50.10/24",
            "{source}"
        );
        assert_eq!(iot["plugins"][0], "macvlan", "{source}");
    }
}

#[test]
fn with_the_metrics_port_the_probes_ask_plexusd_s_http_endpoint() {
    let Some((python, kubectl)) = tools() else {
        return;
    };
    let mut with_metrics = 0;
    for entry in renders(&python, &kubectl) {
        let plexusd = containers(entry, "containers")
            .into_iter()
            .find(|c| c["name"] == "plexusd")
            .unwrap_or_else(|| panic!("{}: no plexusd container", label(entry)));
        let metrics_port = plexusd["ports"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["name"] == "metrics"));
        let ready = &plexusd["readinessProbe"];
        let live = &plexusd["livenessProbe"];
        if metrics_port {
            with_metrics += 1;
            assert_eq!(ready["httpGet"]["path"], "/readyz", "{}", label(entry));
            assert_eq!(ready["httpGet"]["port"], "metrics", "{}", label(entry));
            assert!(ready.get("exec").is_none(), "{}", label(entry));
            assert_eq!(live["httpGet"]["path"], "/healthz", "{}", label(entry));
            assert_eq!(live["httpGet"]["port"], "metrics", "{}", label(entry));
        } else {
            assert!(ready.get("httpGet").is_none(), "{}", label(entry));
            assert!(live.is_null(), "{}: {live}", label(entry));
        }
    }
    assert!(with_metrics > 0, "no render enables metrics");
}

//! `plexusd explain`: offline resolution of the example pods against the example NADs, run as
//! the real binary (the path `plexusctl explain --networks` takes), in both output formats.

use std::path::{Path, PathBuf};
use std::process::Command;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples")
}

fn explain(pod: &str, config: Option<&Path>, output: &str) -> (bool, String) {
    let ex = examples();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plexusd"));
    cmd.arg("explain")
        .arg("--pod")
        .arg(ex.join("pods").join(pod))
        .arg("--networks")
        .arg(ex.join("networks.d"))
        .arg("--output")
        .arg(output);
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn example_pod_resolves_to_json_plan() {
    let config = examples().join("plexusd.yaml");
    let (ok, stdout) = explain("home-assistant.yaml", Some(&config), "json");
    assert!(ok, "{stdout}");
    let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(plan["apiVersion"], "plexus.io/explain/v1");
    assert_eq!(plan["pod"]["namespace"], "home");
    let attachments = plan["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 2, "{stdout}");
    assert_eq!(attachments[1]["network"], "home/iot-macvlan");
}

#[test]
fn isolation_violation_fails_in_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("plexusd.yaml");
    std::fs::write(&config, "namespaceIsolation: true\n").unwrap();
    let (ok, stdout) = explain("isolation-violation-pod.yaml", Some(&config), "json");
    assert!(!ok, "must exit non-zero: {stdout}");
    let out: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(out["error"]["kind"], "namespace-isolation", "{stdout}");
    let (ok, text) = explain("isolation-violation-pod.yaml", Some(&config), "text");
    assert!(!ok);
    assert!(text.contains("shared"), "{text}");
    // Without isolation the same pod resolves.
    let (ok, _) = explain("isolation-violation-pod.yaml", None, "text");
    assert!(ok);
}

#[test]
fn unreadable_input_is_an_error_in_the_chosen_format() {
    let out = Command::new(env!("CARGO_BIN_EXE_plexusd"))
        .args([
            "explain",
            "--pod",
            "/nonexistent/pod.yaml",
            "--networks",
            "/nonexistent",
        ])
        .args(["--output", "json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Golden: the documented error shape (docs/explain.md), every key present.
    assert_eq!(
        body,
        serde_json::json!({
            "apiVersion": "plexus.io/explain/v1",
            "pod": {"namespace": "", "name": "", "uid": ""},
            "error": {
                "kind": "invalid-pod-manifest",
                "message": "invalid request: cannot read pod manifest /nonexistent/pod.yaml: \
                            No such file or directory (os error 2)"
            }
        })
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("plexusd.yaml");
    std::fs::write(&config, "noSuchKey: 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_plexusd"))
        .arg("--config")
        .arg(&config)
        .args([
            "explain",
            "--pod",
            "/x",
            "--networks",
            "/y",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&body), ["apiVersion", "pod", "error"]);
    assert_eq!(keys(&body["pod"]), ["namespace", "name", "uid"]);
    assert_eq!(body["error"]["kind"], "invalid-config", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("noSuchKey"), "{message}");
    let bad_config = Command::new(env!("CARGO_BIN_EXE_plexusd"))
        .args(["--config", "/nonexistent/plexusd.yaml", "explain"])
        .args(["--pod", "/x", "--networks", "/y"])
        .output()
        .unwrap();
    assert!(!bad_config.status.success());
    assert!(String::from_utf8_lossy(&bad_config.stderr).contains("/nonexistent/plexusd.yaml"));
}

/// Explains the example pod `pod` against the NAD directory `networks`, as JSON.
fn explain_against(pod: &str, networks: &Path) -> (bool, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_plexusd"))
        .arg("explain")
        .arg("--pod")
        .arg(examples().join("pods").join(pod))
        .arg("--networks")
        .arg(networks)
        .arg("--output")
        .arg("json")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    (
        out.status.success(),
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}")),
    )
}

#[test]
fn broken_nad_files_and_a_missing_directory_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("iot.yaml");
    std::fs::write(&broken, "apiVersion: k8s.cni.cncf.io/v1\nkind: [\n").unwrap();
    let (ok, out) = explain_against("home-assistant.yaml", dir.path());
    assert!(!ok);
    assert_eq!(out["error"]["kind"], "unusable-nad-files", "{out}");
    let message = out["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&broken.display().to_string()) && message.contains("invalid YAML"),
        "{message}"
    );

    let absent = dir.path().join("absent");
    let (ok, out) = explain_against("home-assistant.yaml", &absent);
    assert!(!ok);
    assert_eq!(out["error"]["kind"], "read-nad-dir", "{out}");
    let message = out["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "cannot read network directory {}",
            absent.display()
        )),
        "{message}"
    );
}

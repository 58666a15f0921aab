//! plexusd's JSON log lines, read from a real plexusd process (privileged: a native
//! macvlan in test namespaces): every line logged inside a pod request names the pod, the
//! sandbox and the trace id (so logs join traces), a successful setup and teardown each
//! log one info line with the interfaces and the duration, a failure logs its reason once,
//! and every line is one well-formed JSON object without duplicate keys.

mod support;

use std::collections::HashMap;
use std::process::{Command, Stdio};

use plexus_client::v1;
use plexus_netlink::test_util::require_privileged;
use support::{Namespaces, Plexusd, nad, setup_request_for, write_config, write_nads};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// The RPC span's fields on a line (the current span or one of the enclosing ones), if it
/// was logged inside one.
fn rpc_fields(line: &serde_json::Value) -> Option<&serde_json::Map<String, serde_json::Value>> {
    std::iter::once(&line["span"])
        .chain(line["spans"].as_array().into_iter().flatten())
        .find(|s| s["name"] == "rpc")?
        .as_object()
}

/// Whether `text` repeats a key in any of its objects (serde_json's `Value` would keep
/// only the last one silently), as `Err(key)`.
fn duplicate_key(text: &str) -> Result<(), String> {
    use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
    struct Checked;
    impl<'de> Deserialize<'de> for Checked {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(CheckedVisitor)
        }
    }
    struct CheckedVisitor;
    impl<'de> Visitor<'de> for CheckedVisitor {
        type Value = Checked;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
            let mut seen = std::collections::BTreeSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if !seen.insert(key.clone()) {
                    return Err(A::Error::custom(key));
                }
                map.next_value::<Checked>()?;
            }
            Ok(Checked)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
            while seq.next_element::<Checked>()?.is_some() {}
            Ok(Checked)
        }
        fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_unit<E>(self) -> Result<Checked, E> {
            Ok(Checked)
        }
    }
    serde_json::from_str::<Checked>(text)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// `req` carrying the test's `traceparent`.
fn traced<T>(req: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(req);
    r.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE}-00f067aa0ba902b7-01").parse().unwrap(),
    );
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pod_line_names_pod_sandbox_and_trace() {
    if !require_privileged() {
        return;
    }
    let Namespaces { host, pod, uplink } = Namespaces::new().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = write_config(dir.path(), &host);
    let mut yaml = std::fs::read_to_string(&config).unwrap();
    // An exporter (to a closed loopback port): its own log lines must be well-formed too.
    yaml.push_str(
        "telemetry: {logFormat: json, logLevel: info, otlpEndpoint: \"http://127.0.0.1:9\"}\n",
    );
    std::fs::write(&config, yaml).unwrap();
    let mv = serde_json::json!({"cniVersion": "1.0.0", "type": "macvlan", "master": uplink,
        "mode": "bridge", "ipam": {"type": "host-local", "subnet": "10.250.9.0/24"}});
    write_nads(dir.path(), &[nad("mv", mv)]);
    let log = dir.path().join("plexusd.log");
    let child = Command::new(env!("CARGO_BIN_EXE_plexusd"))
        .arg("--config")
        .arg(&config)
        .env_remove("RUST_LOG")
        .env_remove("PLEXUS_CRASH_AT")
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let mut daemon = Plexusd::adopt(child);
    daemon
        .wait_serving(&socket, std::time::Duration::from_secs(20))
        .await;
    let mut client = plexus_client::connect(&socket).await.unwrap();
    client
        .setup_pod(traced(setup_request_for("sb-logs", &pod.path(), "mv")))
        .await
        .expect("setup");
    let missing = client
        .setup_pod(traced(setup_request_for("sb-nonad", &pod.path(), "nosuch")))
        .await
        .expect_err("an unknown network fails");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    client
        .teardown_pod(traced(v1::TeardownPodRequest {
            sandbox_id: "sb-logs".into(),
            pod: setup_request_for("sb-logs", &pod.path(), "mv").pod,
            netns_path: pod.path().display().to_string(),
            ..Default::default()
        }))
        .await
        .expect("teardown");
    drop(client);
    // Log lines go through a queue (`plexus_telemetry::log_queue`): a SIGTERM'd plexusd
    // writes them all before it exits.
    assert!(daemon.terminate().success());

    let text = std::fs::read_to_string(&log).unwrap();
    let mut messages: HashMap<String, serde_json::Value> = HashMap::new();
    let mut pod_lines = 0;
    for raw in text.lines() {
        let line: serde_json::Value =
            serde_json::from_str(raw).unwrap_or_else(|e| panic!("not JSON ({e}): {raw}"));
        if let Err(key) = duplicate_key(raw) {
            panic!("duplicate key {key} in {raw}");
        }
        let message = line["fields"]["message"].as_str().unwrap_or("").to_owned();
        let Some(rpc) = rpc_fields(&line) else {
            continue;
        };
        if rpc.get("rpc.method").and_then(|m| m.as_str()) == Some("Watch") {
            continue;
        }
        pod_lines += 1;
        for key in [
            "k8s.namespace.name",
            "k8s.pod.name",
            "plexus.sandbox.id",
            "trace_id",
        ] {
            assert!(rpc.contains_key(key), "no {key} on a pod line: {raw}");
        }
        assert_eq!(rpc["trace_id"], TRACE, "{raw}");
        messages.insert(message, line);
    }
    assert!(pod_lines >= 3, "pod lines: {pod_lines}\n{text}");
    let set_up = &messages
        .get("pod networks set up")
        .unwrap_or_else(|| panic!("no setup info line in\n{text}"));
    assert_eq!(set_up["level"], "INFO");
    assert_eq!(set_up["fields"]["interfaces"], "eth0,net1=default/mv");
    assert!(set_up["fields"]["duration_ms"].is_u64(), "{set_up}");
    let torn = &messages
        .get("pod networks torn down")
        .unwrap_or_else(|| panic!("no teardown info line in\n{text}"));
    assert_eq!(torn["fields"]["interfaces"], "net1=default/mv");
    let failed = &messages
        .get("request failed")
        .unwrap_or_else(|| panic!("no failure line in\n{text}"));
    assert_eq!(failed["level"], "WARN");
    assert_eq!(failed["fields"]["reason"], "network_not_found");
    // The message is written once: in the span's status description, not again as a field.
    assert!(failed["fields"].get("error").is_none(), "{failed}");
    let rpc = rpc_fields(failed).unwrap();
    assert!(
        rpc["otel.status_description"]
            .as_str()
            .unwrap()
            .contains("nosuch"),
        "{failed}"
    );
}

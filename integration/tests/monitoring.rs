//! The monitoring shipped in the chart (`deploy/helm/plexus/monitoring/`), checked with the
//! real Prometheus tooling (Debian `prometheus`'s `promtool`) and a real plexusd:
//! - the rule file passes `promtool check rules` and its unit tests (`promtool test rules`,
//!   every expected alert with its rendered annotations);
//! - the PrometheusRule Helm renders (real Helm engine, `chart_check.py`) passes `promtool
//!   check rules` too and holds the same alerts;
//! - a live plexusd's `/metrics`, scraped as Prometheus asks for it, passes `promtool check
//!   metrics`, and every metric and label the rules and the dashboard name is one it exports.
//!
//! With privileged tests required (`PLEXUS_REQUIRE_PRIVILEGED=1`, CI) a missing promtool or
//! virtualenv fails the tests.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use plexus_integration::Nad;
use plexus_integration::nad::create_uplink;
use plexus_integration::netns::TestNetns;
use plexus_proto::v1;
use serde_json::Value;

fn monitoring() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/helm/plexus/monitoring")
}

/// `promtool`, or `None` when it is missing and the run does not require it.
fn promtool() -> Option<PathBuf> {
    let path =
        PathBuf::from(std::env::var("PLEXUS_PROMTOOL").unwrap_or_else(|_| "promtool".into()));
    if Command::new(&path)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Some(path);
    }
    plexus_integration::privileged::unavailable(&format!(
        "no working {}: run `make setup` (it installs Debian's prometheus package)",
        path.display()
    ));
    None
}

fn ok(out: &Output, what: &str) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{text}",
        out.status
    );
    text
}

#[test]
fn the_rule_file_passes_promtool_check_and_its_unit_tests() {
    let Some(promtool) = promtool() else {
        return;
    };
    let dir = monitoring();
    let out = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(dir.join("plexus-rules.yaml"))
        .output()
        .unwrap();
    let text = ok(&out, "promtool check rules");
    assert!(text.contains("SUCCESS: 7 rules found"), "{text}");
    let out = Command::new(&promtool)
        .current_dir(&dir)
        .args(["test", "rules", "plexus-rules.test.yaml"])
        .output()
        .unwrap();
    ok(&out, "promtool test rules");
}

#[test]
fn the_rendered_prometheus_rule_passes_promtool_and_holds_the_rule_file() {
    let Some(promtool) = promtool() else {
        return;
    };
    let venv = std::env::var_os("PLEXUS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/plexus/venv"));
    let python = venv.join("bin/python");
    if !python.is_file() {
        plexus_integration::privileged::unavailable(&format!(
            "no virtualenv python at {}: run `make setup`",
            python.display()
        ));
        return;
    }
    let values = r#"{"metrics": {"enabled": true, "prometheusRule": {"enabled": true}}}"#;
    let out = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/chart_check.py"))
        .args(["render", "generic", "nri", values])
        .output()
        .unwrap();
    let rendered: Value = serde_json::from_str(&ok(&out, "chart_check.py render")).unwrap();
    let rule = rendered
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "PrometheusRule")
        .expect("a PrometheusRule with metrics.prometheusRule.enabled");
    let dir = tempfile::tempdir().unwrap();
    // JSON is YAML: the spec is a rule file as it stands.
    let file = dir.path().join("rendered.json");
    std::fs::write(&file, rule["spec"].to_string()).unwrap();
    let out = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    ok(&out, "promtool check rules on the rendered PrometheusRule");
    let alerts: Vec<&str> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["alert"].as_str().unwrap())
        .collect();
    let source = std::fs::read_to_string(monitoring().join("plexus-rules.yaml")).unwrap();
    let in_file: Vec<&str> = source
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(alerts, in_file);
    // Helm did not touch the alert templates.
    let text = rule["spec"].to_string();
    assert!(text.contains("{{ $labels.instance }}"), "{text}");
}

#[path = "monitoring/live.rs"]
mod live;
use live::{Live, get};

/// Every sample name a scrape can hold, from its `# TYPE` lines, and every label name of
/// its samples.
fn exported(scrape: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut names = BTreeSet::new();
    let mut labels = BTreeSet::new();
    for line in scrape.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            names.insert(name.to_owned());
            let suffixes: &[&str] = match kind {
                "histogram" => &["_bucket", "_sum", "_count"],
                "counter" => &["_total"],
                _ => &[],
            };
            for s in suffixes {
                names.insert(format!("{name}{s}"));
            }
        } else if !line.starts_with('#')
            && let Some((_, rest)) = line.split_once('{')
        {
            for pair in rest.split(',') {
                if let Some((label, _)) = pair.split_once('=') {
                    labels.insert(label.trim().to_owned());
                }
            }
        }
    }
    (names, labels)
}

/// The metric names (`plexus_…`, `process_…`) a text of PromQL or prose mentions.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|t| t.starts_with("plexus_") || t.starts_with("process_"))
        .map(str::to_owned)
        .collect()
}

/// The label names a PromQL expression matches on or groups by.
fn label_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find(['{', '(']) {
        let open = rest.as_bytes()[i];
        let before = rest[..i].trim_end();
        let inside_end = rest[i..].find(if open == b'{' { '}' } else { ')' });
        let Some(end) = inside_end else { break };
        let inside = &rest[i + 1..i + end];
        let grouping = before.ends_with(" by") || before.ends_with("without") || before == "by";
        if open == b'{' {
            for m in inside.split(',') {
                let name: String = m
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else if grouping {
            for name in inside.split(',') {
                out.insert(name.trim().to_owned());
            }
        }
        rest = &rest[i + 1..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_scrape_passes_promtool_and_holds_every_metric_the_rules_and_dashboard_name() {
    if !plexus_integration::require_privileged() {
        return;
    }
    let Some(promtool) = promtool() else {
        return;
    };
    let live = Live::start();
    let (plexusd, setup) = (&live.plexusd, |id: &str, net: &str| live.setup(id, net));
    // A pod set up and torn down, then one whose network does not exist: every family
    // the rules and the dashboard use gets samples with their labels.
    let mut client = plexus_integration::plexus::connect(&plexusd.socket)
        .await
        .unwrap();
    client
        .setup_pod(setup("monitoring-1", "watched-net"))
        .await
        .unwrap();
    let (_, during) = get(plexusd.metrics, "/metrics").unwrap();
    assert!(
        during.contains("network=\"default/watched-net\""),
        "{during}"
    );
    client
        .teardown_pod(v1::TeardownPodRequest {
            sandbox_id: "monitoring-1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let refused = client.setup_pod(setup("monitoring-2", "no-such-net")).await;
    assert!(refused.is_err(), "{refused:?}");
    let (status, scrape) = get(plexusd.metrics, "/metrics").unwrap();
    assert_eq!(status, 200, "{scrape}");
    assert!(scrape.contains("reason=\"network_not_found\""), "{scrape}");

    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    let text = ok(&out, "promtool check metrics");
    assert!(
        text.trim().is_empty(),
        "promtool check metrics found problems:\n{text}"
    );

    let (names, mut labels) = exported(&scrape);
    labels.extend(exported(&during).1);
    // Added by Prometheus at scrape time, or part of every histogram.
    labels.extend(["instance", "job", "le"].map(str::to_owned));
    let rules = std::fs::read_to_string(monitoring().join("plexus-rules.yaml")).unwrap();
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(monitoring().join("plexus-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut exprs: Vec<String> = Vec::new();
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "panel ids are unique"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}",
            panel["title"]
        );
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for t in targets {
            exprs.push(t["expr"].as_str().unwrap().to_owned());
        }
    }
    let mentioned: BTreeSet<String> = metric_names(&rules)
        .into_iter()
        .chain(exprs.iter().flat_map(|e| metric_names(e)))
        .collect();
    assert!(mentioned.len() >= 10, "{mentioned:?}");
    let unknown: Vec<&String> = mentioned.iter().filter(|m| !names.contains(*m)).collect();
    assert!(
        unknown.is_empty(),
        "not exported by plexusd: {unknown:?}\nexported: {names:?}"
    );
    let rule_exprs: Vec<String> = rules
        .split("expr:")
        .skip(1)
        .map(|e| {
            e.split("for:")
                .next()
                .unwrap()
                .split("labels:")
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    let used: BTreeSet<String> = rule_exprs
        .iter()
        .chain(&exprs)
        .flat_map(|e| label_names(e))
        .collect();
    let unknown: Vec<&String> = used.iter().filter(|l| !labels.contains(*l)).collect();
    assert!(
        unknown.is_empty(),
        "labels no plexus sample carries: {unknown:?}\nexported: {labels:?}"
    );
}

#[test]
fn label_names_are_found_in_matchers_and_groupings_only() {
    let got = label_names(
        r#"histogram_quantile(0.99, sum by (instance, le) (rate(plexus_x_bucket{operation="setup", outcome=~"ok"}[10m]))) > 1"#,
    );
    let want: BTreeSet<String> = ["instance", "le", "operation", "outcome"]
        .map(str::to_owned)
        .into();
    assert_eq!(got, want);
    assert!(
        metric_names("rate(process_cpu_seconds_total{job=~\".*plexus.*\"}[1m])")
            .contains("process_cpu_seconds_total")
    );
}

/// The sum of the samples of `name` whose labels include every `(label, value)` of `with`.
fn sample(scrape: &str, name: &str, with: &[(&str, &str)]) -> f64 {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, labels) = series.split_once('{').unwrap_or((series, ""));
            let all = with
                .iter()
                .all(|(k, v)| labels.contains(&format!("{k}=\"{v}\"")));
            (metric == name && all).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_counted_by_reason_resolution_attach_and_deadline() {
    if !plexus_integration::require_privileged() {
        return;
    }
    let live = Live::start();
    let plexusd = &live.plexusd;
    let mut client = plexus_integration::plexus::connect(&plexusd.socket)
        .await
        .unwrap();
    let request = |id: &str, network: &str| tonic::Request::new(live.setup(id, network));
    let scrape = || get(plexusd.metrics, "/metrics").unwrap().1;
    let failed = |s: &str, reason: &str| {
        sample(
            s,
            "plexus_failures_total",
            &[("operation", "setup"), ("reason", reason)],
        )
    };
    let errors = |s: &str| {
        sample(
            s,
            "plexus_request_duration_seconds_count",
            &[("operation", "setup"), ("outcome", "error")],
        )
    };
    let reasons = ["network_not_found", "link_missing", "deadline_exceeded"];
    let before = scrape();
    for r in reasons {
        assert_eq!(failed(&before, r), 0.0, "{r}");
    }
    assert_eq!(errors(&before), 0.0);

    // Resolution: the network does not exist.
    let err = client
        .setup_pod(request("counted-1", "no-such-net"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err}");
    // Attach: the NAD's master link is missing on the node.
    let err = client
        .setup_pod(request("counted-2", "no-master"))
        .await
        .unwrap_err();
    assert!(err.message().contains("pxnomaster0"), "{err}");
    // Deadline: the plugin takes 5 s of a 300 ms budget.
    let mut slow = request("counted-3", "slow");
    slow.set_timeout(Duration::from_millis(300));
    let err = client.setup_pod(slow).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err}");

    let after = scrape();
    for r in reasons {
        assert_eq!(failed(&after, r), 1.0, "{r}:\n{after}");
    }
    assert_eq!(errors(&after), 3.0, "{after}");
    assert_eq!(
        sample(
            &after,
            "plexus_request_duration_seconds_count",
            &[("operation", "setup"), ("outcome", "ok")]
        ),
        0.0
    );
}

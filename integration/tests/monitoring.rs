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

/// A plexusd with metrics on a loopback port; killed on drop.
struct Plexusd {
    child: Child,
    metrics: SocketAddr,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Plexusd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Plexusd {
    /// plexusd with `host` as its host netns and three NADs: `watched-net` (macvlan on
    /// `uplink`), `no-master` (macvlan on a link that does not exist) and `slow` (an exec'd
    /// plugin whose ADD takes 5 s).
    fn start(host: &Path, uplink: &str) -> Plexusd {
        let bins = plexus_integration::plexus::bin_dir().expect("the plexus binaries");
        let dir = tempfile::tempdir().unwrap();
        let subnet = format!("10.246.{}.0/24", plexus_integration::netns::next_id() % 256);
        std::fs::create_dir_all(dir.path().join("networks.d")).unwrap();
        Nad::macvlan(
            "default",
            "watched-net",
            uplink,
            &subnet,
            &dir.path().join("leases"),
        )
        .write_to(&dir.path().join("networks.d"))
        .unwrap();
        Nad::macvlan(
            "default",
            "no-master",
            "pxnomaster0",
            &subnet,
            &dir.path().join("leases"),
        )
        .write_to(&dir.path().join("networks.d"))
        .unwrap();
        let slow = Nad {
            namespace: "default".into(),
            name: "slow".into(),
            config: serde_json::json!({"cniVersion": "1.0.0", "name": "slow", "type": "plexus-test-slow"}),
        };
        slow.write_to(&dir.path().join("networks.d")).unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let plugin = bin.join("plexus-test-slow");
        std::fs::write(
            &plugin,
            "#!/bin/sh\ncase \"$CNI_COMMAND\" in\n  ADD) sleep 5; exit 1 ;;\n  VERSION) echo '{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"0.3.1\",\"0.4.0\",\"1.0.0\"]}' ;;\nesac\n",
        )
        .unwrap();
        std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let metrics = SocketAddr::from(([127, 0, 0, 1], port));
        let socket = dir.path().join("plexus.sock");
        let config = dir.path().join("plexusd.yaml");
        std::fs::write(
            &config,
            format!(
                "socket: {}\nstateDir: state\ncniCacheDir: cache\nipamDataDir: leases\n\
                 hostNetns: {}\nnadSource: {{directory: networks.d}}\ncniBinDirs: [bin]\n\
                 telemetry: {{logLevel: warn, metricsAddress: \"{metrics}\"}}\n",
                socket.display(),
                host.display()
            ),
        )
        .unwrap();
        let child = Command::new(bins.join("plexusd"))
            .arg("--config")
            .arg(&config)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let me = Plexusd {
            child,
            metrics,
            socket,
            _dir: dir,
        };
        let until = Instant::now() + Duration::from_secs(20);
        while !get(me.metrics, "/readyz").is_ok_and(|(s, _)| s == 200) {
            assert!(Instant::now() < until, "plexusd never became ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        me
    }
}

/// A test host netns with an uplink, a pod netns, and plexusd over them.
struct Live {
    pod: TestNetns,
    plexusd: Plexusd,
    _host: TestNetns,
}

impl Live {
    fn start() -> Live {
        let host = TestNetns::create("pxm-host").unwrap();
        let uplink = create_uplink(&host).unwrap();
        let pod = TestNetns::create("pxm-pod").unwrap();
        let plexusd = Plexusd::start(host.path(), &uplink);
        Live {
            pod,
            plexusd,
            _host: host,
        }
    }

    /// A SetupPod of sandbox `id` (pod `pod-<id>`) in the pod netns, asking for `network`.
    fn setup(&self, id: &str, network: &str) -> v1::SetupPodRequest {
        v1::SetupPodRequest {
            pod: Some(v1::PodRef {
                namespace: "default".into(),
                name: format!("pod-{id}"),
                uid: format!("u-{id}"),
            }),
            sandbox_id: id.into(),
            netns_path: self.pod.path().display().to_string(),
            annotations: [("k8s.v1.cni.cncf.io/networks".to_owned(), network.to_owned())].into(),
            labels: Default::default(),
        }
    }
}

/// A GET with Prometheus's `Accept` header: (status, body).
fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

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

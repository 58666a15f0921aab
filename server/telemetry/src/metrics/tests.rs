use super::*;

/// The family a sample line belongs to, as promtool resolves it.
fn family_of<'a>(sample: &'a str, declared: &std::collections::HashMap<&str, &str>) -> &'a str {
    let name = sample.split(['{', ' ']).next().unwrap_or("");
    if declared.contains_key(name) {
        return name;
    }
    for suffix in ["_bucket", "_sum", "_count", "_total", "_created"] {
        if let Some(base) = name.strip_suffix(suffix)
            && declared.contains_key(base)
        {
            return base;
        }
    }
    name
}

#[test]
fn the_prometheus_text_has_help_and_type_for_every_sample() {
    let (metrics, registry) = fixture();
    let ms = Duration::from_millis(2);
    metrics.request_done(Path::Cni, Operation::Setup, ms, Some("link_missing"));
    metrics.observe_setup(Path::Cni, Driver::Native, Outcome::Ok, ms);
    metrics.set_attachments("default/a", 1);
    let text = render_prometheus(&registry);
    assert!(
        !text.contains("# EOF") && !text.contains("# UNIT"),
        "{text}"
    );
    let mut types = std::collections::HashMap::new();
    let mut helps = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.insert(name, kind);
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            helps.insert(rest.split_once(' ').unwrap().0);
        }
    }
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let family = family_of(line, &types);
        assert!(
            types.contains_key(family),
            "no TYPE for {line:?} in\n{text}"
        );
        assert!(helps.contains(family), "no HELP for {line:?} in\n{text}");
    }
    assert_eq!(types["plexus_failures_total"], "counter", "{text}");
    assert!(
        text.contains(
            "plexus_failures_total{path=\"cni\",operation=\"setup\",reason=\"link_missing\"} 1"
        ),
        "{text}"
    );
}

fn fixture() -> (Metrics, Registry) {
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    (metrics, registry)
}

#[test]
fn every_family_is_typed_once_used() {
    let (metrics, registry) = fixture();
    // prometheus-client omits label families that have no series yet.
    assert!(!render(&registry).contains("plexus_failures"));
    let ms = Duration::from_millis(1);
    metrics.request_done(Path::Nri, Operation::Setup, ms, None);
    metrics.observe_setup(Path::Nri, Driver::Native, Outcome::Ok, ms);
    metrics.observe_teardown(Path::Nri, Driver::Native, Outcome::Ok, ms);
    metrics.request_done(Path::Nri, Operation::Teardown, ms, Some("state_corrupt"));
    metrics.set_attachments("kube-system/a", 1);
    let text = render(&registry);
    for family in [
        "# TYPE plexus_request_duration_seconds histogram",
        "# TYPE plexus_setup_duration_seconds histogram",
        "# TYPE plexus_teardown_duration_seconds histogram",
        "# TYPE plexus_failures counter",
        "# TYPE plexus_requests_in_flight gauge",
        "# TYPE plexus_requests_queued gauge",
        "# TYPE plexus_attachments gauge",
        "# TYPE plexus_build_info gauge",
        "# TYPE process_cpu_seconds counter",
        "# TYPE process_resident_memory_bytes gauge",
        "# TYPE process_open_fds gauge",
        "# TYPE process_start_time_seconds gauge",
    ] {
        assert!(text.contains(family), "missing {family:?} in\n{text}");
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[test]
fn observations_render_with_their_labels() {
    let (metrics, registry) = fixture();
    let ok = Outcome::Ok;
    metrics.observe_setup(Path::Nri, Driver::Native, ok, Duration::from_millis(3));
    metrics.observe_setup(Path::Nri, Driver::Native, ok, Duration::from_millis(5));
    metrics.observe_setup(
        Path::Nri,
        Driver::Exec,
        Outcome::Error,
        Duration::from_millis(9),
    );
    metrics.observe_teardown(Path::Cni, Driver::Exec, ok, Duration::from_millis(40));
    metrics.request_done(Path::Api, Operation::Attach, Duration::from_millis(7), None);
    for _ in 0..2 {
        let ms = Duration::from_millis(1);
        metrics.request_done(Path::Nri, Operation::Setup, ms, Some("network_not_found"));
    }
    metrics.set_attachments("default/macvlan-conf", 3);
    let text = render(&registry);
    for line in [
        "plexus_setup_duration_seconds_count{path=\"nri\",driver=\"native\",outcome=\"ok\"} 2",
        "plexus_setup_duration_seconds_sum{path=\"nri\",driver=\"native\",outcome=\"ok\"} 0.008",
        "plexus_setup_duration_seconds_bucket{le=\"0.004\",path=\"nri\",driver=\"native\",outcome=\"ok\"} 1",
        "plexus_setup_duration_seconds_count{path=\"nri\",driver=\"exec\",outcome=\"error\"} 1",
        "plexus_teardown_duration_seconds_count{path=\"cni\",driver=\"exec\",outcome=\"ok\"} 1",
        "plexus_request_duration_seconds_count{path=\"api\",operation=\"attach\",outcome=\"ok\"} 1",
        "plexus_request_duration_seconds_count{path=\"nri\",operation=\"setup\",outcome=\"error\"} 2",
        "plexus_failures_total{path=\"nri\",operation=\"setup\",reason=\"network_not_found\"} 2",
        "plexus_attachments{network=\"default/macvlan-conf\"} 3",
        "plexus_build_info{version=\"",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

#[test]
fn gauges_follow_their_guards() {
    let (metrics, registry) = fixture();
    let first = metrics.in_flight();
    let _second = metrics.in_flight();
    let queued = metrics.queued();
    let text = render(&registry);
    assert!(text.contains("plexus_requests_in_flight 2\n"), "{text}");
    assert!(text.contains("plexus_requests_queued 1\n"), "{text}");
    drop(first);
    drop(queued);
    let text = render(&registry);
    assert!(text.contains("plexus_requests_in_flight 1\n"), "{text}");
    assert!(text.contains("plexus_requests_queued 0\n"), "{text}");
}

#[test]
fn zero_attachments_removes_the_series() {
    let (metrics, registry) = fixture();
    metrics.set_attachments("default/a", 2);
    metrics.set_attachments("default/b", 1);
    metrics.set_attachments("default/a", 0);
    let text = render(&registry);
    assert!(!text.contains("network=\"default/a\""), "{text}");
    assert!(
        text.contains("plexus_attachments{network=\"default/b\"} 1"),
        "{text}"
    );
    metrics.clear_attachments();
    assert!(!render(&registry).contains("network=\"default/b\""));
}

#[test]
fn the_attachments_gauge_follows_each_change() {
    let (metrics, registry) = fixture();
    metrics.attachment_added("default/a");
    metrics.attachment_added("default/a");
    metrics.attachment_removed("default/a");
    let text = render(&registry);
    assert!(
        text.contains("plexus_attachments{network=\"default/a\"} 1"),
        "{text}"
    );
    metrics.attachment_removed("default/a");
    assert!(!render(&registry).contains("network=\"default/a\""));
}

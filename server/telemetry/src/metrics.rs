//! The Prometheus metrics of the node service, over `prometheus-client`. This module owns the
//! metric names, help texts, label sets and buckets; callers only report facts (an attachment
//! took so long through this path and driver, a request failed for this reason). Serving the
//! registry over HTTP lives in [`endpoint`](crate::endpoint).
//!
//! | name | type | labels |
//! |---|---|---|
//! | `plexus_request_duration_seconds` | histogram (every request, failed ones too) | `path`, `operation`, `outcome` |
//! | `plexus_setup_duration_seconds` | histogram (per attachment) | `path`, `driver`, `outcome` |
//! | `plexus_teardown_duration_seconds` | histogram (per attachment) | `path`, `driver`, `outcome` |
//! | `plexus_failures_total` | counter | `path`, `operation`, `reason` |
//! | `plexus_requests_in_flight` | gauge | – |
//! | `plexus_requests_queued` | gauge | – |
//! | `plexus_attachments` | gauge (updated on every change) | `network` |
//! | `plexus_build_info` | gauge (always 1) | `version` |
//! | `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`, `process_start_time_seconds` | the standard process metrics ([`crate::process`]) | – |
//!
//! `path` is the entry point the request came through: `nri` (the NRI plugin's RPCs),
//! `cni` (the CNI shim), `api` (the node API: plexusctl, hot attach/detach), `controller`
//! (the hot-plug controller), `sweep` (the reclaim sweep).

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// How a request reached the node service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Path {
    /// The containerd NRI plugin.
    Nri,
    /// The CNI shim.
    Cni,
    /// The node API directly (plexusctl, hot attach/detach).
    Api,
    /// The hot-plug controller following pod annotations.
    Controller,
    /// The sweep reclaiming sandboxes whose netns is gone.
    Sweep,
}

/// How a request or step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It succeeded.
    Ok,
    /// It failed (the reason is counted in `plexus_failures_total`).
    Error,
}

impl Outcome {
    /// `Ok` when `ok`, else `Error`.
    pub fn of(ok: bool) -> Self {
        if ok { Self::Ok } else { Self::Error }
    }
}

/// How an attachment was configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Driver {
    /// In-process rtnetlink driver.
    Native,
    /// A CNI plugin binary executed per the CNI spec.
    Exec,
}

/// What a request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Attach a pod's networks at sandbox creation.
    Setup,
    /// Remove a pod's networks.
    Teardown,
    /// Hot-attach one network.
    Attach,
    /// Hot-detach one interface.
    Detach,
    /// Tear down sandboxes that no longer exist.
    Reconcile,
}

macro_rules! label_value {
    ($type:ty { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $type {
            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl EncodeLabelValue for $type {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
                EncodeLabelValue::encode(&self.as_str(), encoder)
            }
        }
    };
}

label_value!(Path {
    Nri => "nri",
    Cni => "cni",
    Api => "api",
    Controller => "controller",
    Sweep => "sweep",
});
label_value!(Outcome { Ok => "ok", Error => "error" });
label_value!(Driver { Native => "native", Exec => "exec" });
label_value!(Operation {
    Setup => "setup",
    Teardown => "teardown",
    Attach => "attach",
    Detach => "detach",
    Reconcile => "reconcile",
});

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    path: Path,
    operation: Operation,
    outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StepLabels {
    path: Path,
    driver: Driver,
    outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FailureLabels {
    path: Path,
    operation: Operation,
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct NetworkLabels {
    network: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// 1 ms to about 16 s, doubling: covers a native attach and a slow delegate alike.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Handles to every plexus metric; cheap to clone, all clones update the same series.
#[derive(Debug, Clone)]
pub struct Metrics {
    request_duration: HistogramFamily<RequestLabels>,
    setup_duration: HistogramFamily<StepLabels>,
    teardown_duration: HistogramFamily<StepLabels>,
    failures: Family<FailureLabels, Counter>,
    in_flight: Gauge,
    queued: Gauge,
    attachments: Family<NetworkLabels, Gauge>,
    build_info: Family<BuildLabels, Gauge>,
}

impl Metrics {
    /// Registers every metric in `registry` under the `plexus_` prefix.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            request_duration: Family::new_with_constructor(latency_histogram),
            setup_duration: Family::new_with_constructor(latency_histogram),
            teardown_duration: Family::new_with_constructor(latency_histogram),
            failures: Family::default(),
            in_flight: Gauge::default(),
            queued: Gauge::default(),
            attachments: Family::default(),
            build_info: Family::default(),
        };
        metrics
            .build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register_collector(Box::new(crate::process::ProcessCollector));
        let registry = registry.sub_registry_with_prefix("plexus");
        registry.register_with_unit(
            "request_duration",
            "Time to serve a node-service request, from admission to answer",
            Unit::Seconds,
            metrics.request_duration.clone(),
        );
        registry.register_with_unit(
            "setup_duration",
            "Time to set up one attachment",
            Unit::Seconds,
            metrics.setup_duration.clone(),
        );
        registry.register_with_unit(
            "teardown_duration",
            "Time to tear down one attachment",
            Unit::Seconds,
            metrics.teardown_duration.clone(),
        );
        registry.register(
            "failures",
            "Failed requests by entry point, operation and reason",
            metrics.failures.clone(),
        );
        registry.register(
            "build_info",
            "The plexus version serving (value 1)",
            metrics.build_info.clone(),
        );
        registry.register(
            "requests_in_flight",
            "Requests being served now",
            metrics.in_flight.clone(),
        );
        registry.register(
            "requests_queued",
            "Requests waiting for a free slot",
            metrics.queued.clone(),
        );
        registry.register(
            "attachments",
            "Attachments currently recorded, by network",
            metrics.attachments.clone(),
        );
        metrics
    }

    /// Records one whole request: how long it took and, when it failed, why. `reason` is a
    /// short fixed label such as `network_not_found` or `deadline_exceeded` (never a
    /// message: it must stay low-cardinality).
    pub fn request_done(
        &self,
        path: Path,
        operation: Operation,
        elapsed: Duration,
        failure: Option<&'static str>,
    ) {
        let outcome = Outcome::of(failure.is_none());
        self.request_duration
            .get_or_create(&RequestLabels {
                path,
                operation,
                outcome,
            })
            .observe(elapsed.as_secs_f64());
        if let Some(reason) = failure {
            self.failures
                .get_or_create(&FailureLabels {
                    path,
                    operation,
                    reason,
                })
                .inc();
        }
    }

    /// Records how long setting up one attachment took.
    pub fn observe_setup(&self, path: Path, driver: Driver, outcome: Outcome, elapsed: Duration) {
        self.setup_duration
            .get_or_create(&StepLabels {
                path,
                driver,
                outcome,
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Records how long tearing down one attachment took.
    pub fn observe_teardown(
        &self,
        path: Path,
        driver: Driver,
        outcome: Outcome,
        elapsed: Duration,
    ) {
        self.teardown_duration
            .get_or_create(&StepLabels {
                path,
                driver,
                outcome,
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a request as in flight until the returned guard is dropped.
    pub fn in_flight(&self) -> GaugeGuard {
        GaugeGuard::new(&self.in_flight)
    }

    /// Counts a request as queued until the returned guard is dropped.
    pub fn queued(&self) -> GaugeGuard {
        GaugeGuard::new(&self.queued)
    }

    /// Sets the number of recorded attachments of `network` (`namespace/name`); zero removes
    /// the series.
    pub fn set_attachments(&self, network: &str, count: usize) {
        let labels = NetworkLabels {
            network: network.to_owned(),
        };
        if count == 0 {
            self.attachments.remove(&labels);
        } else {
            let count = i64::try_from(count).unwrap_or(i64::MAX);
            self.attachments.get_or_create(&labels).set(count);
        }
    }

    /// One attachment of `network` was made (the gauge follows every change; the periodic
    /// full listing corrects any drift).
    pub fn attachment_added(&self, network: &str) {
        let labels = NetworkLabels {
            network: network.to_owned(),
        };
        self.attachments.get_or_create(&labels).inc();
    }

    /// One attachment of `network` was removed; the series goes at zero.
    pub fn attachment_removed(&self, network: &str) {
        let labels = NetworkLabels {
            network: network.to_owned(),
        };
        let left = self.attachments.get_or_create(&labels).dec() - 1;
        if left <= 0 {
            self.attachments.remove(&labels);
        }
    }

    /// Forgets every attachments series (before setting them again from a full listing).
    pub fn clear_attachments(&self) {
        self.attachments.clear();
    }
}

/// Decrements its gauge when dropped.
#[derive(Debug)]
#[must_use = "the gauge is decremented when the guard is dropped"]
pub struct GaugeGuard {
    gauge: Gauge,
}

impl GaugeGuard {
    fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self {
            gauge: gauge.clone(),
        }
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Renders `registry` in the OpenMetrics text format served at `/metrics`.
pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail; an encoder error would only come from a metric whose
    // own encoding fails, and ours do not.
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}

/// Renders `registry` in the Prometheus text format 0.0.4 (for scrapers that do not ask
/// for OpenMetrics): no `# EOF` and no `# UNIT` lines, and a counter's `HELP`/`TYPE` name
/// its samples' `_total` name, as `promtool check metrics` expects.
pub fn render_prometheus(registry: &Registry) -> String {
    openmetrics_to_prometheus(&render(registry))
}

fn openmetrics_to_prometheus(text: &str) -> String {
    let counters: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
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
}

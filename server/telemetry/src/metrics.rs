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

pub use exposition::{render, render_prometheus};

mod exposition;

#[cfg(test)]
mod tests;

//! The scripted [`FakePlanner`].

use std::collections::BTreeMap;

use plexus_core::plan::{
    ConfigForm, DefaultRoutePlan, DelegateConfig, NetworkSource, Origin, Plan, PlannedAttachment,
    RuntimeConfig,
};
use plexus_core::pod::PodIdentity;

use crate::error::{Error, ResolveFailure, Result};
use crate::model::SandboxView;
use crate::planner::{Explanation, Planner};

/// A planner for tests: the networks annotation is a comma list of `[ns/]name[@if]`; names
/// starting with `missing` are unknown, names starting with `forbidden` are refused by
/// isolation, anything with a space is malformed.
#[derive(Debug, Default)]
pub struct FakePlanner;

const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";

impl FakePlanner {
    fn planned(pod: &PodIdentity, item: &str, index: usize) -> Result<PlannedAttachment> {
        let fail = |kind, message: String| Error::Resolve {
            pod: pod.to_string(),
            kind,
            message,
        };
        if item.is_empty() || item.contains(' ') {
            return Err(fail(ResolveFailure::Invalid, format!("bad item {item:?}")));
        }
        let (net, iface) = match item.split_once('@') {
            Some((n, i)) => (n, i.to_owned()),
            None => (item, format!("net{index}")),
        };
        let iface = plexus_core::InterfaceName::new(iface)
            .map_err(|e| fail(ResolveFailure::Invalid, e.to_string()))?;
        let (ns, name) = net.split_once('/').unwrap_or((&pod.namespace, net));
        if name.starts_with("missing") {
            return Err(fail(
                ResolveFailure::NotFound,
                format!("network {ns}/{name} not found"),
            ));
        }
        if name.starts_with("forbidden") {
            return Err(fail(
                ResolveFailure::Forbidden,
                format!("namespace {ns} is isolated"),
            ));
        }
        Ok(PlannedAttachment {
            index,
            network: format!("{ns}/{name}"),
            interface: iface,
            origin: Origin::Annotation,
            primary: false,
            source: NetworkSource::Nad {
                namespace: ns.to_owned(),
                name: name.to_owned(),
            },
            config: DelegateConfig {
                form: ConfigForm::Conf,
                name: name.to_owned(),
                cni_version: "1.0.0".to_owned(),
                plugin_types: vec!["macvlan".to_owned()],
                bytes: Vec::new(),
            },
            runtime_config: RuntimeConfig::default(),
            cni_args: None,
            extra_cni_args: Vec::new(),
            default_route: None,
            route_plan: DefaultRoutePlan::default(),
            resource_name: None,
            force_exec: false,
            runtime_managed: false,
            release_on_teardown: false,
        })
    }
}

impl Planner for FakePlanner {
    fn plan(&self, pod: &PodIdentity, annotations: &BTreeMap<String, String>) -> Result<Plan> {
        let mut attachments = Vec::new();
        if let Some(list) = annotations.get(NETWORKS) {
            for (i, item) in list.split(',').enumerate() {
                attachments.push(Self::planned(pod, item.trim(), i + 1)?);
            }
        }
        Ok(Plan {
            pod: pod.clone(),
            attachments,
        })
    }

    /// The wrapped config's `name` as cluster network on `ifname`, then the annotation.
    fn plan_cni(
        &self,
        pod: &PodIdentity,
        annotations: &BTreeMap<String, String>,
        ifname: &plexus_core::InterfaceName,
        wrapped: Option<&serde_json::Value>,
    ) -> Result<Plan> {
        let name = wrapped
            .and_then(|w| w.get("name")?.as_str())
            .ok_or_else(|| Error::Resolve {
                pod: pod.to_string(),
                kind: ResolveFailure::Internal,
                message: "no cluster network".to_owned(),
            })?;
        let mut primary = Self::planned(pod, name, 0)?;
        primary.network = name.to_owned();
        primary.interface = ifname.clone();
        primary.origin = Origin::Cluster;
        primary.primary = true;
        let mut plan = self.plan(pod, annotations)?;
        plan.attachments.insert(0, primary);
        Ok(plan)
    }

    fn plan_one(
        &self,
        pod: &PodIdentity,
        selection: &str,
        present: &[String],
    ) -> Result<PlannedAttachment> {
        let mut planned = Self::planned(pod, selection, present.len() + 1)?;
        planned.origin = Origin::Hotplug;
        Ok(planned)
    }

    fn explain(&self, pod: &PodIdentity, annotations: &BTreeMap<String, String>) -> Explanation {
        match self.plan(pod, annotations) {
            Ok(plan) => Explanation {
                json: serde_json::json!({"pod": pod.to_string(), "attachments": plan.attachments.len()})
                    .to_string(),
                text: format!("{pod}: {} attachments", plan.attachments.len()),
                ok: true,
            },
            Err(err) => Explanation {
                json: serde_json::json!({"error": {"message": err.to_string()}}).to_string(),
                text: err.to_string(),
                ok: false,
            },
        }
    }

    fn network_status(&self, sandbox: &SandboxView) -> Result<String> {
        let names: Vec<&str> = sandbox
            .attachments
            .iter()
            .map(|a| a.network.as_str())
            .collect();
        Ok(serde_json::to_string(&names).unwrap_or_default())
    }
}

//! Resolution: pod annotations + NADs + [`Config`] → the ordered [`Plan`] of
//! attachments a pod gets, and the single attachment of a hot-plug request.
//!
//! Follows Multus: order `[cluster network or pod default-network override,
//! defaultNetworks…, annotation networks…]` (F30) — or, without a cluster network, the
//! inline `delegates` list in place of the first two (F27) — `net<index>` naming where a named
//! interface still consumes its index (F7), per-attachment runtimeConfig and legacy
//! `MAC=`/`IP=` args (F9–F13), namespace isolation (F31), system namespaces (F32) and
//! default-route with ECMP rejected (F15) — with Q10 fixed, see `route`. Interface names
//! are unique across the plan. Pure apart from the config-file reads `netconf` does
//! for spec-less NADs and file-based cluster/default networks; never executes anything.
//! Device-plugin ids are handed out afterwards with [`assign_devices`] (F22, F24), once
//! the daemon knows the pod's allocation.

mod configured;
mod device;
mod route;
#[cfg(test)]
mod tests;

use configured::configured;
pub use device::{DeviceAssignment, assign_devices, inject_device_id};

use crate::annotation::{self, Annotations, Selection};
use crate::config::{Config, PrimaryMode};
use crate::error::{Error, Result, shorten};
use crate::id::InterfaceName;
use crate::nad::{Delegation, Nad, NadSource};
use crate::netconf;
use crate::plan::{
    ConfigForm, DefaultRoutePlan, DelegateConfig, NetworkSource, Origin, Plan, PlannedAttachment,
    RuntimeConfig,
};
use crate::pod::PodIdentity;

/// Resolves the full plan of a pod being created.
pub fn resolve(
    pod: &PodIdentity,
    annotations: &(impl Annotations + ?Sized),
    config: &Config,
    nads: &dyn NadSource,
) -> Result<Plan> {
    let override_sel = match annotations.annotation(annotation::DEFAULT_NETWORK) {
        Some(v) => annotation::parse_default_network(v, &config.multus_namespace)?,
        None => None,
    };
    let selections = match annotations.annotation(annotation::NETWORKS) {
        Some(v) => annotation::parse_networks(v, &pod.namespace)?,
        None => Vec::new(),
    };

    let mut attachments = Vec::with_capacity(1 + config.default_networks.len() + selections.len());
    attachments.push(primary(pod, override_sel.as_ref(), config, nads)?);
    if config.cluster_network.is_some() || config.delegates.is_empty() {
        if !config.is_system_namespace(&pod.namespace) {
            for value in &config.default_networks {
                let index = attachments.len();
                let (conf, source, network, nad) =
                    configured(config, nads, "defaultNetworks", value)?;
                attachments.push(attachment(
                    index,
                    network,
                    InterfaceName::numbered(index)?,
                    Origin::Default,
                    source,
                    conf.into_delegate(),
                    nad.as_ref(),
                )?);
            }
        }
    } else {
        // F27: without a cluster network, every entry of `delegates` after the first
        // follows the primary, for every pod.
        for position in 1..config.delegates.len() {
            let index = attachments.len();
            let (conf, source, network) = configured::delegate(config, position)?;
            attachments.push(attachment(
                index,
                network,
                InterfaceName::numbered(index)?,
                Origin::Default,
                source,
                conf.into_delegate(),
                None,
            )?);
        }
    }
    for sel in &selections {
        check_isolation(pod, config, sel)?;
        let index = attachments.len();
        attachments.push(from_selection(
            pod,
            config,
            nads,
            sel,
            index,
            Origin::Annotation,
        )?);
    }
    check_unique_interfaces(pod, &attachments)?;
    route::plan_default_routes(&mut attachments)?;
    Ok(Plan {
        pod: pod.clone(),
        attachments,
    })
}

/// Resolves one hot-plug selection (`[ns/]name[@if]` or a JSON element) for a running
/// pod whose interfaces are `existing`. Unnamed, it gets `net<index>` with the index
/// after both the interface count and the highest `net<N>` present, so a name is never
/// reused while stale status may still mention it. Same validation and isolation as
/// at creation; a `default-route` with gateways is refused (it would have to change
/// the pod's other interfaces), `[]` is accepted.
pub fn resolve_one(
    pod: &PodIdentity,
    selection: &str,
    existing: &[String],
    config: &Config,
    nads: &dyn NadSource,
) -> Result<PlannedAttachment> {
    let sel = annotation::parse_selection(selection, &pod.namespace)?;
    check_isolation(pod, config, &sel)?;
    if sel
        .default_route
        .as_ref()
        .is_some_and(|gws| !gws.is_empty())
    {
        return Err(Error::UnsupportedHotplug {
            selection: shorten(selection, 80),
            reason: "a default-route with gateways can only be requested when the pod is created; accepted for hot-plug: no default-route, or [] to drop the new interface's default routes".to_string(),
        });
    }
    let highest_net = existing
        .iter()
        .filter_map(|i| i.strip_prefix("net")?.parse::<usize>().ok())
        .max();
    let index = existing
        .len()
        .max(highest_net.map_or(0, |n| n.saturating_add(1)))
        .max(1);
    let mut planned = from_selection(pod, config, nads, &sel, index, Origin::Hotplug)?;
    if let Some(taken) = existing.iter().find(|i| **i == planned.interface) {
        return Err(Error::DuplicateInterface {
            pod: pod.to_string(),
            interface: taken.clone(),
            first: "an existing interface of the pod".to_string(),
            second: planned.network,
        });
    }
    if sel.default_route.is_some() {
        planned.route_plan = DefaultRoutePlan {
            install: Vec::new(),
            remove_v4: true,
            remove_v6: true,
        };
    }
    Ok(planned)
}

/// Index 0: the pod's default-network override, the configured cluster network, or
/// (runtime mode without one) a placeholder for the runtime's own `eth0`.
fn primary(
    pod: &PodIdentity,
    override_sel: Option<&Selection>,
    config: &Config,
    nads: &dyn NadSource,
) -> Result<PlannedAttachment> {
    let runtime = config.primary_mode == PrimaryMode::Runtime;
    if let Some(sel) = override_sel {
        if runtime {
            return Err(Error::DefaultNetworkUnsupported {
                pod: pod.to_string(),
            });
        }
        // F6: NAD only (no file fallback), not subject to isolation, requests ignored
        // except the legacy MAC=/IP= args.
        let mut planned = from_selection(pod, config, nads, sel, 0, Origin::DefaultOverride)?;
        planned.primary = true;
        planned.runtime_config = RuntimeConfig::default();
        if sel.interface.is_none() {
            planned.interface = config.primary_interface.clone();
        }
        return Ok(planned);
    }
    let mut planned = match &config.cluster_network {
        Some(value) => {
            let (conf, source, network, nad) = configured(config, nads, "clusterNetwork", value)?;
            attachment(
                0,
                network,
                config.primary_interface.clone(),
                Origin::Cluster,
                source,
                conf.into_delegate(),
                nad.as_ref(),
            )?
        }
        None if !config.delegates.is_empty() => {
            let (conf, source, network) = configured::delegate(config, 0)?;
            attachment(
                0,
                network,
                config.primary_interface.clone(),
                Origin::Cluster,
                source,
                conf.into_delegate(),
                None,
            )?
        }
        None if runtime => PlannedAttachment {
            index: 0,
            network: String::new(),
            interface: config.primary_interface.clone(),
            origin: Origin::Cluster,
            primary: true,
            source: NetworkSource::Runtime,
            config: DelegateConfig {
                form: ConfigForm::Conf,
                name: String::new(),
                cni_version: String::new(),
                plugin_types: Vec::new(),
                bytes: Vec::new(),
            },
            runtime_config: RuntimeConfig::default(),
            cni_args: None,
            extra_cni_args: Vec::new(),
            default_route: None,
            route_plan: DefaultRoutePlan::default(),
            resource_name: None,
            force_exec: false,
            runtime_managed: true,
            release_on_teardown: false,
        },
        None => return Err(Error::ClusterNetworkMissing),
    };
    planned.primary = true;
    planned.runtime_managed = runtime;
    Ok(planned)
}

/// A NAD-backed attachment from a selection element.
fn from_selection(
    pod: &PodIdentity,
    config: &Config,
    nads: &dyn NadSource,
    sel: &Selection,
    index: usize,
    origin: Origin,
) -> Result<PlannedAttachment> {
    let nad = nads
        .get(&sel.namespace, &sel.name)?
        .ok_or_else(|| Error::NetworkNotFound {
            pod: pod.to_string(),
            requested_by: match origin {
                Origin::DefaultOverride => annotation::DEFAULT_NETWORK.to_string(),
                Origin::Hotplug => format!("the hot-plug selection ({})", sel.text),
                _ => format!(
                    "item {} ({}) of {}",
                    sel.position,
                    sel.text,
                    annotation::NETWORKS
                ),
            },
            namespace: sel.namespace.clone(),
            name: sel.name.clone(),
        })?;
    let (mut conf, source) = netconf::from_nad(&nad, &config.conf_dir)?;
    let network = nad.key();
    if let Some(args) = &sel.cni_args {
        conf.inject_cni_args(&network, args)?;
    }
    let interface = match &sel.interface {
        Some(name) => name.clone(),
        None => InterfaceName::numbered(index)?,
    };
    let mut planned = attachment(
        index,
        network,
        interface,
        origin,
        source,
        conf.into_delegate(),
        Some(&nad),
    )?;
    planned.runtime_config = RuntimeConfig {
        ips: sel.ips.clone(),
        mac: sel.mac.clone(),
        port_mappings: sel.port_mappings.clone(),
        bandwidth: sel.bandwidth.clone(),
        infiniband_guid: sel.infiniband_guid.clone(),
        device_id: sel.device_id.clone(),
    };
    planned.cni_args = sel.cni_args.clone();
    if let Some(mac) = &sel.mac {
        planned
            .extra_cni_args
            .push(("MAC".to_string(), mac.clone()));
    }
    if !sel.ips.is_empty() {
        planned
            .extra_cni_args
            .push(("IP".to_string(), sel.ips.join(",")));
    }
    planned.default_route = sel.default_route.clone();
    Ok(planned)
}

fn attachment(
    index: usize,
    network: String,
    interface: InterfaceName,
    origin: Origin,
    source: NetworkSource,
    config: DelegateConfig,
    nad: Option<&Nad>,
) -> Result<PlannedAttachment> {
    let (resource_name, force_exec) = match nad {
        Some(nad) => {
            let delegation = nad
                .delegation()
                .map_err(|reason| Error::InvalidNetworkConfig {
                    network: nad.key(),
                    reason,
                })?;
            (
                nad.resource_name().map(str::to_string),
                delegation == Delegation::Exec,
            )
        }
        None => (None, false),
    };
    Ok(PlannedAttachment {
        index,
        network,
        interface,
        origin,
        primary: false,
        source,
        config,
        runtime_config: RuntimeConfig::default(),
        cni_args: None,
        extra_cni_args: Vec::new(),
        default_route: None,
        route_plan: DefaultRoutePlan::default(),
        resource_name,
        force_exec,
        runtime_managed: false,
        release_on_teardown: false,
    })
}

/// F31: with isolation on, a selection may only name the pod's namespace or a global one.
fn check_isolation(pod: &PodIdentity, config: &Config, sel: &Selection) -> Result<()> {
    if config.may_reference(&pod.namespace, &sel.namespace) {
        return Ok(());
    }
    Err(Error::NamespaceIsolation {
        pod_namespace: pod.namespace.clone(),
        target_namespace: sel.namespace.clone(),
        network: sel.network(),
        allowed: if config.global_namespaces.is_empty() {
            "no global namespaces".to_string()
        } else {
            format!("global namespaces {}", config.global_namespaces.join(","))
        },
    })
}

fn check_unique_interfaces(pod: &PodIdentity, attachments: &[PlannedAttachment]) -> Result<()> {
    for (i, a) in attachments.iter().enumerate() {
        if let Some(first) = attachments[..i].iter().find(|b| b.interface == a.interface) {
            let shown = |p: &PlannedAttachment| {
                if p.network.is_empty() {
                    "the runtime's cluster network".to_string()
                } else {
                    format!("{} (index {})", p.network, p.index)
                }
            };
            return Err(Error::DuplicateInterface {
                pod: pod.to_string(),
                interface: a.interface.to_string(),
                first: shown(first),
                second: shown(a),
            });
        }
    }
    Ok(())
}

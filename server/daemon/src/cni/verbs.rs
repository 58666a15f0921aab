//! The CNI verbs over the node: ADD sets the whole pod up (cluster network first), DEL tears
//! it down, CHECK compares the record with what was asked, STATUS reports readiness, GC
//! tears down sandboxes the runtime no longer lists, VERSION answers itself.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use plexus_core::cni::{ErrorCode, PluginError, VersionInfo};
use plexus_core::plan::{Bandwidth, Plan, PortMapping};
use plexus_core::pod::PodIdentity;
use serde_json::{Map, Value};

use super::request::{Call, Verb};
use super::{plugin_error, response};
use crate::attacher::Attacher;
use crate::model::{AttachmentState, SandboxSpec, SandboxView};
use crate::node::Node;
use crate::planner::Planner;

/// The annotation naming where a static pod came from (Multus F46: not `api` = static).
const CONFIG_SOURCE: &str = "kubernetes.io/config.source";

/// Serves one forwarded CNI invocation and returns the wire answer.
pub async fn serve<A: Attacher, P: Planner>(
    node: &Arc<Node<A, P>>,
    env: &HashMap<String, String>,
    stdin: &[u8],
    timeout: Option<Duration>,
) -> plexus_proto::v1::CniResponse {
    let call = match Call::parse(env, stdin) {
        Ok(call) => call,
        Err(e) => {
            let version = plexus_core::cni::version::of_config(stdin).unwrap_or_default();
            return response(Err(e), &version);
        }
    };
    let version = call.cni_version.clone();
    let outcome = run(node, call, timeout).await;
    if let Err(e) = &outcome {
        tracing::warn!(code = e.code.0, error = %e, "CNI call failed");
    }
    response(outcome, &version)
}

/// Runs a parsed call.
pub async fn run<A: Attacher, P: Planner>(
    node: &Arc<Node<A, P>>,
    call: Call,
    timeout: Option<Duration>,
) -> Result<Vec<u8>, PluginError> {
    match call.verb {
        Verb::Version => Ok(VersionInfo::plexus(&call.cni_version).render().into_bytes()),
        Verb::Add => add(node, call, timeout).await,
        Verb::Del => del(node, call, timeout).await,
        Verb::Check => check(node, &call),
        Verb::Status => ready(&call, ErrorCode::PLUGIN_NOT_AVAILABLE).map(|()| Vec::new()),
        Verb::Gc => gc(node, call, timeout).await,
    }
}

/// Fails while the configured readiness indicator file is missing (Multus F34: the
/// cluster network is not up yet), with `code`.
fn ready(call: &Call, code: ErrorCode) -> Result<(), PluginError> {
    match &call.readiness_file {
        Some(file) if !file.exists() => Err(PluginError::new(
            code,
            format!(
                "waiting for the readiness indicator file {}",
                file.display()
            ),
            "the cluster network is not ready yet (readinessIndicatorFile is missing)",
        )),
        _ => Ok(()),
    }
}

/// True when the pod is a static pod (its UID never matches the API's).
fn is_static(annotations: &BTreeMap<String, String>) -> bool {
    annotations
        .get(CONFIG_SOURCE)
        .is_some_and(|source| source != "api")
}

/// The runtime's capability args the cluster network receives unchanged (Multus F13):
/// containerd's capitalised `portMappings` / `bandwidth` keys read case-insensitively.
fn primary_requests(plan: &mut Plan, capabilities: &Map<String, Value>) {
    let Some(primary) = plan.attachments.first_mut().filter(|a| a.primary) else {
        return;
    };
    let lower = |v: &Value| -> Value {
        match v {
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        let mut c = k.chars();
                        let key = c
                            .next()
                            .map(|f| f.to_lowercase().chain(c).collect())
                            .unwrap_or_default();
                        (key, v.clone())
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    };
    if let Some(Value::Array(list)) = capabilities.get("portMappings") {
        primary.runtime_config.port_mappings = list
            .iter()
            .filter_map(|m| serde_json::from_value::<PortMapping>(lower(m)).ok())
            .collect();
    }
    if let Some(b) = capabilities.get("bandwidth") {
        primary.runtime_config.bandwidth = serde_json::from_value::<Bandwidth>(lower(b)).ok();
    }
}

/// The call's container id as a validated sandbox id (the id rule of the node API; CNI's
/// own container-id rule was checked when the call was read).
fn sandbox_id(call: &Call) -> Result<plexus_core::id::SandboxId, PluginError> {
    plexus_core::id::SandboxId::new(call.container_id.clone()).map_err(|e| {
        PluginError::new(
            ErrorCode::INVALID_ENVIRONMENT,
            "invalid CNI_CONTAINERID",
            e.to_string(),
        )
    })
}

async fn add<A: Attacher, P: Planner>(
    node: &Arc<Node<A, P>>,
    call: Call,
    timeout: Option<Duration>,
) -> Result<Vec<u8>, PluginError> {
    ready(&call, ErrorCode::TRY_AGAIN_LATER)?;
    let annotations = call.annotations.clone().unwrap_or_else(|| {
        tracing::warn!(sandbox.id = %call.container_id, pod = %call.pod,
            "the runtime passed no pod annotations (capability io.kubernetes.cri.pod-annotations); the pod gets only its cluster and default networks");
        BTreeMap::new()
    });
    let id = sandbox_id(&call)?;
    let recorded = node
        .attacher()
        .sandbox(&id)
        .map_err(|e| plugin_error(Verb::Add, &e))?;
    check_uid(&call.pod, recorded.as_ref(), &annotations)?;
    let spec = SandboxSpec {
        sandbox_id: id,
        pod: call.pod.clone(),
        netns: call.netns.clone().unwrap_or_default(),
    };
    // Resolution and setup are one measured request: a network that does not resolve is
    // counted like one that fails to attach.
    let work = async {
        let mut plan = node.planner().plan_cni(
            &call.pod,
            &annotations,
            &call.ifname,
            call.wrapped.as_ref(),
        )?;
        primary_requests(&mut plan, &call.capabilities);
        node.setup_planned(spec, plan, timeout, None).await
    };
    let outcome = node
        .measured(plexus_telemetry::Operation::Setup, work)
        .await
        .map_err(|e| plugin_error(Verb::Add, &e))?;
    tracing::info!(sandbox.id = %call.container_id, pod = %call.pod,
        network_status = %outcome.network_status, "CNI ADD done");
    primary_result(&outcome.sandbox, &call.ifname, &call.cni_version)
}

/// The cluster network's result, in the runtime's version: what the runtime gets back.
pub fn primary_result(
    sandbox: &SandboxView,
    ifname: &str,
    version: &str,
) -> Result<Vec<u8>, PluginError> {
    let primary = sandbox
        .attachments
        .iter()
        .find(|a| a.primary && a.interface == ifname)
        .and_then(|a| a.result.as_ref())
        .ok_or_else(|| {
            PluginError::new(
                ErrorCode::INTERNAL,
                "plexus ADD failed",
                format!(
                    "sandbox {}: the cluster network left no result for {ifname}",
                    sandbox.sandbox_id
                ),
            )
        })?;
    primary
        .render(version)
        .map(String::into_bytes)
        .map_err(|e| {
            PluginError::new(
                ErrorCode::INCOMPATIBLE_VERSION,
                "cannot convert the cluster network's result",
                format!("to cniVersion {version}: {e}"),
            )
        })
}

/// Multus F46: a recorded sandbox of another pod UID (not a static pod) fails the ADD.
fn check_uid(
    pod: &PodIdentity,
    recorded: Option<&SandboxView>,
    annotations: &BTreeMap<String, String>,
) -> Result<(), PluginError> {
    let Some(recorded) = recorded else {
        return Ok(());
    };
    if pod.uid.is_empty()
        || recorded.pod.uid.is_empty()
        || recorded.pod.uid == pod.uid
        || is_static(annotations)
    {
        return Ok(());
    }
    Err(PluginError::new(
        ErrorCode::INVALID_ENVIRONMENT,
        "plexus ADD failed",
        format!(
            "expected pod UID {:?} but got {:?} from the sandbox record of {}",
            pod.uid, recorded.pod.uid, recorded.sandbox_id
        ),
    ))
}

async fn del<A: Attacher, P: Planner>(
    node: &Arc<Node<A, P>>,
    call: Call,
    timeout: Option<Duration>,
) -> Result<Vec<u8>, PluginError> {
    if let Some(file) = call.readiness_file.as_ref().filter(|f| !f.exists()) {
        // Multus F34: DEL only warns, it must still clean up.
        tracing::warn!(file = %file.display(), "readiness indicator file missing during DEL");
    }
    let id = sandbox_id(&call)?;
    if let Ok(Some(recorded)) = node.attacher().sandbox(&id)
        && !call.pod.uid.is_empty()
        && !recorded.pod.uid.is_empty()
        && recorded.pod.uid != call.pod.uid
    {
        // Multus F46 on DEL: a warning; the record says what to remove.
        tracing::warn!(sandbox.id = %call.container_id, expected = %call.pod.uid,
            recorded = %recorded.pod.uid, "pod UID of the DEL differs from the record");
    }
    // containerd removes the pod's netns right after its CNI DEL.
    node.teardown_pod(id, timeout, plexus_engine::LinkDeletion::AfterAnswer)
        .await
        .map_err(|e| plugin_error(Verb::Del, &e))?;
    Ok(Vec::new())
}

fn check<A: Attacher, P: Planner>(
    node: &Arc<Node<A, P>>,
    call: &Call,
) -> Result<Vec<u8>, PluginError> {
    ready(call, ErrorCode::TRY_AGAIN_LATER)?;
    let recorded = node
        .attacher()
        .sandbox(&sandbox_id(call)?)
        .map_err(|e| plugin_error(Verb::Check, &e))?
        .ok_or_else(|| {
            PluginError::new(
                ErrorCode::UNKNOWN_CONTAINER,
                "plexus CHECK failed",
                format!("no sandbox {} is recorded", call.container_id),
            )
        })?;
    let bad: Vec<String> = recorded
        .attachments
        .iter()
        .filter(|a| a.state != AttachmentState::Attached)
        .map(|a| format!("{} ({}) is {}", a.interface, a.network, a.state.as_str()))
        .collect();
    if !recorded
        .attachments
        .iter()
        .any(|a| a.primary && a.interface == call.ifname)
    {
        return Err(PluginError::new(
            ErrorCode::INTERNAL,
            "plexus CHECK failed",
            format!(
                "sandbox {} has no cluster network on {}",
                call.container_id, call.ifname
            ),
        ));
    }
    if !bad.is_empty() {
        return Err(PluginError::new(
            ErrorCode::INTERNAL,
            "plexus CHECK failed",
            format!("sandbox {}: {}", call.container_id, bad.join(", ")),
        ));
    }
    Ok(Vec::new())
}

async fn gc<A: Attacher, P: Planner>(
    node: &Arc<Node<A, P>>,
    call: Call,
    timeout: Option<Duration>,
) -> Result<Vec<u8>, PluginError> {
    ready(&call, ErrorCode::TRY_AGAIN_LATER)?;
    let outcome = node
        .reconcile(
            // An id outside the node API's rule names no recorded sandbox.
            call.valid_containers
                .into_iter()
                .filter_map(|id| plexus_core::id::SandboxId::new(id).ok())
                .collect(),
            timeout,
        )
        .await
        .map_err(|e| plugin_error(Verb::Gc, &e))?;
    if !outcome.failed.is_empty() {
        return Err(PluginError::new(
            ErrorCode::INTERNAL,
            "plexus GC failed",
            outcome.failed.join("; "),
        ));
    }
    Ok(Vec::new())
}

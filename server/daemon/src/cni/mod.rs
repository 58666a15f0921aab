//! The CNI shim path inside plexusd: serves the `Cni` call that `plexus-cni` forwards,
//! writes the runtime's CNI config that makes plexus its network, and runs the DELs the
//! shim spooled while plexusd was down.
//!
//! With `primaryMode: plexus` semantics, plexus executes the pod's cluster network itself
//! (the configured `clusterNetwork`, else the runtime's primary config embedded in the
//! generated conflist) as the first attachment, then the pod's secondary networks, through
//! the same node operations, records and network-status as the NRI path ([`verbs`]). The
//! runtime gets the cluster network's result, converted to its `cniVersion`. Errors go back
//! as CNI error objects with libcni's codes; 11 ("try again later") whenever a retry can
//! succeed. This module decides what a CNI verb means; it does not resolve networks (the
//! planner does) nor touch netlink (the attacher does).

pub mod conflist;
pub mod install;
pub mod request;
pub mod spool;
pub mod verbs;

#[cfg(test)]
mod tests;

use plexus_core::cni::{ErrorCode, PluginError};
use plexus_proto::v1;

use crate::error::{Error, ResolveFailure};

pub use request::{Call, Verb};
pub use verbs::serve;

/// The resolver settings of a CNI call: plexus executes the cluster network as interface
/// `ifname`; without a configured `clusterNetwork` (or `delegates`), `wrapped` (the primary
/// embedded in the generated conflist) is the cluster network.
pub fn resolver_config(
    config: &plexus_core::Config,
    ifname: &plexus_core::InterfaceName,
    wrapped: Option<&serde_json::Value>,
) -> plexus_core::Config {
    let mut config = config.clone();
    config.primary_mode = plexus_core::config::PrimaryMode::Plexus;
    config.primary_interface = ifname.clone();
    if config.cluster_network.is_none()
        && config.delegates.is_empty()
        && let Some(wrapped) = wrapped
    {
        config.delegates = vec![wrapped.clone()];
    }
    config
}

/// The CNI error a node error becomes: 11 when a retry can succeed (queue full, deadline,
/// a network not defined yet), 7 for a bad network request, 4 for a bad call, else 999.
pub fn plugin_error(verb: Verb, err: &Error) -> PluginError {
    let code = match err {
        Error::QueueFull { .. } | Error::DeadlineExceeded { .. } => ErrorCode::TRY_AGAIN_LATER,
        Error::Resolve { kind, .. } => match kind {
            ResolveFailure::NotFound | ResolveFailure::Unavailable => ErrorCode::TRY_AGAIN_LATER,
            ResolveFailure::Invalid | ResolveFailure::Forbidden => {
                ErrorCode::INVALID_NETWORK_CONFIG
            }
            ResolveFailure::Internal => ErrorCode::INTERNAL,
        },
        Error::InvalidRequest { .. } => ErrorCode::INVALID_ENVIRONMENT,
        _ => ErrorCode::INTERNAL,
    };
    PluginError::new(
        code,
        format!("plexus {} failed", verb.as_str()),
        err.to_string(),
    )
}

/// The wire answer of a CNI call: stdout bytes, or the error labelled with `cni_version`.
pub fn response(outcome: Result<Vec<u8>, PluginError>, cni_version: &str) -> v1::CniResponse {
    let outcome = match outcome {
        Ok(stdout) => v1::cni_response::Outcome::Stdout(stdout),
        Err(e) => v1::cni_response::Outcome::Error(v1::CniError {
            code: e.code.0,
            msg: e.msg,
            details: e.details,
            cni_version: if e.cni_version.is_empty() {
                cni_version.to_owned()
            } else {
                e.cni_version
            },
        }),
    };
    v1::CniResponse {
        outcome: Some(outcome),
    }
}

/// The install settings of a daemon config.
pub fn install_settings(config: &crate::config::Config) -> install::Settings {
    let shim_binary = config.cni.shim_binary.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join(conflist::SHIM_TYPE)))
            .unwrap_or_else(|| std::path::PathBuf::from(conflist::SHIM_TYPE))
    });
    install::Settings {
        conf_dir: config.cni.conf_dir.clone(),
        primary_dir: config.cni.primary_dir.clone(),
        bin_dir: Some(config.cni.bin_dir.clone()),
        shim_binary,
        shim: conflist::Settings {
            socket: config.socket.clone(),
            spool_dir: spool::dir(&config.state_dir),
            readiness_file: config.cni.readiness_file.clone(),
        },
    }
}

/// Before plexusd serves: runs the DELs the shim spooled while it was down, then (with
/// `cni.install: auto`) starts installing and watching the generated config. The returned
/// task stops when aborted and leaves the file in place.
pub async fn start<A: crate::attacher::Attacher, P: crate::planner::Planner>(
    node: &std::sync::Arc<crate::node::Node<A, P>>,
    config: &crate::config::Config,
) -> Option<tokio::task::JoinHandle<()>> {
    let done = spool::drain(node, &spool::dir(&config.state_dir)).await;
    if !done.is_empty() {
        tracing::info!(
            count = done.len(),
            "completed DELs spooled while plexusd was down"
        );
    }
    match config.cni.install {
        crate::config::Install::Auto => {
            let settings = install_settings(config);
            node.set_runtime_cni(settings.clone());
            Some(install::spawn_watcher(settings))
        }
        crate::config::Install::Off => None,
    }
}

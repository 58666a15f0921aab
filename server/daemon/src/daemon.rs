//! Wiring of a running plexusd and of the offline explain, kept out of `main.rs` so both are
//! testable: config → engine (recover first) → resolver → node → socket → serve.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use plexus_core::nad::DirSource;
use plexus_engine::{DelegationMode, Engine, EngineConfig};

use crate::attacher::Attacher;
use crate::config::{Config, Delegation, NadSource};
use crate::engine::EngineAttacher;
use crate::error::{Error, Result};
use crate::node::{Limits, Node};
use crate::planner::{Explanation, Planner};
use crate::resolver::{Resolver, pod_from_manifest};
use crate::server::{Access, Socket, serve};

/// How often the attachments-by-network gauge is recomputed from the records.
const GAUGE_PERIOD: std::time::Duration = std::time::Duration::from_secs(15);

/// The engine settings of a daemon config.
pub fn engine_config(config: &Config) -> EngineConfig {
    EngineConfig {
        state_dir: config.state_dir.clone(),
        cni_bin_dirs: config.cni_bin_dirs.clone(),
        cni_cache_dir: config.cni_cache_dir.clone(),
        ipam_data_dir: config.ipam_data_dir.clone(),
        delegate_timeout: config.delegate_timeout,
        delegation: match config.delegation {
            Delegation::Auto => DelegationMode::Auto,
            Delegation::Exec => DelegationMode::ForceExec,
        },
        host_netns: config.host_netns.clone(),
        ..EngineConfig::new(config.state_dir.clone())
    }
}

/// The resolver of a daemon config (NADs from its source).
pub fn resolver(config: &Config) -> Resolver {
    let NadSource::Directory(dir) = &config.nad_source;
    Resolver::new(config.resolver(), Arc::new(DirSource::new(dir.clone())))
}

/// Runs plexusd until `shutdown` resolves: opens the engine, finishes or undoes work a
/// crash interrupted, then serves. Recovery happens before the socket exists, so no request
/// sees half-made state.
pub async fn run(
    config: &Config,
    metrics: Option<plexus_telemetry::Metrics>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let engine = Engine::open(engine_config(config)).map_err(|e| Error::OpenEngine {
        message: e.to_string(),
    })?;
    if let Some(m) = &metrics {
        engine.set_observer(Arc::new(crate::engine::EngineMetrics(m.clone())));
    }
    let attacher = Arc::new(EngineAttacher::new(engine));
    let recovery = crate::attacher::Attacher::recover(attacher.as_ref()).await?;
    if !recovery.repaired.is_empty() || !recovery.failed.is_empty() {
        tracing::warn!(repaired = ?recovery.repaired, failed = ?recovery.failed,
            "recovered work interrupted by the previous run");
    }
    let limits = Limits {
        max_parallel: config.max_parallel,
        max_queued: config.max_queued,
        setup_budget: Some(config.nri_deadline_budget),
    };
    let planner = Arc::new(resolver(config));
    let node = match metrics {
        Some(m) => Node::with_metrics(attacher, planner, limits, m),
        None => Node::new(attacher, planner, limits),
    };
    let background = Background::start(&node, config);
    let access = Access::root_and(config.allowed_uids.clone());
    let socket = Socket::bind_for(&config.socket, &access).await?;
    tracing::info!(socket = %config.socket.display(), "plexusd serving");
    // No new sweep starts once shutdown begins (a teardown it started runs to the end).
    let shutdown = async move {
        shutdown.await;
        drop(background);
    };
    serve(socket, node, access, shutdown).await
}

/// The node's periodic work, off the request path: the attachments-gauge refresh, the
/// renewal of native dhcp leases and, when
/// `reconcile.interval` is set, the sweep for sandboxes whose netns is gone. Stopped on drop.
#[derive(Debug)]
pub struct Background {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Background {
    /// Starts the periodic tasks of `config` for `node`.
    pub fn start<A: Attacher, P: Planner>(node: &Arc<Node<A, P>>, config: &Config) -> Background {
        let gauge = Arc::clone(node);
        let mut tasks = vec![tokio::spawn(async move {
            let mut tick = tokio::time::interval(GAUGE_PERIOD);
            loop {
                tick.tick().await;
                if let Err(err) = gauge.refresh_attachment_gauge() {
                    tracing::warn!(error = %err, "refreshing the attachments gauge");
                }
            }
        })];
        // Native dhcp leases: renewed at T1/T2 for as long as plexusd runs; the lease
        // files outlive it, so a restarted plexusd picks them up here.
        let leases =
            plexus_engine::ipam::dhcp::LeaseStore::new(engine_config(config).dhcp_lease_dir);
        tasks.push(tokio::spawn(plexus_engine::ipam::dhcp::run_renewer(leases)));
        // The reference dhcp daemon for exec'd NADs, when configured (killed on drop).
        if let Some(socket) = &config.dhcp_daemon_socket {
            let dirs = config.cni_bin_dirs.clone();
            tasks.push(tokio::spawn(plexus_engine::dhcp_daemon::supervise(
                dirs,
                socket.clone(),
            )));
        }
        match config.reconcile_interval {
            Some(period) => {
                tracing::info!(every = ?period, "sweeping for sandboxes whose network namespace is gone");
                tasks.push(node.sweep_every(period));
            }
            None => {
                tracing::info!("the sweep for sandboxes whose network namespace is gone is off")
            }
        }
        Background { tasks }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Offline explain: resolves the pod manifest at `pod` against the NAD directory
/// `networks` with the resolver settings of `config`. `Err` only when the inputs cannot be
/// read; a failed resolution is an [`Explanation`] with `ok == false`.
pub fn explain_offline(pod: &Path, networks: &Path, config: &Config) -> Result<Explanation> {
    let text = std::fs::read_to_string(pod).map_err(|e| Error::InvalidRequest {
        message: format!("cannot read pod manifest {}: {e}", pod.display()),
    })?;
    let (identity, annotations) = pod_from_manifest(&text)?;
    let resolver = Resolver::new(config.resolver(), Arc::new(DirSource::new(networks)));
    Ok(resolver.explain(&identity, &annotations))
}

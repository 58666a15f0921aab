//! Wiring of a running plexusd and of the offline explain, kept out of `main.rs` so both are
//! testable: config → state-directory lock → engine (stale temp files swept, recovery) →
//! resolver (its NAD index kept current by a file watcher) → node → socket → serve.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use plexus_core::nad::DirSource;
use plexus_engine::{DelegationMode, Engine, EngineConfig};

use crate::attacher::Attacher;
use crate::config::{Config, Delegation, NadSource, PrimaryMode};
use crate::engine::EngineAttacher;
use crate::error::{Error, Result};
use crate::kubernetes::Cluster;
use crate::lock::StateLock;
use crate::node::{Limits, Node};
use crate::planner::{Explanation, Planner};
use crate::resolver::{Resolver, pod_from_manifest};
use crate::server::{Access, Socket, serve_service};

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

/// The NAD directory source of a daemon config; `None` in Kubernetes mode.
pub fn nad_source(config: &Config) -> Option<Arc<DirSource>> {
    match &config.nad_source {
        NadSource::Directory(dir) => Some(Arc::new(DirSource::new(dir.clone()))),
        NadSource::Kubernetes { .. } => None,
    }
}

/// The resolver of a daemon config whose NADs come from a directory (loaded on first use and
/// not refreshed: [`run`] keeps its source current with a [`nad_watch`](crate::nad_watch)).
/// In Kubernetes mode NADs need the API server ([`connect_resolver`]); this offline resolver
/// then sees none.
pub fn resolver(config: &Config) -> Resolver {
    match nad_source(config) {
        Some(nads) => Resolver::new(config.resolver(), nads),
        None => Resolver::new(
            config.resolver(),
            Arc::new(plexus_core::nad::MemorySource::default()),
        ),
    }
}

/// The resolver of a daemon config, connected to the API server in Kubernetes mode (then
/// also the [`Cluster`] that publishes network-status and events), or reading the NAD
/// directory whose watcher is returned too.
pub async fn connect_resolver(
    config: &Config,
) -> Result<(
    Resolver,
    Option<Arc<Cluster>>,
    Option<crate::nad_watch::Watcher>,
)> {
    match &config.nad_source {
        NadSource::Directory(dir) => {
            let nads = Arc::new(DirSource::new(dir.clone()));
            let watcher = crate::nad_watch::spawn(Arc::clone(&nads));
            Ok((Resolver::new(config.resolver(), nads), None, Some(watcher)))
        }
        NadSource::Kubernetes {
            kubeconfig,
            namespaces,
            pod_resources_socket,
        } => {
            let cluster = Cluster::connect(
                kubeconfig.clone(),
                namespaces.clone(),
                pod_resources_socket.clone(),
            )
            .await?;
            Ok((
                Resolver::with_cluster(config.resolver(), Arc::clone(&cluster)),
                Some(cluster),
                None,
            ))
        }
    }
}

/// Runs plexusd until `shutdown` resolves: locks the state directory (or waits up to
/// `lockWait` for the plexusd holding it, or fails naming it — touching nothing), opens the
/// engine, removes temp files a killed plexusd left, finishes or undoes work a crash
/// interrupted, then serves. Recovery happens before the socket exists, so no request sees
/// half-made state; the lock is held until this returns.
pub async fn run(
    config: &Config,
    metrics: Option<plexus_telemetry::Metrics>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    run_ready(config, metrics, || {}, shutdown).await
}

/// [`run`], calling `ready` once recovery has finished and the node socket listens (what
/// `/readyz` reports; not earlier, so a probe never passes a plexusd that cannot answer).
pub async fn run_ready(
    config: &Config,
    metrics: Option<plexus_telemetry::Metrics>,
    ready: impl FnOnce() + Send,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let lock = StateLock::acquire(&config.state_dir, config.lock_wait).await?;
    tracing::debug!(lock = %lock.path().display(), "state directory locked");
    let engine = Engine::open(engine_config(config)).map_err(|e| Error::OpenEngine {
        message: e.to_string(),
    })?;
    let removed = engine
        .remove_stale_temp_files()
        .map_err(|e| Error::OpenEngine {
            message: plexus_engine::error::chain(&e),
        })?;
    if !removed.is_empty() {
        tracing::warn!(files = ?removed,
            "removed temp files left by a killed plexusd, or teardown marks whose record is gone");
    }
    if let Some(m) = &metrics {
        engine.set_observer(Arc::new(crate::engine::EngineMetrics(m.clone())));
    }
    // Kept to flush the done writes' deferred directory fsync once serving has ended.
    let state = engine.clone();
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
    let (planner, cluster, watcher) = connect_resolver(config).await?;
    let planner = Arc::new(planner);
    let node = match metrics {
        Some(m) => Node::with_metrics(attacher, planner, limits, m),
        None => Node::new(attacher, planner, limits),
    };
    let mut background = Background::start(&node, config);
    let service = crate::service::NodeService::with_cluster(Arc::clone(&node), cluster.clone());
    if let Some(cluster) = cluster {
        node.set_networks_annotation(
            Arc::clone(&cluster) as Arc<dyn crate::node::NetworksAnnotation>
        );
        background
            .tasks
            .push(crate::kubernetes::bridge(&node, Arc::clone(&cluster)));
        background.tasks.push(crate::hotplug_controller::start(
            &node,
            cluster,
            crate::hotplug_controller::ControllerSettings::default(),
        ));
    }
    let cni_watcher = crate::cni::start(&node, config).await;
    // After the CNI start: on the shim path adoption plans eth0 with the wrapped primary.
    if let Some(containerd) = &config.containerd {
        // plexus as the runtime's CNI network: the shim path (no NRI Synchronize).
        let shim_path = cni_watcher.is_some() || config.primary_mode == PrimaryMode::Plexus;
        // On the NRI path the runtime's Synchronize reports the live pods.
        if shim_path {
            tracing::info!(socket = %containerd.socket.display(), namespace = %containerd.namespace,
                "adopting running pods plexus has no record of through containerd's API");
            background.tasks.push(crate::containerd_adopt::adopt_every(
                &node,
                containerd.clone(),
                config.reconcile_interval,
            ));
        }
        // On the shim path the runtime's CNI ADD reaches plexusd before the IP is written.
        if containerd.early_setup && !shim_path {
            background.tasks.push(crate::containerd_early::start(
                &node,
                containerd.clone(),
                config.max_parallel,
            ));
        }
    }
    let access = Access::root_and(config.allowed_uids.clone());
    let socket = Socket::bind_for(&config.socket, &access).await?;
    tracing::info!(socket = %config.socket.display(), "plexusd serving");
    ready();
    // No new sweep starts once shutdown begins (a teardown it started runs to the end).
    let shutdown = async move {
        shutdown.await;
        drop(background);
        drop(watcher);
        // The generated CNI config stays: new pods fail and retry until plexusd is back.
        if let Some(watcher) = cni_watcher {
            watcher.abort();
        }
    };
    drop(node);
    let served = serve_service(socket, service, access, config.connections, shutdown).await;
    state.flush_state();
    drop(lock);
    served
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, so plexusd (every connection, netlink
/// socket and plugin pipe is a descriptor) is not starved by a low default such as 1024.
/// Returns the (old, new) soft limit.
pub fn raise_fd_limit() -> std::io::Result<(u64, u64)> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(std::io::Error::from)?;
    }
    let (now, _) = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
    Ok((soft, now))
}

/// Sets the CPU niceness of the calling thread, which every thread it starts afterwards
/// inherits (on Linux a nice value belongs to a thread): call it before the async runtime
/// starts its threads. Returns the value before.
pub fn set_nice(nice: i32) -> std::io::Result<i32> {
    // SAFETY: getpriority/setpriority only read their integer arguments. getpriority may
    // legitimately return -1, so errno is cleared first and checked after.
    unsafe {
        *libc::__errno_location() = 0;
        let before = libc::getpriority(libc::PRIO_PROCESS, 0);
        if before == -1 && *libc::__errno_location() != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if before != nice && libc::setpriority(libc::PRIO_PROCESS, 0, nice) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(before)
    }
}

/// Caps glibc's malloc arenas at two; call before any thread starts. glibc gives threads
/// up to eight arenas per core, plexusd's short-lived blocking-pool threads spread small
/// allocations over all of them, and what is freed stays cached in each. Measured in the
/// burst bench (two bursts of 200 pods per side): plexusd's RSS after them was 32.8 MiB
/// on the NRI side and 46.6 MiB on the shim side, growing ~4-8 MiB per burst; with two
/// arenas 25.5 and 33.4 MiB, ~2-3 MiB per burst. `MALLOC_ARENA_MAX` in the environment
/// wins (glibc reads it itself).
pub fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes a malloc tunable; no thread is allocating yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
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

/// The explain JSON of a failure before resolution could start (docs/explain.md, "Error"):
/// every documented key present, the pod empty (none was read), and a documented kind —
/// `invalid-pod-manifest` when the manifest cannot be read or parsed, `invalid-config` when
/// plexusd's own configuration cannot.
pub fn explain_failure_json(err: &Error) -> serde_json::Value {
    let kind = match err {
        Error::InvalidRequest { .. } => "invalid-pod-manifest",
        // Config::load fails only with these; anything else offline is the setup's too.
        Error::ReadConfig { .. } | Error::ParseConfig { .. } | Error::ConfigValue { .. } => {
            "invalid-config"
        }
        _ => "invalid-config",
    };
    serde_json::json!({
        "apiVersion": plexus_core::explain::API_VERSION,
        "pod": {"namespace": "", "name": "", "uid": ""},
        "error": {"kind": kind, "message": err.to_string()},
    })
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

#[cfg(test)]
mod nice_tests {
    /// The calling thread's niceness.
    fn nice_now() -> i32 {
        // SAFETY: reads the calling thread's priority; no pointers.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    #[test]
    fn a_thread_started_after_set_nice_inherits_it() {
        // Raising the value (less favoured) needs no privilege; on a thread of its own so
        // the test's other threads keep theirs.
        std::thread::spawn(|| {
            let before = nice_now();
            let wanted = (before + 3).min(19);
            assert_eq!(super::set_nice(wanted).unwrap(), before);
            assert_eq!(nice_now(), wanted);
            let child = std::thread::spawn(nice_now).join().unwrap();
            assert_eq!(child, wanted, "a thread started afterwards has it too");
            assert_eq!(
                super::set_nice(wanted).unwrap(),
                wanted,
                "no change: a no-op"
            );
        })
        .join()
        .unwrap();
    }
}

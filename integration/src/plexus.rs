//! plexusd and plexus-nri started against a private [`Containerd`]: a standalone plexusd
//! config (NAD directory, state, IPAM and CNI cache dirs under the run dir), both daemons
//! as processes in containerd's test network namespace (so macvlan masters and bridges
//! are found there), and restart/crash controls for the restart tests. What the tests ask
//! its node API is in `api`.
//!
//! Binaries come from `PLEXUS_BIN_DIR`, else from the cargo profile dir this executable
//! was built into (`target/<profile>/`, also for tests and benches under `deps/`).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use plexus_proto::v1::node_client::NodeClient;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::containerd::Containerd;
use crate::error::{Error, Result};
use crate::nad::Nad;
use crate::process::Daemon;

mod api;
mod config;
pub use config::{Paths, plexusd_yaml, shim_yaml};

/// The NRI plugin index and name the harness registers plexus-nri with.
pub const NRI_PLUGIN: &str = "10-plexus";

/// Finds the plexus binaries.
pub fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PLEXUS_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().map_err(Error::io("locate", "current executable"))?;
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name() == Some(OsStr::new("deps")) {
        dir.pop();
    }
    Ok(dir)
}

fn binary(dir: &Path, name: &str) -> Result<PathBuf> {
    let p = dir.join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(Error::MissingProgram {
            program: name.into(),
            searched: format!(
                "{} (build it: cargo build --workspace --bins, or set PLEXUS_BIN_DIR)",
                dir.display()
            ),
        })
    }
}

/// Settings of the plexus side.
#[derive(Debug, Clone)]
pub struct Options {
    /// plexus-nri's `--deadline`, and plexusd's `nri.deadlineBudget` with it.
    pub nri_deadline: Duration,
    /// plexusd's log level.
    pub log_level: String,
    /// The CNI shim path instead of NRI: plexusd installs itself as containerd's CNI
    /// network (`cni.install: auto`, the primary wrapped) and plexus-nri is not started.
    pub shim: bool,
    /// Kubernetes mode: NADs from this API server instead of the NAD directory.
    pub kubernetes: Option<Kubernetes>,
    /// plexusd lists the private containerd's running pods through its API and adopts
    /// those it has no record of (`containerd.socket`, for the shim path).
    pub containerd_adoption: bool,
    /// OTLP/gRPC endpoint both daemons export their spans to (batches every 100 ms).
    pub otlp_endpoint: Option<String>,
}

/// plexusd in Kubernetes mode (`nadSource.kubernetes`).
#[derive(Debug, Clone)]
pub struct Kubernetes {
    /// The kubeconfig plexusd reads (server, CA, token).
    pub kubeconfig: PathBuf,
    /// plexusd's `NODE_NAME` (the node whose pods it watches).
    pub node_name: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            nri_deadline: Duration::from_millis(1500),
            log_level: "info".into(),
            shim: false,
            kubernetes: None,
            containerd_adoption: false,
            otlp_endpoint: None,
        }
    }
}

/// A node API client on the plexusd socket at `socket`.
pub async fn connect(socket: &Path) -> Result<NodeClient<Channel>> {
    let path = socket.to_owned();
    let channel = Endpoint::from_static("http://plexusd.invalid")
        .connect_timeout(Duration::from_secs(2))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let s = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(s))
            }
        }))
        .await
        .map_err(|source| Error::Connect {
            socket: socket.to_owned(),
            source,
        })?;
    Ok(NodeClient::new(channel))
}

/// plexusd + plexus-nri for one private containerd.
#[derive(Debug)]
pub struct Plexus {
    paths: Paths,
    opts: Options,
    bins: PathBuf,
    host_netns: PathBuf,
    nri_socket: PathBuf,
    containerd_log: PathBuf,
    plexusd: Option<Daemon>,
    nri: Option<Daemon>,
    kept: bool,
}

impl Plexus {
    /// Writes the config and `nads` (into the NAD directory, not in Kubernetes mode), starts plexusd, then plexus-nri, and waits until
    /// containerd reports the NRI plugin connected.
    pub async fn start(containerd: &Containerd, nads: &[Nad], opts: Options) -> Result<Self> {
        let bins = bin_dir()?;
        for b in ["plexusd", "plexus-nri"] {
            binary(&bins, b)?;
        }
        let paths = Paths::new(&containerd.paths().run_dir);
        let conf_dir = paths.dir.join("net.d");
        let cache_dir = paths.dir.join("cni-cache");
        for d in [
            &paths.networks_dir,
            &paths.state_dir,
            &paths.ipam_dir,
            &conf_dir,
            &cache_dir,
        ] {
            std::fs::create_dir_all(d).map_err(Error::io("create", d))?;
        }
        let host_netns = containerd.host_netns().path().to_owned();
        let mut yaml = plexusd_yaml(
            &paths,
            &host_netns,
            &containerd.options().cni_bin_dir,
            &containerd.paths().primary_conflist(),
            &opts.log_level,
            opts.kubernetes.as_ref(),
        );
        if opts.shim {
            binary(&bins, "plexus-cni")?;
            // plexus runs the wrapped primary itself: no clusterNetwork.
            yaml = yaml
                .lines()
                .filter(|l| !l.starts_with("clusterNetwork:"))
                .map(|l| format!("{l}\n"))
                .collect();
            yaml.push_str(&shim_yaml(
                &containerd.paths().cni_conf_dir,
                &containerd.options().cni_bin_dir,
                &bins.join("plexus-cni"),
            ));
        }
        // plexusd's SetupPod budget follows plexus-nri's --deadline, as config.md asks.
        yaml.push_str(&format!(
            "nri:\n  deadlineBudget: {}ms\n",
            opts.nri_deadline.as_millis()
        ));
        if let Some(endpoint) = &opts.otlp_endpoint {
            yaml = yaml.replacen(
                "telemetry:\n",
                &format!("telemetry:\n  otlpEndpoint: {endpoint}\n"),
                1,
            );
        }
        if opts.containerd_adoption {
            yaml.push_str(&format!(
                "containerd:\n  socket: {}\n",
                containerd.paths().socket.display()
            ));
        }
        std::fs::write(&paths.config, yaml).map_err(Error::io("write", &paths.config))?;
        // In Kubernetes mode the NADs come from the API server only.
        if opts.kubernetes.is_none() {
            for nad in nads {
                nad.write_to(&paths.networks_dir)?;
            }
        }
        let mut me = Self {
            paths,
            opts,
            bins,
            host_netns,
            nri_socket: containerd.paths().nri_socket.clone(),
            containerd_log: containerd.paths().log.clone(),
            plexusd: None,
            nri: None,
            kept: false,
        };
        me.start_plexusd().await?;
        if !me.opts.shim {
            me.start_nri().await?;
        }
        Ok(me)
    }

    /// The paths of the plexus side.
    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// Lines of plexusd's log so far that contain `what`. For the benchmarks.
    pub fn plexusd_log_lines(&self, what: &str) -> Vec<String> {
        lines_with(&self.paths.plexusd_log, what)
    }

    /// plexus-nri's log lines containing `what`.
    pub fn nri_log_lines(&self, what: &str) -> Vec<String> {
        lines_with(&self.paths.nri_log, what)
    }

    /// plexus's own answer times on the NRI path, in log order: `(RunPodSandbox,
    /// StopPodSandbox/RemovePodSandbox)`, each from the event's arrival in plexus-nri to
    /// plexusd's answer, as plexus-nri logs them (`elapsed_ms`). For the benchmarks.
    pub fn nri_answer_times(&self) -> (Vec<Duration>, Vec<Duration>) {
        let log = std::fs::read_to_string(&self.paths.nri_log).unwrap_or_default();
        let times = |what: &str| -> Vec<Duration> {
            log.lines()
                .filter(|l| l.contains(what))
                .filter_map(|l| l.split("elapsed_ms=").nth(1)?.split_whitespace().next())
                .filter_map(|ms| ms.parse::<f64>().ok())
                .map(|ms| Duration::from_secs_f64(ms / 1e3))
                .collect()
        };
        (
            times("pod networks set up"),
            times("pod networks torn down"),
        )
    }

    /// Where the plexus binaries were found.
    pub fn bin_dir(&self) -> &Path {
        &self.bins
    }

    /// Starts plexusd and waits until its socket answers.
    pub async fn start_plexusd(&mut self) -> Result<()> {
        let program = binary(&self.bins, "plexusd")?;
        let args: [&OsStr; 2] = ["--config".as_ref(), self.paths.config.as_os_str()];
        let mut env: Vec<(String, String)> = self
            .opts
            .kubernetes
            .iter()
            .map(|k| ("NODE_NAME".to_owned(), k.node_name.clone()))
            .collect();
        env.extend(self.export_env());
        let mut d = Daemon::spawn_with_env(
            "plexusd",
            &program,
            &args,
            Some(&self.host_netns),
            &self.paths.plexusd_log,
            &env,
        )?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            d.check_running()?;
            if self.paths.socket.exists() && self.attachments().await.is_ok() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!(
                        "plexusd to answer on {} (log {})",
                        self.paths.socket.display(),
                        self.paths.plexusd_log.display()
                    ),
                    seconds: 15.0,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.plexusd = Some(d);
        Ok(())
    }

    /// Stops plexusd (SIGTERM, then SIGKILL after 5 s).
    pub fn stop_plexusd(&mut self) {
        if let Some(mut d) = self.plexusd.take() {
            d.stop(Duration::from_secs(5));
        }
    }

    /// Kills plexusd with SIGKILL, as a crash would.
    pub fn crash_plexusd(&mut self) {
        if let Some(mut d) = self.plexusd.take() {
            d.crash();
        }
    }

    /// Starts plexus-nri and waits until containerd logs it connected (registered,
    /// configured and synchronized).
    pub async fn start_nri(&mut self) -> Result<()> {
        let program = binary(&self.bins, "plexus-nri")?;
        let before = self.nri_connections();
        let deadline = format!("{}ms", self.opts.nri_deadline.as_millis());
        let (idx, name) = NRI_PLUGIN.split_once('-').unwrap_or(("10", "plexus"));
        let args: Vec<&OsStr> = vec![
            "--nri-socket".as_ref(),
            self.nri_socket.as_os_str(),
            "--plexusd-socket".as_ref(),
            self.paths.socket.as_os_str(),
            "--deadline".as_ref(),
            deadline.as_ref(),
            "--plugin-idx".as_ref(),
            idx.as_ref(),
            "--plugin-name".as_ref(),
            name.as_ref(),
        ];
        let mut args = args;
        if let Some(endpoint) = &self.opts.otlp_endpoint {
            args.push("--otlp-endpoint".as_ref());
            args.push(endpoint.as_ref());
        }
        let d = Daemon::spawn_with_env(
            "plexus-nri",
            &program,
            &args,
            Some(&self.host_netns),
            &self.paths.nri_log,
            &self.export_env(),
        )?;
        self.nri = Some(d);
        self.wait_nri_connected(before, Duration::from_secs(15))
            .await
    }

    /// Waits until containerd has logged more than `before` connections of our plugin.
    pub async fn wait_nri_connected(&mut self, before: usize, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(d) = self.nri.as_mut() {
                d.check_running()?;
            }
            if self.nri_connections() > before {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!(
                        "containerd to log NRI plugin {NRI_PLUGIN} connected (logs {} and {})",
                        self.containerd_log.display(),
                        self.paths.nri_log.display()
                    ),
                    seconds: timeout.as_secs_f64(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How many times containerd has logged our NRI plugin as connected.
    pub fn nri_connections(&self) -> usize {
        let needle = format!("plugin \\\"{NRI_PLUGIN}\\\" connected");
        std::fs::read_to_string(&self.containerd_log)
            .map(|log| log.matches(&needle).count())
            .unwrap_or(0)
    }

    /// Stops plexus-nri (SIGTERM, then SIGKILL after 5 s).
    pub fn stop_nri(&mut self) {
        if let Some(mut d) = self.nri.take() {
            d.stop(Duration::from_secs(5));
        }
    }

    /// With an OTLP endpoint: span batches go out every 100 ms instead of 5 s.
    fn export_env(&self) -> Vec<(String, String)> {
        match self.opts.otlp_endpoint {
            Some(_) => vec![("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "100".to_owned())],
            None => Vec::new(),
        }
    }

    /// Leaves both daemons running when dropped (demo `--keep`).
    pub fn keep(&mut self) {
        self.kept = true;
        for d in [self.plexusd.as_mut(), self.nri.as_mut()]
            .into_iter()
            .flatten()
        {
            d.detach();
        }
    }

    /// PIDs of the running daemons (plexusd, plexus-nri).
    pub fn pids(&self) -> (Option<u32>, Option<u32>) {
        (
            self.plexusd.as_ref().map(Daemon::pid),
            self.nri.as_ref().map(Daemon::pid),
        )
    }
}

impl Drop for Plexus {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        // plexus-nri first, so no event reaches a stopped plexusd.
        self.stop_nri();
        self.stop_plexusd();
    }
}

/// The lines of the log file `path` containing `what` (none while it does not exist).
fn lines_with(path: &Path, what: &str) -> Vec<String> {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains(what))
        .map(str::to_owned)
        .collect()
}

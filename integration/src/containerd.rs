//! A private containerd 1.7 with CRI and NRI for one test run: its own run dir under
//! `/var/tmp/plexus-e2e-<pid>-<n>` (root, state, sockets, NRI socket, empty plugin dir, CNI
//! conf dir with a bridge + host-local primary network), started as its own process.
//!
//! containerd runs with `nsenter --net=<test netns>`: only its network namespace changes,
//! so the primary bridge, the host ends of pod veths and everything CNI plugins do in
//! "the host namespace" land in a namespace the test made, while the pod netns bind
//! mounts under `/var/run/netns` stay visible to plexusd and the tests (`ip netns exec`
//! would have added a mount namespace and hidden them). Dropping [`Containerd`] removes
//! the pods (CRI Stop + Remove), stops the PID it started, kills shims that outlived it,
//! unmounts what is left under the run dir, and deletes the run dir and the namespace.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::cleanup::{cleanup_leftovers, remove_all_pods_blocking};
use crate::cri::{self, Client};
use crate::error::{Error, Result};
use crate::image;
use crate::netns::{TestNetns, next_id};
use crate::pod::{Pod, PodSpec};
use crate::process::{Daemon, which};

/// Where the reference CNI plugins are installed (Debian `containernetworking-plugins`).
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// How to set up the private containerd.
#[derive(Debug, Clone)]
pub struct Options {
    /// NRI `plugin_request_timeout` (containerd's default is 2 s).
    pub plugin_request_timeout: Duration,
    /// CNI plugin directory given to containerd.
    pub cni_bin_dir: PathBuf,
    /// Prefix of the run dir name under `/var/tmp`.
    pub prefix: String,
    /// NRI enabled (containerd 1.7's own default is disabled; the CNI shim tests turn it off).
    pub nri: bool,
    /// Give containerd a private CNI bin dir under the run dir, holding links to the
    /// plugins of `cni_bin_dir` (plexusd installs `plexus-cni` there in the shim tests).
    pub private_cni_bin: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            plugin_request_timeout: Duration::from_secs(2),
            cni_bin_dir: PathBuf::from(CNI_BIN_DIR),
            prefix: "plexus-e2e".into(),
            nri: true,
            private_cni_bin: false,
        }
    }
}

/// Paths of one private containerd.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The run dir holding everything else.
    pub run_dir: PathBuf,
    /// containerd's config file.
    pub config: PathBuf,
    /// The CRI / containerd gRPC socket.
    pub socket: PathBuf,
    /// The NRI socket plugins connect to.
    pub nri_socket: PathBuf,
    /// containerd's log.
    pub log: PathBuf,
    /// The CNI conf dir (primary network).
    pub cni_conf_dir: PathBuf,
    /// The host-local IPAM data dir of the primary network.
    pub primary_ipam_dir: PathBuf,
}

impl Paths {
    /// The primary network's conflist (the only config in the CNI conf dir).
    pub fn primary_conflist(&self) -> PathBuf {
        self.cni_conf_dir.join("10-primary.conflist")
    }

    fn new(run_dir: PathBuf) -> Self {
        Self {
            config: run_dir.join("containerd.toml"),
            socket: run_dir.join("containerd.sock"),
            nri_socket: run_dir.join("nri.sock"),
            log: run_dir.join("containerd.log"),
            cni_conf_dir: run_dir.join("cni/conf"),
            primary_ipam_dir: run_dir.join("cni/ipam"),
            run_dir,
        }
    }
}

/// The name of the primary (eth0) CNI network.
pub const PRIMARY_NETWORK: &str = "plexus-primary";

/// The containerd config for `paths`.
pub fn config_toml(paths: &Paths, opts: &Options) -> String {
    let r = paths.run_dir.display();
    format!(
        r#"version = 2
root = "{r}/root"
state = "{r}/state"

[grpc]
  address = "{sock}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{r}/opt"

[plugins."io.containerd.nri.v1.nri"]
  disable = {nri_disabled}
  disable_connections = false
  socket_path = "{nri}"
  plugin_path = "{r}/nri/plugins"
  plugin_config_path = "{r}/nri/conf.d"
  plugin_registration_timeout = "5s"
  plugin_request_timeout = "{timeout}ms"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{image}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{bin}"
    conf_dir = "{conf}"
"#,
        sock = paths.socket.display(),
        nri = paths.nri_socket.display(),
        timeout = opts.plugin_request_timeout.as_millis(),
        image = image::PAUSE_IMAGE,
        bin = opts.cni_bin_dir.display(),
        conf = paths.cni_conf_dir.display(),
        nri_disabled = !opts.nri,
    )
}

/// Links every file of `from` into `to` (a private CNI bin dir).
fn link_plugins(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(Error::io("create", to))?;
    for entry in std::fs::read_dir(from).map_err(Error::io("read", from))? {
        let entry = entry.map_err(Error::io("read", from))?;
        let link = to.join(entry.file_name());
        // Hard links (a copy across filesystems), not symlinks: a containerised plexusd
        // that mounts this directory must be able to run the plugins too.
        let src =
            std::fs::canonicalize(entry.path()).map_err(Error::io("resolve", &entry.path()))?;
        if std::fs::hard_link(&src, &link).is_err() {
            std::fs::copy(&src, &link).map_err(Error::io("copy", &link))?;
        }
    }
    Ok(())
}

/// The primary network conflist: a bridge (no gateway, no masquerade) with host-local IPAM
/// on `subnet`, leases under `ipam_dir`.
pub fn primary_conflist(bridge: &str, subnet: &str, ipam_dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": PRIMARY_NETWORK,
        "plugins": [{
            "type": "bridge",
            "bridge": bridge,
            "isGateway": false,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{ "subnet": subnet }]],
                "dataDir": ipam_dir,
            },
        }],
    })
    .to_string()
}

/// A running private containerd; everything it made is removed on drop.
#[derive(Debug)]
pub struct Containerd {
    paths: Paths,
    opts: Options,
    netns: TestNetns,
    daemon: Option<Daemon>,
    cri: Client,
    pod_netns: Mutex<BTreeSet<PathBuf>>,
    kept: bool,
}

/// Checks that the programs the harness drives are installed.
pub fn check_programs(opts: &Options) -> Result<()> {
    for p in ["containerd", "runc", "ctr", "nsenter", "ip", "tar"] {
        which(p)?;
    }
    for (program, dir) in [
        (image::BUSYBOX, Path::new("/")),
        ("bridge", opts.cni_bin_dir.as_path()),
        ("host-local", opts.cni_bin_dir.as_path()),
    ] {
        if !dir.join(program.trim_start_matches('/')).is_file() {
            return Err(Error::MissingProgram {
                program: program.into(),
                searched: dir.display().to_string(),
            });
        }
    }
    Ok(())
}

impl Containerd {
    /// Creates the run dir and test netns, starts containerd, imports the pause image and
    /// waits until CRI reports the network ready.
    pub async fn start(mut opts: Options) -> Result<Self> {
        check_programs(&opts)?;
        let n = next_id();
        let run_dir = PathBuf::from(format!(
            "/var/tmp/{}-{}-{n}",
            opts.prefix,
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&run_dir);
        let paths = Paths::new(run_dir);
        for d in [
            paths.run_dir.join("nri/plugins"),
            paths.run_dir.join("nri/conf.d"),
            paths.cni_conf_dir.clone(),
            paths.primary_ipam_dir.clone(),
        ] {
            std::fs::create_dir_all(&d).map_err(Error::io("create", &d))?;
        }
        if opts.private_cni_bin {
            let private = paths.run_dir.join("cni/bin");
            link_plugins(&opts.cni_bin_dir, &private)?;
            opts.cni_bin_dir = private;
        }
        let netns = TestNetns::create("pxe-host")?;
        std::fs::write(&paths.config, config_toml(&paths, &opts))
            .map_err(Error::io("write", &paths.config))?;
        let bridge = format!("pxb{}x{n}", std::process::id() % 100_000);
        let subnet = format!("10.241.{}.0/24", n % 256);
        let conflist = paths.primary_conflist();
        std::fs::write(
            &conflist,
            primary_conflist(&bridge, &subnet, &paths.primary_ipam_dir),
        )
        .map_err(Error::io("write", &conflist))?;

        let daemon = spawn_containerd(&paths, &netns)?;
        let mut me = Self {
            cri: connect_when_up(&paths, &daemon).await?,
            paths,
            opts,
            netns,
            daemon: Some(daemon),
            pod_netns: Mutex::new(BTreeSet::new()),
            kept: false,
        };
        let tarball = image::build_pause_tarball(&me.paths.run_dir.join("image"))?;
        image::import(&me.paths.socket, &tarball)?;
        me.wait_network_ready().await?;
        if let Some(d) = me.daemon.as_mut() {
            d.check_running()?;
        }
        Ok(me)
    }

    /// Waits until CRI's loaded CNI config contains `needle` (e.g. a network name after a
    /// config file was replaced), and NetworkReady is true.
    pub async fn wait_cni_config(&self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let loaded = self.cri.cni_config().await?;
            let compact: String = loaded.split_whitespace().collect();
            if compact.contains(needle) {
                return self.wait_network_ready().await;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!(
                        "containerd to load a CNI config with {needle} (loaded: {loaded})"
                    ),
                    seconds: timeout.as_secs_f64(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_network_ready(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let conds = self.cri.conditions().await?;
            if conds.get("NetworkReady").is_some_and(|c| c.0) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("NetworkReady from containerd (conditions: {conds:?})"),
                    seconds: 15.0,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The paths of this instance.
    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// The options it was started with.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// The test network namespace containerd (and its CNI plugins) run in.
    pub fn host_netns(&self) -> &TestNetns {
        &self.netns
    }

    /// The CRI client.
    pub fn cri(&self) -> &Client {
        &self.cri
    }

    /// containerd's PID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Daemon::pid)
    }

    /// Runs a pod and returns it with its netns path.
    pub async fn run_pod(&self, spec: &PodSpec) -> Result<Pod> {
        let id = self.cri.run_pod_sandbox(spec.to_config()).await?;
        let status = self.cri.pod_sandbox_status(&id).await?;
        let netns = cri::netns_path(&status)?;
        self.remember_netns(&netns);
        Ok(Pod {
            id,
            namespace: spec.namespace.clone(),
            name: spec.name.clone(),
            netns,
        })
    }

    /// Stops and removes a pod (CRI StopPodSandbox + RemovePodSandbox).
    pub async fn delete_pod(&self, pod: &Pod) -> Result<()> {
        self.stop_pod(pod).await?;
        self.remove_pod(pod).await
    }

    /// StopPodSandbox alone.
    pub async fn stop_pod(&self, pod: &Pod) -> Result<()> {
        self.cri.stop_pod_sandbox(&pod.id).await
    }

    /// RemovePodSandbox alone (after [`Containerd::stop_pod`]).
    pub async fn remove_pod(&self, pod: &Pod) -> Result<()> {
        self.cri.remove_pod_sandbox(&pod.id).await
    }

    fn remember_netns(&self, path: &Path) {
        if let Ok(mut set) = self.pod_netns.lock() {
            set.insert(path.to_owned());
        }
    }

    /// Stops containerd gracefully (SIGTERM) and starts it again on the same dirs; pods
    /// keep running in their shims.
    pub async fn restart(&mut self) -> Result<()> {
        if let Some(mut d) = self.daemon.take() {
            d.stop(Duration::from_secs(10));
        }
        let daemon = spawn_containerd(&self.paths, &self.netns)?;
        self.cri = connect_when_up(&self.paths, &daemon).await?;
        self.daemon = Some(daemon);
        self.wait_network_ready().await
    }

    /// Leaves containerd, its namespace and its run dir in place on drop (demo `--keep`).
    pub fn keep(&mut self) {
        self.kept = true;
        self.netns.detach();
        if let Some(d) = self.daemon.as_mut() {
            d.detach();
        }
    }

    /// Everything that a crashed or kept run leaves to clean: shims, mounts, pod netns.
    fn teardown(&mut self) {
        let socket = self.paths.socket.clone();
        if let Some(d) = self.daemon.as_mut()
            && d.check_running().is_ok()
        {
            for netns in remove_all_pods_blocking(&socket) {
                self.remember_netns(&netns);
            }
        }
        if let Some(mut d) = self.daemon.take() {
            d.stop(Duration::from_secs(10));
        }
        let netns: Vec<PathBuf> = self
            .pod_netns
            .lock()
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        cleanup_leftovers(&self.paths.run_dir, &socket, &netns);
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if !self.kept {
            self.teardown();
        }
    }
}

fn spawn_containerd(paths: &Paths, netns: &TestNetns) -> Result<Daemon> {
    let containerd = which("containerd")?;
    let args: [&OsStr; 2] = ["--config".as_ref(), paths.config.as_os_str()];
    Daemon::spawn(
        "containerd",
        &containerd,
        &args,
        Some(netns.path()),
        &paths.log,
    )
}

async fn connect_when_up(paths: &Paths, daemon: &Daemon) -> Result<Client> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut last = None;
    loop {
        if paths.socket.exists() {
            match Client::connect(&paths.socket).await {
                Ok(c) => match c.version().await {
                    Ok(_) => return Ok(c),
                    Err(e) => last = Some(e.to_string()),
                },
                Err(e) => last = Some(e.to_string()),
            }
        }
        // A daemon that died will never answer: say so, with its log.
        if !Path::new(&format!("/proc/{}", daemon.pid())).exists() {
            return Err(Error::Unexpected {
                what: "containerd",
                detail: format!("exited during start; see {}", paths.log.display()),
            });
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!(
                    "containerd CRI at {} ({}; log {})",
                    paths.socket.display(),
                    last.unwrap_or_else(|| "no socket".into()),
                    paths.log.display()
                ),
                seconds: 20.0,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_every_private_path() {
        let paths = Paths::new(PathBuf::from("/var/tmp/x-1-0"));
        let opts = Options {
            plugin_request_timeout: Duration::from_millis(2500),
            ..Options::default()
        };
        let toml = config_toml(&paths, &opts);
        assert!(toml.contains(r#"address = "/var/tmp/x-1-0/containerd.sock""#));
        assert!(toml.contains(r#"socket_path = "/var/tmp/x-1-0/nri.sock""#));
        assert!(toml.contains(r#"plugin_request_timeout = "2500ms""#));
        assert!(toml.contains("restrict_oom_score_adj = true"));
        assert!(toml.contains(r#"conf_dir = "/var/tmp/x-1-0/cni/conf""#));
    }

    #[test]
    fn primary_network_has_no_gateway_and_private_leases() {
        let v: serde_json::Value = serde_json::from_str(&primary_conflist(
            "pxb1x0",
            "10.241.3.0/24",
            Path::new("/var/tmp/x/ipam"),
        ))
        .unwrap();
        let p = &v["plugins"][0];
        assert_eq!(p["isGateway"], false);
        assert_eq!(p["ipam"]["dataDir"], "/var/tmp/x/ipam");
        assert_eq!(p["ipam"]["ranges"][0][0]["subnet"], "10.241.3.0/24");
    }
}

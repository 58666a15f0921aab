//! Shared pieces of the privileged process tests: plexusd as a child process, a standalone
//! config over test namespaces and directories, NAD files, slow CNI plugins, and what the
//! tests inspect afterwards (links, addresses, leases, state records).

#![allow(dead_code)] // each test binary uses its own subset

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use plexus_client::v1;
use plexus_netlink::test_util::{TestNetns, unique_name};

/// plexusd started by a test; killed (SIGKILL) and reaped on drop if still running.
#[derive(Debug)]
pub struct Plexusd {
    child: Child,
}

impl Plexusd {
    /// Starts plexusd with `config` and waits until `socket` answers. `crash_at` sets the
    /// engine's `PLEXUS_CRASH_AT`.
    pub async fn start(config: &Path, socket: &Path, crash_at: Option<&str>) -> Plexusd {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_plexusd"));
        cmd.arg("--config").arg(config).env("RUST_LOG", "warn");
        match crash_at {
            Some(point) => cmd.env("PLEXUS_CRASH_AT", point),
            None => cmd.env_remove("PLEXUS_CRASH_AT"),
        };
        let mut daemon = Plexusd {
            child: cmd.spawn().expect("spawn plexusd"),
        };
        let until = Instant::now() + Duration::from_secs(20);
        while plexus_client::connect(socket).await.is_err() {
            if let Some(status) = daemon.child.try_wait().unwrap() {
                panic!("plexusd exited at start: {status}");
            }
            assert!(Instant::now() < until, "plexusd did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        daemon
    }

    /// Adopts a plexusd the test spawned itself (killed and reaped on drop like the others).
    pub fn adopt(child: Child) -> Plexusd {
        Plexusd { child }
    }

    /// Waits until `socket` answers, failing if the process exits first or `within` passes.
    pub async fn wait_serving(&mut self, socket: &Path, within: Duration) {
        let until = Instant::now() + within;
        while plexus_client::connect(socket).await.is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("plexusd exited: {status}");
            }
            assert!(Instant::now() < until, "plexusd did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to end.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    /// Stops it as the kubelet does (SIGTERM) and waits: it shuts down in order, its last
    /// log lines written.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM plexusd");
        self.wait()
    }
}

impl Drop for Plexusd {
    fn drop(&mut self) {
        // Only the child this test started.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A host netns with an uplink for macvlan, and a pod netns holding the runtime's `eth0`.
#[derive(Debug)]
pub struct Namespaces {
    /// Where host-side links (uplink, bridges, veth host ends) live.
    pub host: TestNetns,
    /// The pod.
    pub pod: TestNetns,
    /// The macvlan master in `host`.
    pub uplink: String,
}

impl Namespaces {
    /// Creates both namespaces (unique names).
    pub async fn new() -> Namespaces {
        let host = TestNetns::new().await;
        let uplink = unique_name("up");
        host.veth_pair(&uplink, &unique_name("pe")).await.unwrap();
        let pod = TestNetns::new().await;
        // The runtime's eth0 (NRI path): plexus adds net1/net2 next to it.
        pod.veth_pair("eth0", "eth0peer").await.unwrap();
        settle_link_local(&pod, &["eth0", "eth0peer"]).await;
        Namespaces { host, pod, uplink }
    }
}

/// Waits until each of `links` in `ns` has its IPv6 link-local address. The kernel adds it
/// asynchronously once the carrier is up (addrconf, run from the linkwatch work), so a
/// before/after snapshot of addresses taken earlier races with it. Nothing to wait for when
/// IPv6 is disabled in the namespace.
async fn settle_link_local(ns: &TestNetns, links: &[&str]) {
    let h = ns.handle().await;
    if h.sysctl("net/ipv6/conf/default/disable_ipv6")
        .await
        .map_or(true, |v| v.trim() != "0")
    {
        return;
    }
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let have = addresses(ns, "").await;
        let missing: Vec<&&str> = links
            .iter()
            .filter(|l| !have.iter().any(|a| a.starts_with(&format!("{l} fe80:"))))
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < until,
            "no IPv6 link-local address on {missing:?} after 10 s: {have:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes `<dir>/plexusd.yaml`: state, cache, leases, NADs and `bin` under `dir`, plugins
/// from `bin` then `/usr/lib/cni`, host links in `host`. Returns (config, socket).
pub fn write_config(dir: &Path, host: &TestNetns) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir.join("networks.d")).unwrap();
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    let socket = dir.join("run/plexus.sock");
    let config = dir.join("plexusd.yaml");
    std::fs::write(
        &config,
        format!(
            "socket: {}\nstateDir: state\ncniBinDirs: [bin, /usr/lib/cni]\ncniCacheDir: cache\n\
             ipamDataDir: leases\ncniConfDir: conf\nnadSource: {{directory: networks.d}}\n\
             hostNetns: {}\n",
            socket.display(),
            host.path().display()
        ),
    )
    .unwrap();
    (config, socket)
}

/// A NAD manifest in namespace `default`.
pub fn nad(name: &str, config: serde_json::Value) -> String {
    format!(
        "apiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  config: '{}'\n",
        config
    )
}

/// Writes NAD manifests (already rendered with [`nad`]) as `networks.d/nets.yaml`.
pub fn write_nads(dir: &Path, nads: &[String]) {
    std::fs::write(dir.join("networks.d/nets.yaml"), nads.join("---\n")).unwrap();
}

/// Installs an executable script as `bin/<name>`.
pub fn install_plugin(dir: &Path, name: &str, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("bin").join(name);
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A bridge plugin whose ADD is slow after the work is done: the real `/usr/lib/cni/bridge`
/// makes the veth, address and lease, then the script writes its pid to `marker` and sleeps
/// `sleep_secs` before answering. DEL (and everything else) is the real plugin at once.
pub fn slow_bridge_script(marker: &Path, sleep_secs: u32) -> String {
    let marker = marker.display();
    format!(
        "#!/bin/sh\n\
         if [ \"$CNI_COMMAND\" = ADD ]; then\n\
         \x20 out=$(/usr/lib/cni/bridge) || {{ echo \"$out\"; exit 1; }}\n\
         \x20 echo $$ > {marker}.tmp && mv {marker}.tmp {marker}\n\
         \x20 sleep {sleep_secs}\n\
         \x20 echo \"$out\"\n\
         \x20 exit 0\n\
         fi\n\
         exec /usr/lib/cni/bridge\n"
    )
}

/// Waits until process `pid` is gone (or a zombie: dead, not yet reaped); fails after a
/// generous bound. Shows that a plugin past its deadline was killed.
pub async fn wait_process_gone(pid: i32) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|r| !r.starts_with(" Z"))
        });
        if !alive {
            return;
        }
        assert!(
            Instant::now() < until,
            "process {pid} still runs after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The pid a plugin script wrote to `file`.
pub fn pid_in(file: &Path) -> i32 {
    let text = std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("read pid file {}: {e}", file.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("pid file {}: {text:?}: {e}", file.display()))
}

/// Names of the links in a namespace.
pub async fn link_names(ns: &TestNetns) -> BTreeSet<String> {
    let h = ns.handle().await;
    h.links()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect()
}

/// Every address in a namespace as `<link> <addr>/<len>`, except those on link `skip`.
pub async fn addresses(ns: &TestNetns, skip: &str) -> BTreeSet<String> {
    let h = ns.handle().await;
    let names: HashMap<u32, String> = h
        .links()
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.index, l.name))
        .collect();
    h.addresses(None)
        .await
        .unwrap()
        .into_iter()
        .map(|a| {
            let link = names.get(&a.index).map_or("?", String::as_str);
            format!("{link} {}", a.addr)
        })
        .filter(|a| a.split(' ').next() != Some(skip))
        .collect()
}

/// [`addresses`] without IPv6 link-local ones: the kernel adds those by itself whenever a
/// link comes up, at a moment of its choosing, so they are no one's leftovers.
pub async fn assigned_addresses(ns: &TestNetns, skip: &str) -> BTreeSet<String> {
    addresses(ns, skip)
        .await
        .into_iter()
        .filter(|a| {
            !a.split(' ')
                .nth(1)
                .is_some_and(|ip| ip.starts_with("fe80:"))
        })
        .collect()
}

/// host-local lease files (named by address) under the IPAM data dir.
pub fn lease_files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for net in std::fs::read_dir(root).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(net.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.parse::<std::net::IpAddr>().is_ok() {
                out.push(name);
            }
        }
    }
    out
}

/// Names of the files under `dir` (recursively) whose name contains `needle`.
pub fn files_naming(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_naming(&path, needle));
        } else if entry.file_name().to_string_lossy().contains(needle) {
            out.push(path);
        }
    }
    out
}

/// A SetupPod for pod `default/two-nets` with the networks annotation `networks`.
pub fn setup_request_for(sandbox: &str, netns: &Path, networks: &str) -> v1::SetupPodRequest {
    v1::SetupPodRequest {
        pod: Some(v1::PodRef {
            namespace: "default".into(),
            name: "two-nets".into(),
            uid: "uid-two-nets".into(),
        }),
        sandbox_id: sandbox.into(),
        netns_path: netns.to_string_lossy().into_owned(),
        annotations: HashMap::from([(
            "k8s.v1.cni.cncf.io/networks".to_owned(),
            networks.to_owned(),
        )]),
        labels: HashMap::new(),
        may_finish_later: false,
    }
}

/// Every recorded (sandbox, interface).
pub async fn recorded(
    client: &mut v1::node_client::NodeClient<tonic::transport::Channel>,
) -> Vec<(String, String)> {
    client
        .list_attachments(v1::ListAttachmentsRequest { target: None })
        .await
        .unwrap()
        .into_inner()
        .attachments
        .into_iter()
        .map(|a| (a.sandbox_id, a.interface))
        .collect()
}

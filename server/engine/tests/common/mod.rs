//! Shared fixture of the privileged engine tests: a "host" netns with a veth uplink, a
//! pod netns, temp state/lease/cache dirs, and plan builders.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use plexus_core::id::SandboxId;
use plexus_core::plan::{Plan, PlannedAttachment};
use plexus_core::pod::PodIdentity;
use plexus_engine::{DelegationMode, Engine, EngineConfig, SandboxSpec};
use plexus_netlink::test_util::{TestNetns, unique_name};

pub struct Fixture {
    pub host: TestNetns,
    pub pod: TestNetns,
    pub uplink: String,
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub async fn new() -> Fixture {
        let host = TestNetns::new().await;
        let uplink = unique_name("up");
        host.veth_pair(&uplink, &unique_name("pe"))
            .await
            .expect("uplink veth");
        Fixture {
            host,
            pod: TestNetns::new().await,
            uplink,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn leases(&self) -> PathBuf {
        self.dir.path().join("leases")
    }

    pub fn config(&self, mode: DelegationMode) -> EngineConfig {
        config_for(self.dir.path(), &self.host.path(), mode)
    }

    pub fn engine(&self, mode: DelegationMode) -> Engine {
        Engine::open(self.config(mode)).expect("open engine")
    }

    pub fn sandbox(&self, id: &str) -> SandboxSpec {
        SandboxSpec {
            sandbox_id: sid(id),
            pod: PodIdentity::new("default", "pod", "uid-1"),
            netns: self.pod.path(),
        }
    }

    /// A macvlan conf on the uplink with host-local leases under the temp dir.
    pub fn macvlan(&self, name: &str, mode: &str, subnet: &str) -> serde_json::Value {
        serde_json::json!({
            "cniVersion":"1.0.0","name":name,"type":"macvlan","master":self.uplink,"mode":mode,
            "ipam":{"type":"host-local","subnet":subnet,"dataDir":self.leases()}
        })
    }

    /// Names of the links in the pod besides `lo`.
    pub async fn pod_links(&self) -> Vec<String> {
        let h = self.pod.handle().await;
        let mut names: Vec<String> = h
            .links()
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .filter(|n| n != "lo")
            .collect();
        names.sort();
        names
    }

    /// Lease files (addresses) left anywhere under the lease dir.
    pub fn lease_files(&self) -> Vec<String> {
        lease_files(&self.leases())
    }
}

pub fn config_for(dir: &Path, host: &Path, mode: DelegationMode) -> EngineConfig {
    let mut cfg = EngineConfig::new(dir.join("state"));
    cfg.cni_bin_dirs = vec!["/usr/lib/cni".into()];
    cfg.cni_cache_dir = dir.join("cache");
    cfg.ipam_data_dir = dir.join("leases");
    cfg.host_netns = Some(host.to_path_buf());
    cfg.delegation = mode;
    // No runtime removes the tests' pod netns: the reaper deletes the links itself soon.
    cfg.links_grace = std::time::Duration::from_millis(50);
    // Reaped records are removed in batches, as in plexusd, after a shorter wait.
    cfg.removal_batch = std::time::Duration::from_millis(20);
    cfg
}

pub fn lease_files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(nets) = std::fs::read_dir(root) else {
        return out;
    };
    for net in nets.flatten() {
        for f in std::fs::read_dir(net.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.parse::<std::net::IpAddr>().is_ok() {
                out.push(format!("{}/{name}", net.file_name().to_string_lossy()));
            }
        }
    }
    out.sort();
    out
}

pub fn attachment(index: usize, iface: &str, conf: &serde_json::Value) -> PlannedAttachment {
    let bytes = serde_json::to_vec(conf).unwrap();
    let conflist = conf.get("plugins").is_some();
    let types: Vec<serde_json::Value> = if conflist {
        conf["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].clone())
            .collect()
    } else {
        vec![conf["type"].clone()]
    };
    serde_json::from_value(serde_json::json!({
        "index": index, "network": format!("default/{}", conf["name"].as_str().unwrap()),
        "interface": iface, "origin": "annotation", "primary": false,
        "source": {"kind": "nad", "namespace": "default", "name": conf["name"]},
        "config": {"form": if conflist {"conflist"} else {"conf"}, "name": conf["name"],
            "cni_version": conf["cniVersion"], "plugin_types": types, "bytes": bytes},
    }))
    .unwrap()
}

pub fn plan(attachments: Vec<PlannedAttachment>) -> Plan {
    Plan {
        pod: PodIdentity::new("default", "pod", "uid-1"),
        attachments,
    }
}

/// A valid sandbox id (panics on an invalid one: tests use fixed ids).
pub fn sid(id: &str) -> SandboxId {
    SandboxId::new(id).expect("valid sandbox id")
}

pub fn ifn(name: &str) -> plexus_core::InterfaceName {
    plexus_core::InterfaceName::new(name).expect("valid interface name")
}

/// A plugin whose ADD writes its pid to `pid_file` and then sleeps until killed; DEL and
/// anything else answer at once.
pub fn slow_plugin(pid_file: &std::path::Path) -> String {
    format!(
        "#!/bin/sh\n[ \"$CNI_COMMAND\" = ADD ] && {{ echo $$ > {p}.tmp && mv {p}.tmp {p}; exec sleep 600; }}\nexit 0\n",
        p = pid_file.display()
    )
}

/// Polls until `file` exists (written atomically by [`slow_plugin`]); generous bound.
pub async fn wait_written(file: &std::path::Path) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !file.exists() {
        assert!(
            std::time::Instant::now() < until,
            "{} not written",
            file.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Polls until the process whose pid is in `file` is gone or a zombie; generous bound.
pub async fn wait_gone(file: &std::path::Path) {
    let pid: i32 = std::fs::read_to_string(file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.rsplit(')').next().is_some_and(|r| r.starts_with(" Z")) {
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "plugin {pid} still runs after 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

pub mod dhcp_server;

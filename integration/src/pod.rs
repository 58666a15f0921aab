//! Pods as the tests see them: a [`PodSpec`] (metadata, annotations, labels) turned into a
//! CRI `PodSandboxConfig`, and a running [`Pod`] (sandbox id + netns path) with helpers
//! that look inside its network namespace (`ip -j addr`, `ping`) via `nsenter --net`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cri::api;
use crate::error::{Error, Result};
use crate::process::run_in_netns;

/// The Multus network selection annotation.
pub const NETWORKS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/networks";

/// What a test asks for: pod identity, annotations and labels.
#[derive(Debug, Clone, Default)]
pub struct PodSpec {
    /// Pod name.
    pub name: String,
    /// Pod namespace.
    pub namespace: String,
    /// Pod UID.
    pub uid: String,
    /// Pod annotations.
    pub annotations: BTreeMap<String, String>,
    /// Pod labels.
    pub labels: BTreeMap<String, String>,
}

impl PodSpec {
    /// A pod `namespace/name` with a UID derived from the name, the pid and a counter.
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            uid: format!(
                "00000000-0000-4000-8000-{:06x}{:06x}",
                std::process::id() & 0xff_ffff,
                crate::netns::next_id() & 0xff_ffff
            ),
            ..Self::default()
        }
    }

    /// Adds an annotation.
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Sets `k8s.v1.cni.cncf.io/networks`.
    pub fn networks(self, value: &str) -> Self {
        self.annotation(NETWORKS_ANNOTATION, value)
    }

    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    /// The CRI sandbox config: pod network namespace, hostname = pod name.
    pub fn to_config(&self) -> api::PodSandboxConfig {
        let mut labels: std::collections::HashMap<_, _> = self.labels.clone().into_iter().collect();
        labels
            .entry("io.kubernetes.pod.name".into())
            .or_insert_with(|| self.name.clone());
        labels
            .entry("io.kubernetes.pod.namespace".into())
            .or_insert_with(|| self.namespace.clone());
        api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: self.name.clone(),
                uid: self.uid.clone(),
                namespace: self.namespace.clone(),
                attempt: 0,
            }),
            hostname: self.name.clone(),
            labels,
            annotations: self.annotations.clone().into_iter().collect(),
            linux: Some(api::LinuxPodSandboxConfig {
                security_context: Some(api::LinuxSandboxSecurityContext {
                    namespace_options: Some(api::NamespaceOption {
                        network: api::NamespaceMode::Pod as i32,
                        pid: api::NamespaceMode::Pod as i32,
                        ipc: api::NamespaceMode::Pod as i32,
                        target_id: String::new(),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// A running pod sandbox.
#[derive(Debug, Clone)]
pub struct Pod {
    /// The sandbox id.
    pub id: String,
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// The pod's network namespace (`/var/run/netns/cni-<uuid>`).
    pub netns: PathBuf,
}

/// One interface inside a pod, from `ip -j addr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// MAC address (lowercase).
    pub mac: String,
    /// Whether the link is administratively up.
    pub up: bool,
    /// Addresses with prefix length (`10.241.0.5/24`), link-local IPv6 excluded.
    pub addresses: Vec<String>,
}

#[derive(Deserialize)]
struct IpLink {
    ifname: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    addr_info: Vec<IpAddr>,
}

#[derive(Deserialize)]
struct IpAddr {
    local: String,
    prefixlen: u8,
    #[serde(default)]
    scope: String,
}

/// Parses `ip -j addr` output.
pub fn parse_ip_addr(json: &str) -> Result<Vec<Interface>> {
    let links: Vec<IpLink> = serde_json::from_str(json).map_err(|source| Error::Json {
        what: "ip -j addr output",
        source,
    })?;
    Ok(links
        .into_iter()
        .map(|l| Interface {
            up: l.flags.iter().any(|f| f == "UP"),
            name: l.ifname,
            mac: l.address.to_lowercase(),
            addresses: l
                .addr_info
                .into_iter()
                .filter(|a| a.scope != "link")
                .map(|a| format!("{}/{}", a.local, a.prefixlen))
                .collect(),
        })
        .collect())
}

impl Pod {
    /// Runs a command inside the pod's network namespace; returns its standard output.
    pub fn exec<I, S>(&self, program: &str, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        run_in_netns(&self.netns, program, args)
    }

    /// The pod's interfaces (`ip -j addr` inside its netns).
    pub fn interfaces(&self) -> Result<Vec<Interface>> {
        parse_ip_addr(&self.exec("ip", ["-j", "addr"])?)
    }

    /// The interface called `name`, or an error listing what is there.
    pub fn interface(&self, name: &str) -> Result<Interface> {
        let all = self.interfaces()?;
        let names: Vec<String> = all.iter().map(|i| i.name.clone()).collect();
        all.into_iter()
            .find(|i| i.name == name)
            .ok_or_else(|| Error::Unexpected {
                what: "pod interfaces",
                detail: format!("no {name} in {}: {names:?}", self.name),
            })
    }

    /// `ip -br addr` inside the pod (for humans: the demo prints it).
    pub fn brief_addresses(&self) -> Result<String> {
        self.exec("ip", ["-br", "addr"])
    }

    /// Pings `ip` from inside the pod through `interface` (`count` packets 0.2 s apart;
    /// busybox's ping, so no iputils is needed). Fails unless a reply came back.
    pub fn ping(&self, interface: &str, ip: &str, count: u32) -> Result<String> {
        let count = count.to_string();
        self.exec(
            crate::image::BUSYBOX,
            [
                "ping", "-c", &count, "-i", "0.2", "-W", "2", "-I", interface, ip,
            ],
        )
    }

    /// Whether the pod's network namespace still exists.
    pub fn netns_exists(&self) -> bool {
        Path::new(&self.netns).exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_addr_json_is_parsed_without_link_local() {
        let json = r#"[
          {"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"address":"00:00:00:00:00:00",
           "addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host"}]},
          {"ifindex":3,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP"],"address":"AA:bb:cc:00:11:22",
           "addr_info":[{"family":"inet","local":"10.241.0.5","prefixlen":24,"scope":"global"},
                        {"family":"inet6","local":"fe80::1","prefixlen":64,"scope":"link"}]},
          {"ifindex":4,"ifname":"net1","flags":["BROADCAST"],"address":"02:00:00:00:00:01","addr_info":[]}
        ]"#;
        let ifs = parse_ip_addr(json).unwrap();
        assert_eq!(ifs.len(), 3);
        assert_eq!(ifs[1].name, "eth0");
        assert_eq!(ifs[1].mac, "aa:bb:cc:00:11:22");
        assert_eq!(ifs[1].addresses, vec!["10.241.0.5/24"]);
        assert!(ifs[1].up);
        assert!(!ifs[2].up);
    }

    #[test]
    fn pod_spec_becomes_a_pod_network_sandbox_config() {
        let spec = PodSpec::new("ns1", "web")
            .networks("macvlan-net@net7")
            .label("app", "web");
        let cfg = spec.to_config();
        let md = cfg.metadata.as_ref().unwrap();
        assert_eq!((md.name.as_str(), md.namespace.as_str()), ("web", "ns1"));
        assert_eq!(md.uid, spec.uid);
        assert_eq!(cfg.annotations[NETWORKS_ANNOTATION], "macvlan-net@net7");
        assert_eq!(cfg.labels["app"], "web");
        let ns = cfg
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(ns.network, api::NamespaceMode::Pod as i32);
    }
}

//! macvlan driver: a macvlan on a host master, created straight into the pod netns.
//!
//! Mirrors the reference `macvlan` plugin (containernetworking/plugins v1.1.1): mode
//! defaults to `bridge`; the master defaults to the link of the host's default route;
//! the MTU must not exceed the master's; a MAC from runtimeConfig/CNI_ARGS is set at
//! creation; with IPAM (layer 3) it sets `net.ipv4.conf.<if>.arp_notify=1` in the pod
//! (v1.1.1 does not touch `ndisc_notify`; later releases do; the parity test against the
//! installed plugin pins this). Unlike the plugin it creates the link
//! with its final name (no temporary name + rename) and up, in one request.

use std::fmt;
use std::str::FromStr;

use rtnetlink::LinkMacVlan;
use rtnetlink::packet_route::link::MacVlanMode;

use super::{Link, PodLink, best_effort_sysctl, check_mtu, create_in_pod, resolve_master};
use crate::error::{Error, Result};
use crate::handle::Handle;

/// macvlan mode (`IFLA_MACVLAN_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum MacvlanMode {
    /// Sub-interfaces on the same master talk directly (the CNI default).
    #[default]
    Bridge,
    /// No traffic between sub-interfaces.
    Private,
    /// Traffic between sub-interfaces goes via the external switch.
    Vepa,
    /// The single sub-interface takes over the master.
    Passthru,
    /// Only frames from an allowed source MAC list are accepted.
    Source,
}

impl MacvlanMode {
    /// The CNI config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MacvlanMode::Bridge => "bridge",
            MacvlanMode::Private => "private",
            MacvlanMode::Vepa => "vepa",
            MacvlanMode::Passthru => "passthru",
            MacvlanMode::Source => "source",
        }
    }

    pub(crate) fn to_kernel(self) -> MacVlanMode {
        match self {
            MacvlanMode::Bridge => MacVlanMode::Bridge,
            MacvlanMode::Private => MacVlanMode::Private,
            MacvlanMode::Vepa => MacVlanMode::Vepa,
            MacvlanMode::Passthru => MacVlanMode::Passthrough,
            MacvlanMode::Source => MacVlanMode::Source,
        }
    }

    pub(crate) fn from_kernel(m: MacVlanMode) -> Option<MacvlanMode> {
        Some(match m {
            MacVlanMode::Bridge => MacvlanMode::Bridge,
            MacVlanMode::Private => MacvlanMode::Private,
            MacVlanMode::Vepa => MacvlanMode::Vepa,
            MacVlanMode::Passthrough => MacvlanMode::Passthru,
            MacVlanMode::Source => MacvlanMode::Source,
            _ => return None,
        })
    }
}

impl fmt::Display for MacvlanMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MacvlanMode {
    type Err = Error;

    /// Parses the CNI `mode` field; `""` means bridge.
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "" | "bridge" => MacvlanMode::Bridge,
            "private" => MacvlanMode::Private,
            "vepa" => MacvlanMode::Vepa,
            "passthru" => MacvlanMode::Passthru,
            "source" => MacvlanMode::Source,
            other => {
                return Err(Error::InvalidSpec {
                    kind: "macvlan",
                    reason: format!(
                        "unknown mode {other:?}; accepted: bridge, private, vepa, passthru, source"
                    ),
                });
            }
        })
    }
}

/// What to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacvlanSpec {
    /// Master link name; `None` takes the link of the default route.
    pub master: Option<String>,
    /// The master lives in the pod netns (CNI `linkInContainer`).
    pub master_in_pod: bool,
    /// Mode.
    pub mode: MacvlanMode,
    /// Name, mtu, mac and group in the pod.
    pub link: PodLink,
    /// IPAM will configure addresses (sets the arp_notify sysctl).
    pub layer3: bool,
}

/// Creates the macvlan in the pod netns, up. `host` holds the master unless
/// `spec.master_in_pod`.
pub async fn add(host: &Handle, pod: &Handle, spec: &MacvlanSpec) -> Result<Link> {
    let creator = if spec.master_in_pod { pod } else { host };
    let master = resolve_master(creator, "macvlan", spec.master.as_deref()).await?;
    check_mtu("macvlan", spec.link.mtu, &master)?;
    let builder = LinkMacVlan::new(&spec.link.name, master.index, spec.mode.to_kernel());
    let link = create_in_pod(creator, pod, "macvlan", builder, &spec.link).await?;
    if spec.layer3 {
        let name = &link.name;
        best_effort_sysctl(pod, &format!("net/ipv4/conf/{name}/arp_notify"), "1").await;
    }
    Ok(link)
}

/// Deletes the pod's macvlan `name`; already gone is success.
pub async fn del(pod: &Handle, name: &str) -> Result<()> {
    pod.delete_link_by_name(name).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_like_the_reference_plugin() {
        assert_eq!("".parse::<MacvlanMode>().unwrap(), MacvlanMode::Bridge);
        for m in [
            MacvlanMode::Bridge,
            MacvlanMode::Private,
            MacvlanMode::Vepa,
            MacvlanMode::Passthru,
            MacvlanMode::Source,
        ] {
            assert_eq!(m.as_str().parse::<MacvlanMode>().unwrap(), m);
            assert_eq!(MacvlanMode::from_kernel(m.to_kernel()), Some(m));
        }
        let err = "passthrough".parse::<MacvlanMode>().unwrap_err();
        assert!(err.to_string().contains("accepted: bridge"));
    }
}

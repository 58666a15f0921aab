//! ipvlan driver: an ipvlan on a host master, created straight into the pod netns.
//!
//! Mirrors the reference `ipvlan` plugin (v1.1.1): mode `l2` (default), `l3` or `l3s`;
//! flag `bridge` (default), `private` or `vepa`; master defaults to the default-route link;
//! MTU at most the master's. ipvlan slaves share the master's MAC, so no MAC is set.
//! Kernels without the ipvlan module answer `EOPNOTSUPP` ("Unknown device type"), seen as
//! [`crate::Error::is_unsupported_kind`].

use std::fmt;
use std::str::FromStr;

use rtnetlink::LinkIpVlan;
use rtnetlink::packet_route::link::{IpVlanFlags, IpVlanMode};

use super::{Link, PodLink, check_mtu, create_in_pod, resolve_master};
use crate::error::{Error, Result};
use crate::handle::Handle;

/// ipvlan mode (`IFLA_IPVLAN_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum IpvlanMode {
    /// Layer 2 (the CNI default).
    #[default]
    L2,
    /// Layer 3.
    L3,
    /// Layer 3 with netfilter (l3s).
    L3s,
}

impl IpvlanMode {
    /// The CNI config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            IpvlanMode::L2 => "l2",
            IpvlanMode::L3 => "l3",
            IpvlanMode::L3s => "l3s",
        }
    }

    fn to_kernel(self) -> IpVlanMode {
        match self {
            IpvlanMode::L2 => IpVlanMode::L2,
            IpvlanMode::L3 => IpVlanMode::L3,
            IpvlanMode::L3s => IpVlanMode::L3S,
        }
    }

    pub(crate) fn from_kernel(m: IpVlanMode) -> Option<IpvlanMode> {
        Some(match m {
            IpVlanMode::L2 => IpvlanMode::L2,
            IpVlanMode::L3 => IpvlanMode::L3,
            IpVlanMode::L3S => IpvlanMode::L3s,
            _ => return None,
        })
    }
}

impl fmt::Display for IpvlanMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IpvlanMode {
    type Err = Error;

    /// Parses the CNI `mode` field; `""` means l2.
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "" | "l2" => IpvlanMode::L2,
            "l3" => IpvlanMode::L3,
            "l3s" => IpvlanMode::L3s,
            other => {
                return Err(Error::InvalidSpec {
                    kind: "ipvlan",
                    reason: format!("unknown mode {other:?}; accepted: l2, l3, l3s"),
                });
            }
        })
    }
}

/// ipvlan flag (`IFLA_IPVLAN_FLAGS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum IpvlanFlag {
    /// Slaves talk directly (the default, no flag bits).
    #[default]
    Bridge,
    /// No traffic between slaves.
    Private,
    /// Traffic between slaves goes via the external switch.
    Vepa,
}

impl IpvlanFlag {
    /// The CNI config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            IpvlanFlag::Bridge => "bridge",
            IpvlanFlag::Private => "private",
            IpvlanFlag::Vepa => "vepa",
        }
    }

    fn to_kernel(self) -> IpVlanFlags {
        match self {
            IpvlanFlag::Bridge => IpVlanFlags::empty(),
            IpvlanFlag::Private => IpVlanFlags::Private,
            IpvlanFlag::Vepa => IpVlanFlags::Vepa,
        }
    }

    pub(crate) fn from_kernel(f: IpVlanFlags) -> IpvlanFlag {
        if f.contains(IpVlanFlags::Private) {
            IpvlanFlag::Private
        } else if f.contains(IpVlanFlags::Vepa) {
            IpvlanFlag::Vepa
        } else {
            IpvlanFlag::Bridge
        }
    }
}

impl FromStr for IpvlanFlag {
    type Err = Error;

    /// Parses the CNI `linkFlag`/flag field; `""` means bridge.
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "" | "bridge" => IpvlanFlag::Bridge,
            "private" => IpvlanFlag::Private,
            "vepa" => IpvlanFlag::Vepa,
            other => {
                return Err(Error::InvalidSpec {
                    kind: "ipvlan",
                    reason: format!("unknown flag {other:?}; accepted: bridge, private, vepa"),
                });
            }
        })
    }
}

/// What to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvlanSpec {
    /// Master link name; `None` takes the link of the default route.
    pub master: Option<String>,
    /// The master lives in the pod netns (CNI `linkInContainer`).
    pub master_in_pod: bool,
    /// Mode.
    pub mode: IpvlanMode,
    /// Flag.
    pub flag: IpvlanFlag,
    /// Name, mtu and group in the pod (a MAC is refused: ipvlan shares the master's).
    pub link: PodLink,
}

/// Creates the ipvlan in the pod netns, up.
pub async fn add(host: &Handle, pod: &Handle, spec: &IpvlanSpec) -> Result<Link> {
    if spec.link.mac.is_some() {
        return Err(Error::InvalidSpec {
            kind: "ipvlan",
            reason: "a mac address cannot be set: ipvlan links share the master's".into(),
        });
    }
    let creator = if spec.master_in_pod { pod } else { host };
    let master = resolve_master(creator, "ipvlan", spec.master.as_deref()).await?;
    check_mtu("ipvlan", spec.link.mtu, &master)?;
    let mut builder = LinkIpVlan::new(&spec.link.name, master.index, spec.mode.to_kernel());
    if spec.flag != IpvlanFlag::Bridge {
        builder = builder.flag(spec.flag.to_kernel());
    }
    create_in_pod(creator, pod, "ipvlan", builder, &spec.link).await
}

/// Deletes the pod's ipvlan `name`; already gone is success.
pub async fn del(pod: &Handle, name: &str) -> Result<()> {
    pod.delete_link_by_name(name).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_flags_parse() {
        assert_eq!("".parse::<IpvlanMode>().unwrap(), IpvlanMode::L2);
        assert_eq!("l3s".parse::<IpvlanMode>().unwrap(), IpvlanMode::L3s);
        assert!("l4".parse::<IpvlanMode>().is_err());
        assert_eq!("".parse::<IpvlanFlag>().unwrap(), IpvlanFlag::Bridge);
        for f in [IpvlanFlag::Bridge, IpvlanFlag::Private, IpvlanFlag::Vepa] {
            assert_eq!(IpvlanFlag::from_kernel(f.to_kernel()), f);
            assert_eq!(f.as_str().parse::<IpvlanFlag>().unwrap(), f);
        }
        for m in [IpvlanMode::L2, IpvlanMode::L3, IpvlanMode::L3s] {
            assert_eq!(IpvlanMode::from_kernel(m.to_kernel()), Some(m));
        }
    }
}

//! host-device driver: move an existing host link into the pod (renamed), and back out.
//!
//! Mirrors the reference `host-device` plugin (v1.1.1): the device is found by name, MAC,
//! kernel path (`/sys/devices/...`) or PCI address; moving in stores the host name in the
//! link's alias (`IFLA_IFALIAS`), renames it and brings it up; moving out renames it back
//! to the stored name and returns it to the host netns (down, like the plugin). Here the
//! move, rename, alias and up go in one `RTM_SETLINK`. The device is not put in a link
//! group: group deletion must never destroy it. The original name is also returned to the
//! caller for its state, so teardown works even if the alias was lost.

use std::path::Path;

use super::Link;
use crate::error::{Error, Result};
use crate::handle::{Handle, LinkChange};
use crate::mac::MacAddr;

/// How the host device is identified (CNI `device`, `hwaddr`, `kernelpath`, `pciBusID`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostDeviceSpec {
    /// By interface name.
    Name(String),
    /// By hardware address.
    Mac(MacAddr),
    /// By kernel device path, e.g. `/sys/devices/pci0000:00/0000:00:19.0`.
    KernelPath(String),
    /// By PCI address, e.g. `0000:00:19.0`.
    PciAddr(String),
}

/// What [`add`] did, to be recorded for teardown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDeviceAttachment {
    /// The device's name in the host before it was moved.
    pub original_name: String,
    /// The device as seen in the pod.
    pub pod_link: Link,
}

/// Finds the host device `spec` designates in `host`.
pub async fn find(host: &Handle, spec: &HostDeviceSpec) -> Result<Link> {
    let not_found = |what: String| Error::LinkNotFound {
        name: what,
        netns: host.ns_name(),
    };
    match spec {
        HostDeviceSpec::Name(n) => host.find_link(n).await,
        HostDeviceSpec::Mac(mac) => host
            .links()
            .await?
            .into_iter()
            .find(|l| l.mac == Some(*mac))
            .ok_or_else(|| not_found(format!("with mac {mac}"))),
        HostDeviceSpec::KernelPath(p) => {
            if !p.starts_with("/sys/devices/") {
                return Err(Error::InvalidSpec {
                    kind: "host-device",
                    reason: format!(
                        "kernel device path {p:?} must be absolute and begin with /sys/devices/"
                    ),
                });
            }
            first_net_entry(host, &Path::new(p).join("net")).await
        }
        HostDeviceSpec::PciAddr(addr) => {
            let dir = Path::new("/sys/bus/pci/devices").join(addr).join("net");
            if dir.exists() {
                return first_net_entry(host, &dir).await;
            }
            // virtio devices keep their netdev one level down (virtioN/net).
            let base = Path::new("/sys/bus/pci/devices").join(addr);
            let virtio = std::fs::read_dir(&base)
                .ok()
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path().join("net"))
                .find(|p| {
                    p.parent()
                        .and_then(|d| d.file_name())
                        .is_some_and(|n| n.to_string_lossy().starts_with("virtio"))
                        && p.exists()
                });
            match virtio {
                Some(d) => first_net_entry(host, &d).await,
                None => Err(not_found(format!("for pci device {addr}"))),
            }
        }
    }
}

async fn first_net_entry(host: &Handle, dir: &Path) -> Result<Link> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|_| Error::LinkNotFound {
            name: format!("under {}", dir.display()),
            netns: host.ns_name(),
        })?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in names {
        if let Some(l) = host.try_find_link(&n).await? {
            return Ok(l);
        }
    }
    Err(Error::LinkNotFound {
        name: format!("under {}", dir.display()),
        netns: host.ns_name(),
    })
}

/// Moves the designated host device into the pod as `name`, up.
pub async fn add(
    host: &Handle,
    pod: &Handle,
    spec: &HostDeviceSpec,
    name: &str,
) -> Result<HostDeviceAttachment> {
    let dev = find(host, spec).await?;
    let change = LinkChange::new()
        .name(name)
        .alias(dev.name.clone())
        .up(true);
    host.move_link(&dev, pod.netns(), &change).await?;
    let pod_link = pod.find_link(name).await?;
    Ok(HostDeviceAttachment {
        original_name: dev.name,
        pod_link,
    })
}

/// Moves the pod's `name` back to the host under `original_name` (or, when `None`, the
/// alias stored at [`add`]). A device no longer in the pod is success.
pub async fn del(
    host: &Handle,
    pod: &Handle,
    name: &str,
    original_name: Option<&str>,
) -> Result<()> {
    let Some(dev) = pod.try_find_link(name).await? else {
        return Ok(());
    };
    let restore = match original_name
        .map(str::to_string)
        .or_else(|| dev.alias.clone())
    {
        Some(n) if !n.is_empty() => n,
        _ => {
            return Err(Error::InvalidSpec {
                kind: "host-device",
                reason: format!("{name:?} has no recorded original name (alias) to restore"),
            });
        }
    };
    let change = LinkChange::new().name(restore).up(false);
    pod.move_link(&dev, host.netns(), &change).await
}

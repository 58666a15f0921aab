//! Reading a link without the rtnl lock. An `RTM_GETLINK` request waits for the rtnl lock
//! like any change: on a node starting many pods at once, behind every other pod's link
//! requests, for up to seconds. Instead:
//!
//! - whether the name exists comes from the netns's `/proc/net/dev`, which the kernel
//!   lists under RCU;
//! - only then, index, MTU, MAC and flags come from `SIOCGIFINDEX`, `SIOCGIFMTU`,
//!   `SIOCGIFHWADDR` and `SIOCGIFFLAGS` on the handle's socket, answered under RCU
//!   (net/core/dev_ioctl.c). Those ioctls first call `dev_load`, which for a name with no
//!   device asks the kernel to load a module named after it (`netdev-<name>`, and with
//!   `CAP_SYS_MODULE` `<name>` itself): a name from a NAD or an annotation must never get
//!   there unless a device of that name exists.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;

use super::Handle;
use crate::error::{Error, Result};
use crate::link::Link;
use crate::mac::MacAddr;

/// Largest `/proc/net/dev` read (about 150 bytes per device: some 7000 devices).
const DEV_LIST_MAX: usize = 1 << 20;

/// A socket of the handle's netns for ioctls, and that netns's `/proc/net/dev`.
pub(crate) struct Probe {
    socket: OwnedFd,
    devices: std::fs::File,
}

impl Probe {
    pub(crate) fn new(socket: OwnedFd, devices: std::fs::File) -> Probe {
        Probe { socket, devices }
    }

    /// Whether a device named `name` is listed in the netns's `/proc/net/dev`.
    fn listed(&self, name: &str) -> Result<bool> {
        let failed = |source| Error::PeekLink {
            name: name.to_string(),
            request: "/proc/net/dev",
            source,
        };
        let mut text = Vec::with_capacity(16 * 1024);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = self
                .devices
                .read_at(&mut buf, text.len() as u64)
                .map_err(failed)?;
            if n == 0 {
                break;
            }
            text.extend_from_slice(&buf[..n]);
            if text.len() > DEV_LIST_MAX {
                return Err(failed(io::Error::other(format!(
                    "the device list is longer than {DEV_LIST_MAX} bytes"
                ))));
            }
        }
        Ok(device_names(&text).any(|d| d == name.as_bytes()))
    }
}

/// The device names of a `/proc/net/dev` text: each line after the two header lines starts
/// with the name (padded with spaces) and a colon; a device name holds neither.
fn device_names(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|b| *b == b'\n').skip(2).filter_map(|line| {
        let colon = line.iter().position(|b| *b == b':')?;
        Some(line[..colon].trim_ascii())
    })
}

/// `ARPHRD_ETHER`: the hardware address is a 6-byte MAC.
const ARPHRD_ETHER: u16 = 1;

impl Handle {
    /// The link named `name` as far as ioctls tell (index, name, MTU, MAC, up, promiscuous;
    /// every other field is left at its default), or `None` when there is none. Takes no
    /// rtnl lock: for lookups on a pod's path, where an `RTM_GETLINK` would queue behind
    /// every other pod's link requests. Costs a read of the netns's device list, which
    /// grows with its number of devices (a few hundred bytes each).
    pub fn peek_link(&self, name: &str) -> Result<Option<Link>> {
        if !self.probe.listed(name)? {
            return Ok(None);
        }
        peek(&self.probe.socket, name)
    }
}

/// The ioctl reads of `name`, which the netns lists. Deleted meanwhile: `None`.
fn peek(fd: &OwnedFd, name: &str) -> Result<Option<Link>> {
    let index = match ioctl(fd, name, libc::SIOCGIFINDEX, "SIOCGIFINDEX") {
        Ok(r) => r,
        Err(e) if e.errno() == Some(libc::ENODEV) => return Ok(None),
        Err(e) => return Err(e),
    };
    let read = |request, what| ioctl(fd, name, request, what);
    let mtu = read(libc::SIOCGIFMTU, "SIOCGIFMTU")?;
    let hw = read(libc::SIOCGIFHWADDR, "SIOCGIFHWADDR")?;
    let flags = read(libc::SIOCGIFFLAGS, "SIOCGIFFLAGS")?;
    // SAFETY: each union member was written by the kernel for the ioctl that read it.
    let (index, mtu, hw, flags) = unsafe {
        (
            index.ifr_ifru.ifru_ifindex,
            mtu.ifr_ifru.ifru_mtu,
            hw.ifr_ifru.ifru_hwaddr,
            flags.ifr_ifru.ifru_flags,
        )
    };
    let mac = (hw.sa_family == ARPHRD_ETHER).then(|| {
        let mut b = [0u8; 6];
        for (d, s) in b.iter_mut().zip(hw.sa_data.iter()) {
            *d = *s as u8;
        }
        MacAddr(b)
    });
    let flags = u32::from(flags as u16);
    Ok(Some(Link {
        index: index as u32,
        name: name.to_string(),
        mtu: mtu as u32,
        mac,
        up: flags & libc::IFF_UP as u32 != 0,
        promisc: flags & libc::IFF_PROMISC as u32 != 0,
        ..Link::default()
    }))
}

/// One `SIOCGIF*` request for `name`.
fn ioctl(
    fd: &OwnedFd,
    name: &str,
    request: libc::Ioctl,
    what: &'static str,
) -> Result<libc::ifreq> {
    let failed = |source| Error::PeekLink {
        name: name.to_string(),
        request: what,
        source,
    };
    let bytes = name.as_bytes();
    // A name the kernel could not hold (IFNAMSIZ with its NUL) or with a NUL names no link.
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(failed(io::Error::from_raw_os_error(libc::ENODEV)));
    }
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: `fd` is an open socket, `req` a valid ifreq the kernel reads the name from
    // and writes one union member of; it outlives the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request, &mut req) };
    if rc < 0 {
        return Err(failed(io::Error::last_os_error()));
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::device_names;

    #[test]
    fn device_names_are_read_from_the_proc_net_dev_layout() {
        let text = b"Inter-|   Receive                            |  Transmit\n face |bytes    packets\n    lo:       0       0    0\nveth1a2b3c4d: 1 2 3\n  net1:  9 9\n";
        let names: Vec<&[u8]> = device_names(text).collect();
        assert_eq!(names, [&b"lo"[..], b"veth1a2b3c4d", b"net1"]);
        assert_eq!(device_names(b"only one line\n").count(), 0);
    }
}

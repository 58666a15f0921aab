//! Reading a link without the rtnl lock: `SIOCGIFINDEX`, `SIOCGIFMTU`, `SIOCGIFHWADDR` and
//! `SIOCGIFFLAGS` on a socket of the handle's netns. The kernel answers these under RCU
//! (`dev_ifsioc_locked` in net/core/dev_ioctl.c), while an `RTM_GETLINK` request waits for
//! the rtnl lock like any change: on a node starting many pods at once, behind every other
//! pod's link requests, for up to seconds.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use super::Handle;
use crate::error::{Error, Result};
use crate::link::Link;
use crate::mac::MacAddr;

/// `ARPHRD_ETHER`: the hardware address is a 6-byte MAC.
const ARPHRD_ETHER: u16 = 1;

impl Handle {
    /// The link named `name` as far as ioctls tell (index, name, MTU, MAC, up, promiscuous;
    /// every other field is left at its default), or `None` when there is none. Takes no
    /// rtnl lock: for lookups on a pod's path, where an `RTM_GETLINK` would queue behind
    /// every other pod's link requests.
    pub fn peek_link(&self, name: &str) -> Result<Option<Link>> {
        peek(&self.probe, name)
    }
}

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
    let flags = i32::from(flags) as u32;
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

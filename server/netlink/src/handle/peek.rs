//! Reading a link without the rtnl lock. An `RTM_GETLINK` request waits for the rtnl lock
//! like any change: on a node starting many pods at once, behind every other pod's link
//! requests, for up to seconds. `SIOCGIFINDEX`, `SIOCGIFMTU`, `SIOCGIFHWADDR` and
//! `SIOCGIFFLAGS` on a socket of the handle's netns are answered without it
//! (net/core/dev_ioctl.c: under RCU; the MAC under `dev_addr_sem`).
//!
//! Those ioctls first call `dev_load`, which for a name with no device asks the kernel to
//! load a module named after it: `netdev-<name>` when the caller has `CAP_NET_ADMIN` in its
//! effective set, and `<name>` itself with `CAP_SYS_MODULE`. The names come from NADs and
//! annotations, so the calling thread drops both from its effective set for the ioctls
//! (capabilities are per thread) and takes them back after: a missing name is then just
//! `ENODEV`.

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
    /// every other pod's link requests. Four ioctls on the calling thread, which meanwhile
    /// cannot make the kernel load a module (see the module's documentation).
    pub fn peek_link(&self, name: &str) -> Result<Option<Link>> {
        let failed = |source| Error::PeekLink {
            name: name.to_string(),
            step: "lower this thread's capabilities for the ioctls (capset)",
            source,
        };
        let _guard = NoModuleLoading::enter().map_err(failed)?;
        peek(&self.probe, name)
    }
}

/// The ioctl reads of `name`; `None` when there is no such link (or it went meanwhile).
fn peek(fd: &OwnedFd, name: &str) -> Result<Option<Link>> {
    let gone = |e: &Error| e.errno() == Some(libc::ENODEV);
    let index = match ioctl(fd, name, libc::SIOCGIFINDEX, "ioctl SIOCGIFINDEX") {
        Ok(r) => r,
        Err(e) if gone(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let read = |request, what| ioctl(fd, name, request, what);
    let (mtu, hw, flags) = match (|| {
        Ok::<_, Error>((
            read(libc::SIOCGIFMTU, "ioctl SIOCGIFMTU")?,
            read(libc::SIOCGIFHWADDR, "ioctl SIOCGIFHWADDR")?,
            read(libc::SIOCGIFFLAGS, "ioctl SIOCGIFFLAGS")?,
        ))
    })() {
        Ok(r) => r,
        Err(e) if gone(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
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
pub(crate) fn ioctl(
    fd: &OwnedFd,
    name: &str,
    request: libc::Ioctl,
    what: &'static str,
) -> Result<libc::ifreq> {
    let failed = |source| Error::PeekLink {
        name: name.to_string(),
        step: what,
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

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAP_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// While alive, the calling thread's effective set lacks `CAP_NET_ADMIN` and
/// `CAP_SYS_MODULE`; dropping it restores the set it had. Never held across an await: the
/// thread must stay the same.
pub(crate) struct NoModuleLoading {
    saved: Option<[CapData; 2]>,
}

/// `CAP_NET_ADMIN` and `CAP_SYS_MODULE` (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_MODULE: u32 = 16;
/// The effective bits `dev_load` looks at (both in the first word).
const MODULE_LOADING: u32 = (1 << CAP_NET_ADMIN) | (1 << CAP_SYS_MODULE);

impl NoModuleLoading {
    pub(crate) fn enter() -> io::Result<NoModuleLoading> {
        let saved = caps_get()?;
        if saved[0].effective & MODULE_LOADING == 0 {
            return Ok(NoModuleLoading { saved: None });
        }
        let mut lowered = saved;
        lowered[0].effective &= !MODULE_LOADING;
        caps_set(&lowered)?;
        Ok(NoModuleLoading { saved: Some(saved) })
    }
}

impl Drop for NoModuleLoading {
    fn drop(&mut self) {
        // Raising effective bits back within the unchanged permitted set cannot be refused.
        if let Some(saved) = self.saved
            && let Err(e) = caps_set(&saved)
        {
            tracing::error!(error = %e, "could not restore this thread's capabilities after reading a link");
        }
    }
}

fn caps_get() -> io::Result<[CapData; 2]> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget with version 3 writes two CapData (repr(C), the kernel's layout) for
    // the calling thread (pid 0); both pointers are valid for the call.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(data)
}

fn caps_set(data: &[CapData; 2]) -> io::Result<()> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    // SAFETY: capset with version 3 reads two CapData for the calling thread (pid 0); both
    // pointers are valid for the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The effective set of the calling thread, from /proc.
    fn effective() -> u64 {
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("CapEff:")).unwrap();
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    }

    #[test]
    fn module_loading_capabilities_are_dropped_for_the_reads_and_restored_after() {
        let before = effective();
        {
            let _guard = NoModuleLoading::enter().unwrap();
            let inside = effective();
            assert_eq!(inside & u64::from(MODULE_LOADING), 0, "{inside:x}");
            assert_eq!(inside, before & !u64::from(MODULE_LOADING));
        }
        assert_eq!(effective(), before);
    }
}

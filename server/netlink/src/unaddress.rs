//! Removing addresses from a pod's links in one trip into its namespace.
//!
//! A pod's teardown (`plexus-engine`'s answer to the runtime's StopPodSandbox) removes the
//! addresses plexus gave its links before it releases their leases, and leaves the links
//! to the namespace's removal. Through a [`Handle`](crate::Handle) that costs opening the
//! handle (a thread inside the namespace makes the socket, a connection task is started)
//! and, per link, a lookup and a removal, each a round trip through the connection task:
//! about 1.6 ms for two links on the test machine, almost all of it threads waking each
//! other. Here one job on a thread inside the namespace does it all with a socket of its
//! own: each link's index by ioctl (no rtnl lock, module loading off as in
//! [`Handle::peek_link`](crate::Handle::peek_link)), then the `RTM_DELADDR` requests, then
//! their acknowledgements. The kernel handles each request within its `send` (waiting there
//! for the rtnl lock when it is busy, as any netlink client would), so the acknowledgements
//! are queued by the time they are read.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};

use ipnet::IpNet;
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::RouteNetlinkMessage;

use crate::error::{Error, Result};
use crate::handle::addr::address_message;
use crate::handle::peek::{NoModuleLoading, ioctl};
use crate::netns::{self, Netns};

/// How long the job waits to read an acknowledgement. The kernel queues them within each
/// request's `send`, so this only guards against one missing; a busy rtnl lock makes the
/// `send` itself wait.
const ACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The addresses to remove from one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkAddresses {
    /// The link's name in the namespace.
    pub link: String,
    /// Addresses with their prefix lengths, as they were added.
    pub addrs: Vec<IpNet>,
}

/// Removes every listed address from its link in `netns`. A link or address already gone
/// is fine. Returns one result per entry of `links` (a failure is
/// [`Error::DeleteAddress`] or [`Error::PeekLink`] naming the link); the outer error says
/// the job could not run at all (no thread, no socket).
pub async fn remove_addresses(netns: &Netns, links: Vec<LinkAddresses>) -> Result<Vec<Result<()>>> {
    let path = netns.path().to_path_buf();
    netns::run_in(netns, move || in_netns(&links))
        .await?
        .map_err(|source| Error::OpenSocket { path, source })
}

/// The job, on a thread inside the namespace.
fn in_netns(links: &[LinkAddresses]) -> io::Result<Vec<Result<()>>> {
    let socket = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_ROUTE)?;
    // SAFETY: into_raw_fd gives up the socket's ownership of the fd, so it moves here once.
    let fd = unsafe { OwnedFd::from_raw_fd(socket.into_raw_fd()) };
    set_receive_timeout(&fd, ACK_TIMEOUT)?;
    let mut results: Vec<Result<()>> = links.iter().map(|_| Ok(())).collect();
    let indexes = {
        let _no_modules = NoModuleLoading::enter()?;
        links
            .iter()
            .map(
                |l| match ioctl(&fd, &l.link, libc::SIOCGIFINDEX, "ioctl SIOCGIFINDEX") {
                    // SAFETY: SIOCGIFINDEX wrote the ifindex member.
                    Ok(req) => Ok(Some(unsafe { req.ifr_ifru.ifru_ifindex } as u32)),
                    Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
                    Err(e) => Err(e),
                },
            )
            .collect::<Vec<_>>()
    };
    // Sequence number → (entry, address) of each request sent.
    let mut pending: HashMap<u32, (usize, IpNet)> = HashMap::new();
    let mut seq = 0u32;
    for (i, (l, index)) in links.iter().zip(indexes).enumerate() {
        let index = match index {
            Ok(Some(index)) => index,
            Ok(None) => continue,
            Err(e) => {
                results[i] = Err(e);
                continue;
            }
        };
        for addr in &l.addrs {
            seq += 1;
            let bytes = request(index, *addr, seq);
            // SAFETY: `fd` is an open netlink socket; `bytes` is valid for its length.
            let sent = unsafe { libc::send(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) };
            if sent < 0 {
                let e = io::Error::last_os_error();
                results[i] = Err(failed(&l.link, *addr, e));
                continue;
            }
            pending.insert(seq, (i, *addr));
        }
    }
    let mut buf = vec![0u8; 16 * 1024];
    while !pending.is_empty() {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            // A timeout (EAGAIN) or another failure: what is still unanswered failed.
            let e = io::Error::last_os_error();
            for (_, (i, addr)) in pending.drain() {
                let what = io::Error::new(e.kind(), format!("no answer from the kernel: {e}"));
                results[i] = Err(failed(&links[i].link, addr, what));
            }
            break;
        }
        let mut rest = &buf[..n as usize];
        while !rest.is_empty() {
            // Each message starts with its length (the first 4 bytes of its header).
            let Some(len) = rest
                .get(..4)
                .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            else {
                break;
            };
            let len = (len as usize).clamp(4, rest.len());
            let this = &rest[..len];
            rest = &rest[nlmsg_align(len).min(rest.len())..];
            // One the parser does not know is skipped, not the rest of the datagram.
            let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(this) else {
                continue;
            };
            let NetlinkPayload::Error(err) = msg.payload else {
                continue;
            };
            let Some((i, addr)) = pending.remove(&msg.header.sequence_number) else {
                continue;
            };
            match err.code.map(|c| c.get().abs()) {
                // Acknowledged; or already gone: the address, or its link since the ioctl
                // (ENODEV; ENXIO from IPv6).
                None | Some(libc::EADDRNOTAVAIL | libc::ENODEV | libc::ENXIO) => {}
                Some(_) => {
                    let source = rtnetlink::Error::NetlinkError(err);
                    results[i] = Err(Error::DeleteAddress {
                        addr,
                        link: links[i].link.clone(),
                        source,
                    });
                }
            }
        }
    }
    Ok(results)
}

/// An `RTM_DELADDR` request for `addr` on link `index`, acknowledged.
fn request(index: u32, addr: IpNet, seq: u32) -> Vec<u8> {
    let msg = address_message(index, addr);
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK;
    header.sequence_number = seq;
    let mut nl = NetlinkMessage::new(
        header,
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelAddress(msg)),
    );
    nl.finalize();
    let mut bytes = vec![0u8; nl.buffer_len()];
    nl.serialize(&mut bytes);
    bytes
}

/// Netlink messages start on 4-byte boundaries.
fn nlmsg_align(len: usize) -> usize {
    (len + 3) & !3
}

fn failed(link: &str, addr: IpNet, source: io::Error) -> Error {
    Error::RemoveAddress {
        addr,
        link: link.to_string(),
        source,
    }
}

fn set_receive_timeout(fd: &OwnedFd, timeout: std::time::Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: `fd` is an open socket; `tv` is a valid timeval for the call's duration.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    match rc {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

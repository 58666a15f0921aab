//! The exchanges of the client state machine, each over a UDP socket bound to
//! `0.0.0.0:68` inside the pod's netns and to the interface (`SO_BINDTODEVICE`).

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrIn, bind, setsockopt, socket, sockopt,
};
use plexus_netlink::netns::{Netns, run_in};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::message::{self, MAX_REPLY, Reply, parse_reply};
use super::{DhcpError, Granted};

const SERVER_PORT: u16 = 67;
const CLIENT_PORT: u16 = 68;
const FIRST_RETRANSMIT: Duration = Duration::from_secs(1);
const MAX_RETRANSMIT: Duration = Duration::from_secs(16);

/// Opens the client socket for `ifname` inside `netns` (on a dedicated thread).
pub(crate) async fn open(netns: &Netns, ifname: &str) -> Result<UdpSocket, DhcpError> {
    let dev = OsString::from(ifname);
    let std_sock = run_in(netns, move || -> Result<std::net::UdpSocket, DhcpError> {
        let io = |op| {
            move |e: nix::Error| DhcpError::Io {
                op,
                source: e.into(),
            }
        };
        let fd = socket(
            AddressFamily::Inet,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(io("socket"))?;
        // Two DHCP interfaces of one pod each bind port 68, told apart by device.
        setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(io("SO_REUSEADDR"))?;
        setsockopt(&fd, sockopt::Broadcast, &true).map_err(io("SO_BROADCAST"))?;
        setsockopt(&fd, sockopt::BindToDevice, &dev).map_err(io("SO_BINDTODEVICE"))?;
        let any = SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, CLIENT_PORT));
        bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &any).map_err(io("bind 0.0.0.0:68"))?;
        Ok(std::net::UdpSocket::from(fd))
    })
    .await
    .map_err(|e| DhcpError::Netns(e.to_string()))??;
    UdpSocket::from_std(std_sock).map_err(|source| DhcpError::Io {
        op: "register",
        source,
    })
}

/// Sends `msg` to `dest` and retransmits with backoff until `accept` takes a reply or
/// `deadline` passes.
async fn exchange<T>(
    sock: &UdpSocket,
    msg: &[u8],
    dest: Ipv4Addr,
    xid: u32,
    mac: [u8; 6],
    deadline: Instant,
    mut accept: impl FnMut(Reply) -> Option<Result<T, DhcpError>>,
) -> Option<Result<T, DhcpError>> {
    let to = SocketAddr::V4(SocketAddrV4::new(dest, SERVER_PORT));
    let mut wait = FIRST_RETRANSMIT;
    let mut buf = vec![0u8; MAX_REPLY];
    loop {
        if let Err(source) = sock.send_to(msg, to).await {
            return Some(Err(DhcpError::Io { op: "send", source }));
        }
        let next = (Instant::now() + wait).min(deadline);
        loop {
            match tokio::time::timeout_at(next, sock.recv_from(&mut buf)).await {
                Err(_) => break,
                Ok(Err(source)) => {
                    return Some(Err(DhcpError::Io {
                        op: "receive",
                        source,
                    }));
                }
                Ok(Ok((n, _))) => {
                    if let Some(r) = parse_reply(&buf[..n], xid, mac)
                        && let Some(out) = accept(r)
                    {
                        return Some(out);
                    }
                }
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        wait = (wait * 2).min(MAX_RETRANSMIT);
    }
}

fn nak(server: Ipv4Addr, message: String) -> Option<Result<Granted, DhcpError>> {
    Some(Err(DhcpError::Nak { server, message }))
}

/// INIT → SELECTING → REQUESTING → BOUND: DISCOVER, take the first OFFER, REQUEST it,
/// wait for its ACK (or NAK). `timeout` bounds the whole of it.
pub async fn acquire(
    sock: &UdpSocket,
    mac: [u8; 6],
    timeout: Duration,
) -> Result<Granted, DhcpError> {
    let xid: u32 = rand_xid();
    let bcast = Ipv4Addr::BROADCAST;
    let deadline = Instant::now() + timeout;
    let msg = message::discover(xid, mac)?;
    let (offered, server) = exchange(sock, &msg, bcast, xid, mac, deadline, |r| match r {
        Reply::Offer { address, server } => Some(Ok((address, server))),
        _ => None,
    })
    .await
    .ok_or(DhcpError::Timeout {
        expected: "OFFER",
        timeout,
    })??;
    let msg = message::request_selecting(xid, mac, offered, server)?;
    exchange(sock, &msg, bcast, xid, mac, deadline, |r| match r {
        Reply::Ack(g) if g.address == offered => Some(Ok(g)),
        Reply::Nak { server: s, message } if s == server || s.is_unspecified() => nak(s, message),
        _ => None,
    })
    .await
    .ok_or(DhcpError::Timeout {
        expected: "ACK",
        timeout,
    })?
}

/// RENEWING (unicast to the server, `rebinding == false`) or REBINDING (broadcast): one
/// REQUEST exchange for `lease`'s address within `timeout`.
pub async fn renew(
    sock: &UdpSocket,
    mac: [u8; 6],
    lease: &Granted,
    rebinding: bool,
    timeout: Duration,
) -> Result<Granted, DhcpError> {
    let xid = rand_xid();
    let msg = message::request_renew(xid, mac, lease.address, rebinding)?;
    let dest = if rebinding {
        Ipv4Addr::BROADCAST
    } else {
        lease.server_id
    };
    exchange(
        sock,
        &msg,
        dest,
        xid,
        mac,
        Instant::now() + timeout,
        |r| match r {
            Reply::Ack(g) if g.address == lease.address => Some(Ok(g)),
            Reply::Nak { server, message } => nak(server, message),
            _ => None,
        },
    )
    .await
    .ok_or(DhcpError::Timeout {
        expected: "ACK",
        timeout,
    })?
}

/// How long [`release`] waits for its datagram to leave (address resolution).
const RELEASE_FLUSH: Duration = Duration::from_secs(2);

/// Sends DHCPRELEASE to the lease's server (no reply is defined) and waits until the
/// datagram has left the socket: a unicast may sit in the neighbour queue waiting for ARP,
/// and the caller deletes the interface right after, which would drop it.
pub async fn release(sock: &UdpSocket, mac: [u8; 6], lease: &Granted) -> Result<(), DhcpError> {
    let msg = message::release(rand_xid(), mac, lease.address, lease.server_id)?;
    let to = SocketAddr::V4(SocketAddrV4::new(lease.server_id, SERVER_PORT));
    sock.send_to(&msg, to)
        .await
        .map_err(|source| DhcpError::Io {
            op: "send RELEASE",
            source,
        })?;
    let until = Instant::now() + RELEASE_FLUSH;
    while unsent_bytes(sock) > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Bytes still held by the socket's send side (`SIOCOUTQ`, udp(7)); 0 on error.
fn unsent_bytes(sock: &UdpSocket) -> i32 {
    use std::os::fd::AsRawFd;
    let mut n: nix::libc::c_int = 0;
    // SAFETY: SIOCOUTQ (== TIOCOUTQ) on a UDP socket writes one c_int to the pointer,
    // which points at a live local; the fd is owned by `sock` for the whole call.
    let rc = unsafe { nix::libc::ioctl(sock.as_raw_fd(), nix::libc::TIOCOUTQ, &mut n) };
    if rc < 0 { 0 } else { n }
}

/// A fresh transaction id: std's per-instance random hash keys, folded to 32 bits.
fn rand_xid() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let v = h.finish();
    (v ^ (v >> 32)) as u32
}

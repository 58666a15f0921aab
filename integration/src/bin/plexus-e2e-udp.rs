//! Test helper: sends or receives one UDP multicast datagram, run by the end-to-end tests
//! inside a pod's network namespace with `nsenter --net=<pod netns>` (so no test thread
//! ever enters a namespace).
//!
//! `plexus-e2e-udp recv <group> <port> <interface-ip> <timeout-ms>` joins the group on the
//! interface, prints `ready`, then prints `<payload> from <source>` for the first datagram
//! (exit 0) or exits 1 on timeout. `plexus-e2e-udp send <group> <port> <source-ip> <payload>`
//! sends the payload three times, 100 ms apart, from the given address (Linux picks the
//! outgoing interface of a multicast datagram from the bound source address).

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use anyhow::{Context, bail};

fn ip(s: &str) -> anyhow::Result<Ipv4Addr> {
    s.parse()
        .with_context(|| format!("{s:?} is not an IPv4 address"))
}

fn recv(group: Ipv4Addr, port: u16, iface: Ipv4Addr, timeout: Duration) -> anyhow::Result<()> {
    let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
        .with_context(|| format!("bind 0.0.0.0:{port}"))?;
    sock.join_multicast_v4(&group, &iface)
        .with_context(|| format!("join {group} on {iface}"))?;
    sock.set_read_timeout(Some(timeout))?;
    println!("ready");
    std::io::stdout().flush()?;
    let mut buf = [0u8; 1500];
    let (n, from) = sock
        .recv_from(&mut buf)
        .with_context(|| format!("no datagram to {group}:{port} within {timeout:?}"))?;
    println!("{} from {from}", String::from_utf8_lossy(&buf[..n]));
    Ok(())
}

fn send(group: Ipv4Addr, port: u16, source: Ipv4Addr, payload: &str) -> anyhow::Result<()> {
    let sock =
        UdpSocket::bind(SocketAddrV4::new(source, 0)).with_context(|| format!("bind {source}"))?;
    sock.set_multicast_ttl_v4(1)?;
    for _ in 0..3 {
        sock.send_to(payload.as_bytes(), SocketAddrV4::new(group, port))
            .with_context(|| format!("send to {group}:{port}"))?;
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["recv", group, port, iface, ms] => recv(
            ip(group)?,
            port.parse()?,
            ip(iface)?,
            Duration::from_millis(ms.parse()?),
        ),
        ["send", group, port, source, payload] => {
            send(ip(group)?, port.parse()?, ip(source)?, payload)
        }
        _ => bail!(
            "usage: plexus-e2e-udp recv <group> <port> <interface-ip> <timeout-ms> | \
             send <group> <port> <source-ip> <payload>"
        ),
    }
}

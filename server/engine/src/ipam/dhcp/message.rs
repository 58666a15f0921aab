//! Building our requests and reading the server's replies (pure; `dhcproto` does the
//! wire format).

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Encodable};

use super::{DhcpError, Granted};

/// Options we ask for (option 55).
const WANTED: &[OptionCode] = &[
    OptionCode::SubnetMask,
    OptionCode::Router,
    OptionCode::DomainNameServer,
    OptionCode::DomainName,
    OptionCode::ClasslessStaticRoute,
    OptionCode::AddressLeaseTime,
    OptionCode::Renewal,
    OptionCode::Rebinding,
];

/// Longest datagram read (RFC 2131 §2: clients accept at least 576 bytes).
pub(crate) const MAX_REPLY: usize = 1500;

fn base(xid: u32, mac: [u8; 6], ciaddr: Ipv4Addr, kind: MessageType, broadcast: bool) -> Message {
    let u = Ipv4Addr::UNSPECIFIED;
    let mut m = Message::new_with_id(xid, ciaddr, u, u, u, &mac);
    m.set_opcode(Opcode::BootRequest);
    if broadcast {
        m.set_flags(Flags::default().set_broadcast());
    }
    let opts = m.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    let mut id = vec![1u8];
    id.extend_from_slice(&mac);
    opts.insert(DhcpOption::ClientIdentifier(id));
    m
}

fn encode(m: &Message) -> Result<Vec<u8>, DhcpError> {
    m.to_vec().map_err(|e| DhcpError::Encode(e.to_string()))
}

fn want(m: &mut Message) {
    m.opts_mut()
        .insert(DhcpOption::ParameterRequestList(WANTED.to_vec()));
}

/// DHCPDISCOVER (broadcast flag set).
pub(crate) fn discover(xid: u32, mac: [u8; 6]) -> Result<Vec<u8>, DhcpError> {
    let mut m = base(xid, mac, Ipv4Addr::UNSPECIFIED, MessageType::Discover, true);
    want(&mut m);
    encode(&m)
}

/// DHCPREQUEST in SELECTING: names the offered address and the chosen server.
pub(crate) fn request_selecting(
    xid: u32,
    mac: [u8; 6],
    offered: Ipv4Addr,
    server: Ipv4Addr,
) -> Result<Vec<u8>, DhcpError> {
    let mut m = base(xid, mac, Ipv4Addr::UNSPECIFIED, MessageType::Request, true);
    m.opts_mut().insert(DhcpOption::RequestedIpAddress(offered));
    m.opts_mut().insert(DhcpOption::ServerIdentifier(server));
    want(&mut m);
    encode(&m)
}

/// DHCPREQUEST in RENEWING (unicast) or REBINDING (broadcast): `ciaddr` set, no server
/// identifier or requested address (RFC 2131 §4.3.2).
pub(crate) fn request_renew(
    xid: u32,
    mac: [u8; 6],
    ciaddr: Ipv4Addr,
    rebinding: bool,
) -> Result<Vec<u8>, DhcpError> {
    let mut m = base(xid, mac, ciaddr, MessageType::Request, rebinding);
    want(&mut m);
    encode(&m)
}

/// DHCPRELEASE: `ciaddr` and the server identifier.
pub(crate) fn release(
    xid: u32,
    mac: [u8; 6],
    ciaddr: Ipv4Addr,
    server: Ipv4Addr,
) -> Result<Vec<u8>, DhcpError> {
    let mut m = base(xid, mac, ciaddr, MessageType::Release, false);
    m.opts_mut().insert(DhcpOption::ServerIdentifier(server));
    encode(&m)
}

/// A reply meant for us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// DHCPOFFER: the address and the offering server.
    Offer {
        /// `yiaddr`.
        address: Ipv4Addr,
        /// Option 54.
        server: Ipv4Addr,
    },
    /// DHCPACK.
    Ack(Granted),
    /// DHCPNAK with its server and message.
    Nak {
        /// Option 54 (unspecified when absent).
        server: Ipv4Addr,
        /// Option 56.
        message: String,
    },
}

/// Decodes `bytes`; `None` when it is not a well-formed reply with our `xid` and `chaddr`,
/// or lacks what its type requires (server id; lease time for an ACK).
pub fn parse_reply(bytes: &[u8], xid: u32, mac: [u8; 6]) -> Option<Reply> {
    let m = Message::from_bytes(bytes).ok()?;
    if m.opcode() != Opcode::BootReply || m.xid() != xid || m.chaddr().get(..6)? != mac {
        return None;
    }
    let opts = m.opts();
    let server = match opts.get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(s)) => Some(*s),
        _ => None,
    };
    match opts.msg_type()? {
        MessageType::Offer => Some(Reply::Offer {
            address: m.yiaddr(),
            server: server?,
        }),
        MessageType::Nak => Some(Reply::Nak {
            server: server.unwrap_or(Ipv4Addr::UNSPECIFIED),
            message: match opts.get(OptionCode::Message) {
                Some(DhcpOption::Message(s)) => s.clone(),
                _ => String::new(),
            },
        }),
        MessageType::Ack => {
            let lease_secs = match opts.get(OptionCode::AddressLeaseTime) {
                Some(DhcpOption::AddressLeaseTime(t)) => *t,
                _ => return None,
            };
            let prefix_len = match opts.get(OptionCode::SubnetMask) {
                Some(DhcpOption::SubnetMask(mask)) => {
                    let bits = u32::from(*mask);
                    // A mask must be contiguous ones.
                    if bits.leading_ones() + bits.trailing_zeros() != 32 {
                        return None;
                    }
                    u8::try_from(bits.leading_ones()).ok()?
                }
                _ => 24,
            };
            let router = match opts.get(OptionCode::Router) {
                Some(DhcpOption::Router(r)) => r.first().copied(),
                _ => None,
            };
            let classless_routes = match opts.get(OptionCode::ClasslessStaticRoute) {
                Some(DhcpOption::ClasslessStaticRoute(r)) => r.clone(),
                _ => Vec::new(),
            };
            let dns = match opts.get(OptionCode::DomainNameServer) {
                Some(DhcpOption::DomainNameServer(d)) => d.clone(),
                _ => Vec::new(),
            };
            let domain = match opts.get(OptionCode::DomainName) {
                Some(DhcpOption::DomainName(d)) => Some(d.clone()),
                _ => None,
            };
            let (t1d, t2d) = if lease_secs == u32::MAX {
                (u32::MAX, u32::MAX)
            } else {
                (lease_secs / 2, (u64::from(lease_secs) * 7 / 8) as u32)
            };
            let mut t1 = match opts.get(OptionCode::Renewal) {
                Some(DhcpOption::Renewal(t)) => *t,
                _ => t1d,
            };
            let mut t2 = match opts.get(OptionCode::Rebinding) {
                Some(DhcpOption::Rebinding(t)) => *t,
                _ => t2d,
            };
            // Keep T1 <= T2 <= lease whatever the server said.
            t2 = t2.min(lease_secs);
            t1 = t1.min(t2);
            Some(Reply::Ack(Granted {
                address: m.yiaddr(),
                prefix_len,
                server_id: server?,
                router,
                classless_routes,
                dns,
                domain,
                lease_secs,
                t1_secs: t1,
                t2_secs: t2,
            }))
        }
        _ => None,
    }
}

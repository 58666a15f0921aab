//! Address operations of [`Handle`].

use std::net::IpAddr;

use ipnet::IpNet;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};

use super::Handle;
use crate::dump;
use crate::error::{Error, Result, nl_errno};
use crate::link::Link;

/// An address configured on a link.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    /// Index of the link carrying it.
    pub index: u32,
    /// Address and prefix length.
    pub addr: IpNet,
    /// Scope (`0` universe, `253` link, `254` host).
    pub scope: u8,
}

impl Address {
    fn from_message(msg: &AddressMessage) -> Option<Address> {
        // IFA_LOCAL is the interface's own address on point-to-point links; IFA_ADDRESS
        // is the peer there and equal to the local one otherwise (rtnetlink(7)).
        let mut address = None;
        let mut local = None;
        for attr in &msg.attributes {
            match attr {
                AddressAttribute::Address(a) => address = Some(*a),
                AddressAttribute::Local(a) => local = Some(*a),
                _ => {}
            }
        }
        let ip: IpAddr = local.or(address)?;
        Some(Address {
            index: msg.header.index,
            addr: IpNet::new(ip, msg.header.prefix_len).ok()?,
            scope: msg.header.scope.into(),
        })
    }
}

impl Handle {
    /// All addresses of the netns, or only those of link index `index`.
    pub async fn addresses(&self, index: Option<u32>) -> Result<Vec<Address>> {
        let mut all = dump::dump(
            &self.nl,
            "addresses",
            || RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            |m| match m {
                RouteNetlinkMessage::NewAddress(a) => Address::from_message(&a),
                _ => None,
            },
        )
        .await?;
        if let Some(i) = index {
            all.retain(|a| a.index == i);
        }
        Ok(all)
    }

    /// Adds `addr` to `link` (IPv4 gets the broadcast address like `ip addr add ... brd +`
    /// and netlink.AddrAdd). `EEXIST` is returned as an error; check [`Error::is_exists`].
    pub async fn add_address(&self, link: &Link, addr: IpNet) -> Result<()> {
        self.nl
            .address()
            .add(link.index, addr.addr(), addr.prefix_len())
            .execute()
            .await
            .map_err(|source| Error::AddAddress {
                addr,
                link: link.name.clone(),
                source,
            })
    }

    /// Removes `addr` from `link`; an address already gone is not an error.
    pub async fn delete_address(&self, link: &Link, addr: IpNet) -> Result<()> {
        match self
            .nl
            .address()
            .del(address_message(link.index, addr))
            .execute()
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if nl_errno(&e) == Some(libc::EADDRNOTAVAIL) => Ok(()),
            Err(source) => Err(Error::DeleteAddress {
                addr,
                link: link.name.clone(),
                source,
            }),
        }
    }
}

/// The message naming `addr` on link `index` (what `RTM_DELADDR` takes), shared by
/// [`Handle::delete_address`] and `unaddress`.
pub(crate) fn address_message(index: u32, addr: IpNet) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.index = index;
    msg.header.prefix_len = addr.prefix_len();
    msg.header.family = match addr {
        IpNet::V4(_) => rtnetlink::packet_route::AddressFamily::Inet,
        IpNet::V6(_) => rtnetlink::packet_route::AddressFamily::Inet6,
    };
    msg.attributes.push(AddressAttribute::Local(addr.addr()));
    msg.attributes.push(AddressAttribute::Address(addr.addr()));
    msg
}

//! Link operations of [`Handle`]: lookup, dump, create, change, move, delete, group delete.

use std::os::fd::{AsFd, AsRawFd};

use futures::TryStreamExt;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::LinkMessage;
use rtnetlink::{LinkMessageBuilder, LinkUnspec};

use super::Handle;
use crate::dump;
use crate::error::{Error, Result, nl_errno};
use crate::link::Link;
use crate::mac::MacAddr;
use crate::netns::Netns;

/// Attribute changes applied to a link in one `RTM_SETLINK` (fields left `None` are kept).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkChange {
    /// New name.
    pub name: Option<String>,
    /// Admin state.
    pub up: Option<bool>,
    /// MTU.
    pub mtu: Option<u32>,
    /// Hardware address.
    pub mac: Option<MacAddr>,
    /// `Some(Some(i))` enslaves to master `i`, `Some(None)` releases from its master.
    pub master: Option<Option<u32>>,
    /// Link group.
    pub group: Option<u32>,
    /// Promiscuous mode.
    pub promisc: Option<bool>,
    /// Interface alias (`IFLA_IFALIAS`).
    pub alias: Option<String>,
}

impl LinkChange {
    /// No change.
    pub fn new() -> LinkChange {
        LinkChange::default()
    }
    /// Rename.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Bring up (`true`) or down.
    pub fn up(mut self, up: bool) -> Self {
        self.up = Some(up);
        self
    }
    /// Set the MTU.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }
    /// Set the MAC.
    pub fn mac(mut self, mac: MacAddr) -> Self {
        self.mac = Some(mac);
        self
    }
    /// Enslave to `master` (`None` releases).
    pub fn master(mut self, master: Option<u32>) -> Self {
        self.master = Some(master);
        self
    }
    /// Set the link group.
    pub fn group(mut self, group: u32) -> Self {
        self.group = Some(group);
        self
    }
    /// Set promiscuous mode.
    pub fn promisc(mut self, on: bool) -> Self {
        self.promisc = Some(on);
        self
    }
    /// Set the alias.
    pub fn alias(mut self, alias: impl Into<String>) -> Self {
        self.alias = Some(alias.into());
        self
    }

    /// Adds the changes to a link message builder.
    pub(crate) fn apply<T>(&self, mut b: LinkMessageBuilder<T>) -> LinkMessageBuilder<T> {
        if let Some(name) = &self.name {
            b = b.name(name.clone());
        }
        if let Some(mtu) = self.mtu {
            b = b.mtu(mtu);
        }
        if let Some(mac) = self.mac {
            b = b.address(mac.0.to_vec());
        }
        match self.master {
            Some(Some(m)) => b = b.controller(m),
            Some(None) => b = b.nocontroller(),
            None => {}
        }
        if let Some(g) = self.group {
            b = b.link_group(g);
        }
        if let Some(p) = self.promisc {
            b = b.promiscuous(p);
        }
        if let Some(alias) = &self.alias {
            b = b.alias(alias.clone());
        }
        match self.up {
            Some(true) => b = b.up(),
            Some(false) => b = b.down(),
            None => {}
        }
        b
    }

    fn what(&self) -> &'static str {
        match self {
            LinkChange { name: Some(_), .. } => "name",
            LinkChange { mac: Some(_), .. } => "mac",
            LinkChange { mtu: Some(_), .. } => "mtu",
            LinkChange {
                master: Some(_), ..
            } => "master",
            LinkChange { group: Some(_), .. } => "group",
            LinkChange {
                promisc: Some(_), ..
            } => "promisc",
            LinkChange { alias: Some(_), .. } => "alias",
            LinkChange { up: Some(_), .. } => "admin state",
            _ => "nothing",
        }
    }
}

impl Handle {
    /// All links of the netns (dump, retried when interrupted).
    pub async fn links(&self) -> Result<Vec<Link>> {
        dump::dump(
            &self.nl,
            "links",
            || RouteNetlinkMessage::GetLink(LinkMessage::default()),
            |m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(Link::from_message(&l)),
                _ => None,
            },
        )
        .await
    }

    /// The link named `name`, or `None`.
    pub async fn try_find_link(&self, name: &str) -> Result<Option<Link>> {
        let req = self.nl.link().get().match_name(name).execute();
        self.first_link(req, name).await
    }

    /// The link named `name`; [`Error::LinkNotFound`] when missing.
    pub async fn find_link(&self, name: &str) -> Result<Link> {
        self.try_find_link(name)
            .await?
            .ok_or_else(|| Error::LinkNotFound {
                name: name.to_string(),
                netns: self.ns_name(),
            })
    }

    /// The link with index `index`, or `None`.
    pub async fn try_link_by_index(&self, index: u32) -> Result<Option<Link>> {
        let req = self.nl.link().get().match_index(index).execute();
        self.first_link(req, &format!("#{index}")).await
    }

    async fn first_link(
        &self,
        req: impl futures::Stream<Item = Result<LinkMessage, rtnetlink::Error>>,
        what: &str,
    ) -> Result<Option<Link>> {
        futures::pin_mut!(req);
        match req.try_next().await {
            Ok(Some(msg)) => Ok(Some(Link::from_message(&msg))),
            Ok(None) => Ok(None),
            Err(e) if nl_errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(source) => Err(Error::GetLink {
                name: what.to_string(),
                source,
            }),
        }
    }

    /// Sends an `RTM_NEWLINK` create request (`NLM_F_CREATE|NLM_F_EXCL`).
    pub(crate) async fn create_link(&self, kind: &str, name: &str, msg: LinkMessage) -> Result<()> {
        self.nl
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|source| Error::CreateLink {
                kind: kind.to_string(),
                name: name.to_string(),
                source,
            })
    }

    /// Applies `change` to `link` in one request.
    pub async fn set_link(&self, link: &Link, change: &LinkChange) -> Result<()> {
        let msg = change.apply(LinkUnspec::new_with_index(link.index)).build();
        self.nl
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|source| Error::SetLink {
                name: link.name.clone(),
                what: change.what(),
                source,
            })
    }

    /// Brings `link` up.
    pub async fn set_up(&self, link: &Link) -> Result<()> {
        self.set_link(link, &LinkChange::new().up(true)).await
    }

    /// Brings `link` down.
    pub async fn set_down(&self, link: &Link) -> Result<()> {
        self.set_link(link, &LinkChange::new().up(false)).await
    }

    /// Moves `link` into `target` and applies `change` there, in one `RTM_SETLINK`
    /// (`IFLA_NET_NS_FD`; an `IFLA_IFNAME` in the same request names the device in the
    /// target, and `do_setlink` applies mtu/mac/group/flags after the move,
    /// net/core/rtnetlink.c). Moving closes the device, so it arrives down unless
    /// `change.up` is set.
    pub async fn move_link(&self, link: &Link, target: &Netns, change: &LinkChange) -> Result<()> {
        let fd = target.as_fd();
        let msg = change
            .apply(LinkUnspec::new_with_index(link.index).setns_by_fd(fd.as_raw_fd()))
            .build();
        self.nl
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|source| Error::SetLink {
                name: link.name.clone(),
                what: "netns",
                source,
            })
    }

    /// Deletes `link`; a link already gone is not an error.
    pub async fn delete_link(&self, link: &Link) -> Result<()> {
        match self.nl.link().del(link.index).execute().await {
            Ok(()) => Ok(()),
            Err(e) if nl_errno(&e) == Some(libc::ENODEV) => Ok(()),
            Err(source) => Err(Error::DeleteLink {
                name: link.name.clone(),
                source,
            }),
        }
    }

    /// Deletes the link named `name` if it exists; returns whether it did.
    pub async fn delete_link_by_name(&self, name: &str) -> Result<bool> {
        match self.try_find_link(name).await? {
            Some(link) => self.delete_link(&link).await.map(|()| true),
            None => Ok(false),
        }
    }

    /// Deletes every link of group `group` in this netns in one request (`RTM_DELLINK`
    /// with ifindex 0 and `IFLA_GROUP`, `rtnl_group_dellink` in net/core/rtnetlink.c): the
    /// devices are unregistered together, so this costs about one link deletion instead of
    /// one per link. An empty group is not an error. Group 0 (every device's default) is
    /// refused.
    pub async fn delete_group(&self, group: u32) -> Result<()> {
        if group == 0 {
            return Err(Error::InvalidSpec {
                kind: "link group",
                reason: "group 0 is the default group of every device; refusing to delete it"
                    .into(),
            });
        }
        let msg = LinkUnspec::new_with_index(0).link_group(group).build();
        match self.nl.link().del_with_message(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if nl_errno(&e) == Some(libc::ENODEV) => Ok(()),
            Err(source) => Err(Error::DeleteGroup { group, source }),
        }
    }
}

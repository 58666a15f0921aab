//! Route operations of [`Handle`].

use std::net::IpAddr;

use ipnet::IpNet;
use rtnetlink::RouteMessageBuilder;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteProtocol, RouteScope,
};

use super::Handle;
use crate::dump;
use crate::error::{Error, Result, nl_errno};
use crate::link::Link;

/// The main routing table id.
pub const TABLE_MAIN: u32 = 254;

/// What [`Handle::add_route`] does when the route already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExists {
    /// Return the `EEXIST` error.
    Fail,
    /// Treat it as success.
    Ignore,
}

/// A route to add or delete (CNI `routes` entries map onto it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Destination prefix (`0.0.0.0/0` for a default route).
    pub dst: IpNet,
    /// Next hop; `None` for an on-link route.
    pub gateway: Option<IpAddr>,
    /// Metric.
    pub priority: Option<u32>,
    /// Table; `None` is main.
    pub table: Option<u32>,
    /// Scope (`0` universe, `253` link, `254` host); `None` is universe.
    pub scope: Option<u8>,
    /// Route MTU metric.
    pub mtu: Option<u32>,
    /// Advertised MSS metric.
    pub advmss: Option<u32>,
    /// Preferred source address.
    pub src: Option<IpAddr>,
}

impl RouteSpec {
    /// A route to `dst` with no gateway and defaults elsewhere.
    pub fn new(dst: IpNet) -> RouteSpec {
        RouteSpec {
            dst,
            gateway: None,
            priority: None,
            table: None,
            scope: None,
            mtu: None,
            advmss: None,
            src: None,
        }
    }

    /// With a gateway.
    pub fn via(mut self, gw: IpAddr) -> RouteSpec {
        self.gateway = Some(gw);
        self
    }

    fn message(&self, oif: u32) -> Result<RouteMessage, String> {
        let mut b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(self.dst.network(), self.dst.prefix_len())
            .map_err(|e| e.to_string())?
            .output_interface(oif)
            // netlink.RouteAdd (used by the reference plugins) sends RTPROT_BOOT.
            .protocol(RouteProtocol::Boot)
            .scope(RouteScope::from(self.scope.unwrap_or(0)))
            .table_id(self.table.unwrap_or(TABLE_MAIN));
        if let Some(gw) = self.gateway {
            b = b.gateway(gw).map_err(|e| e.to_string())?;
        }
        if let Some(src) = self.src {
            b = b.pref_source(src).map_err(|e| e.to_string())?;
        }
        if let Some(p) = self.priority {
            b = b.priority(p);
        }
        let mut msg = b.build();
        let mut metrics = Vec::new();
        if let Some(m) = self.mtu {
            metrics.push(RouteMetric::Mtu(m));
        }
        if let Some(m) = self.advmss {
            metrics.push(RouteMetric::Advmss(m));
        }
        if !metrics.is_empty() {
            msg.attributes.push(RouteAttribute::Metrics(metrics));
        }
        Ok(msg)
    }
}

/// A route as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    /// Destination prefix.
    pub dst: IpNet,
    /// Next hop.
    pub gateway: Option<IpAddr>,
    /// Output link index.
    pub oif: Option<u32>,
    /// Table id.
    pub table: u32,
    /// Metric.
    pub priority: Option<u32>,
    /// Scope.
    pub scope: u8,
    /// Protocol (`2` kernel, `3` boot, `4` static).
    pub protocol: u8,
    /// Route type (`1` unicast, `2` local, ...).
    pub kind: u8,
    /// Preferred source.
    pub src: Option<IpAddr>,
    /// MTU metric.
    pub mtu: Option<u32>,
}

impl Route {
    fn from_message(msg: &RouteMessage) -> Option<Route> {
        let h = &msg.header;
        let mut dst = None;
        let mut route = Route {
            dst: IpNet::default(),
            gateway: None,
            oif: None,
            table: u32::from(h.table),
            priority: None,
            scope: h.scope.into(),
            protocol: h.protocol.into(),
            kind: h.kind.into(),
            src: None,
            mtu: None,
        };
        for attr in &msg.attributes {
            match attr {
                RouteAttribute::Destination(a) => dst = ip_of(a),
                RouteAttribute::Gateway(a) => route.gateway = ip_of(a),
                RouteAttribute::Oif(i) => route.oif = Some(*i),
                RouteAttribute::Table(t) => route.table = *t,
                RouteAttribute::Priority(p) => route.priority = Some(*p),
                RouteAttribute::PrefSource(a) => route.src = ip_of(a),
                RouteAttribute::Metrics(ms) => {
                    for m in ms {
                        if let RouteMetric::Mtu(v) = m {
                            route.mtu = Some(*v);
                        }
                    }
                }
                _ => {}
            }
        }
        let dst = match (dst, h.address_family) {
            (Some(ip), _) => ip,
            (None, rtnetlink::packet_route::AddressFamily::Inet) => IpAddr::from([0u8; 4]),
            (None, rtnetlink::packet_route::AddressFamily::Inet6) => IpAddr::from([0u16; 8]),
            _ => return None,
        };
        route.dst = IpNet::new(dst, h.destination_prefix_length).ok()?;
        Some(route)
    }

    /// True for a default route (`/0`).
    pub fn is_default(&self) -> bool {
        self.dst.prefix_len() == 0
    }
}

fn invalid_route(reason: String) -> Error {
    Error::InvalidSpec {
        kind: "route",
        reason,
    }
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

impl Handle {
    /// All IPv4 and IPv6 routes of every table (dump, retried when interrupted).
    pub async fn routes(&self) -> Result<Vec<Route>> {
        dump::dump(
            &self.nl,
            "routes",
            || {
                let mut m = RouteMessage::default();
                m.header.table = RouteHeader::RT_TABLE_UNSPEC;
                RouteNetlinkMessage::GetRoute(m)
            },
            |m| match m {
                RouteNetlinkMessage::NewRoute(r) => Route::from_message(&r),
                _ => None,
            },
        )
        .await
    }

    /// Default routes (`/0`, any table) whose output link is `index`; `ipv6` picks the
    /// family (`None` for both).
    pub async fn default_routes(&self, index: u32, ipv6: Option<bool>) -> Result<Vec<Route>> {
        let mut routes = self.routes().await?;
        routes.retain(|r| {
            r.is_default()
                && r.oif == Some(index)
                && r.kind == 1
                && ipv6.is_none_or(|v6| v6 == r.dst.addr().is_ipv6())
        });
        Ok(routes)
    }

    /// Adds `route` via `link`. With [`OnExists::Ignore`] an existing route is success.
    pub async fn add_route(
        &self,
        link: &Link,
        route: &RouteSpec,
        on_exists: OnExists,
    ) -> Result<()> {
        let err = |source| Error::AddRoute {
            dst: route.dst,
            link: link.name.clone(),
            source,
        };
        let msg = route.message(link.index).map_err(invalid_route)?;
        match self.nl.route().add(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if on_exists == OnExists::Ignore && nl_errno(&e) == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    /// Deletes `route` via `link`; a route already gone is not an error.
    pub async fn delete_route(&self, link: &Link, route: &RouteSpec) -> Result<()> {
        let err = |source| Error::DeleteRoute {
            dst: route.dst,
            link: link.name.clone(),
            source,
        };
        let mut msg = route.message(link.index).map_err(invalid_route)?;
        // Match any protocol/scope: RTM_DELROUTE compares only what is set (fib_table_delete).
        msg.header.protocol = RouteProtocol::Unspec;
        msg.header.scope = RouteScope::NoWhere;
        match self.nl.route().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if nl_errno(&e) == Some(libc::ESRCH) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }
}

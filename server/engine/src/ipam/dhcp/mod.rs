//! Native `dhcp` IPAM: a DHCPv4 client run by plexusd itself, so `"ipam": {"type": "dhcp"}`
//! works without the reference plugin's daemon.
//!
//! Message encoding and decoding is `dhcproto`'s; the client state machine is ours
//! (RFC 2131 §4.4, figure 5):
//!
//! ```text
//!  INIT --DISCOVER(bcast)--> SELECTING --OFFER--> REQUESTING --REQUEST(bcast)--> ACK: BOUND
//!                                                           \--NAK--> attach fails
//!  BOUND --T1--> RENEWING  --REQUEST(unicast to server id, ciaddr)--> ACK: BOUND (times reset)
//!  RENEWING --T2--> REBINDING --REQUEST(bcast, ciaddr)--> ACK: BOUND
//!  RENEWING/REBINDING --NAK or expiry--> address removed, INIT again (DISCOVER..ACK),
//!                                          retried each renewer pass until it binds
//!  BOUND --teardown--> RELEASE(unicast to server id)
//! ```
//!
//! Every exchange runs on a UDP socket bound to `0.0.0.0:68` inside the pod's netns with
//! `SO_BINDTODEVICE` to the new interface and `SO_BROADCAST`; requests carry the
//! interface's MAC as `chaddr` and as client identifier (type 1), set the broadcast flag
//! (the interface has no address while SELECTING/REQUESTING) and accept only replies with
//! our `xid` and `chaddr`. Each exchange retransmits with exponential backoff (1 s, 2 s, 4 s,
//! ... capped at 16 s, RFC 2131 §4.1) until the request timeout (`ipam.timeout` seconds,
//! default [`DEFAULT_TIMEOUT`]) and then fails naming the interface and the network.
//!
//! Leases live in one small JSON file per sandbox and interface below the state directory
//! ([`LeaseStore`]); the background [`run_renewer`] task of plexusd renews them at T1 and
//! rebinds at T2, reading the files afresh on each pass, so a restarted plexusd carries on.

mod client;
mod lease;
mod message;
mod reinit;

use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};
use plexus_core::cni::{Dns, IpConfig, Route};
use serde::{Deserialize, Serialize};

pub use client::{acquire, release, renew};
pub use lease::{LeaseFile, LeaseStore, holds_sandbox, release_sandbox, run_renewer};
pub use message::Reply;

use super::Allocation;

/// How long an exchange waits for the server when the config does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest accepted `ipam.timeout`, in seconds.
pub const MAX_TIMEOUT_SECS: u64 = 300;

/// The `ipam` section with `"type": "dhcp"`.
///
/// Only `type` and `timeout` (whole seconds, 1 to [`MAX_TIMEOUT_SECS`]) are understood; a
/// config with the reference plugin's other keys (`daemonSocketPath`, `request`, `provide`)
/// goes to the exec path.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpConfig {
    #[serde(rename = "type")]
    kind: String,
    /// Request timeout in seconds.
    #[serde(default)]
    pub timeout: Option<u64>,
}

impl DhcpConfig {
    /// The request timeout; `None` when `timeout` is out of range.
    pub fn request_timeout(&self) -> Option<Duration> {
        match self.timeout {
            None => Some(DEFAULT_TIMEOUT),
            Some(s) if (1..=MAX_TIMEOUT_SECS).contains(&s) => Some(Duration::from_secs(s)),
            Some(_) => None,
        }
    }

    /// Whether the native path can run this config.
    pub fn is_supported(&self) -> bool {
        self.kind == "dhcp" && self.request_timeout().is_some()
    }
}

/// What an ACK granted (times in seconds, relative to when it arrived).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Granted {
    /// `yiaddr`.
    pub address: Ipv4Addr,
    /// From the subnet mask option (24 when absent).
    pub prefix_len: u8,
    /// Server identifier (option 54).
    pub server_id: Ipv4Addr,
    /// First router (option 3).
    pub router: Option<Ipv4Addr>,
    /// Classless static routes (option 121): destination and next hop (`0.0.0.0`: on link).
    pub classless_routes: Vec<(Ipv4Net, Ipv4Addr)>,
    /// Name servers (option 6).
    pub dns: Vec<Ipv4Addr>,
    /// Domain name (option 15).
    pub domain: Option<String>,
    /// Lease time (option 51); `u32::MAX` is infinite.
    pub lease_secs: u32,
    /// Renewal time T1 (option 58, else half the lease).
    pub t1_secs: u32,
    /// Rebinding time T2 (option 59, else 7/8 of the lease).
    pub t2_secs: u32,
}

impl Granted {
    fn placeholder() -> Granted {
        Granted {
            address: Ipv4Addr::UNSPECIFIED,
            prefix_len: 32,
            server_id: Ipv4Addr::UNSPECIFIED,
            router: None,
            classless_routes: Vec::new(),
            dns: Vec::new(),
            domain: None,
            lease_secs: 0,
            t1_secs: 0,
            t2_secs: 0,
        }
    }

    /// The interface address with its prefix.
    pub fn address_net(&self) -> Ipv4Net {
        // prefix_len is checked to be <= 32 when decoded.
        Ipv4Net::new(self.address, self.prefix_len.min(32)).unwrap_or_else(|_| {
            Ipv4Net::new(self.address, 32).expect("32 is a valid IPv4 prefix length")
        })
    }

    /// The IPAM result: the address, then either the classless routes (which replace the
    /// router option, RFC 3442) or a default route via the router; DNS servers and domain.
    pub fn allocation(&self) -> Allocation {
        let classless = !self.classless_routes.is_empty();
        let gateway = if classless { None } else { self.router };
        let mut routes = Vec::new();
        if classless {
            for (dst, gw) in &self.classless_routes {
                let gw = (!gw.is_unspecified()).then_some((*gw).into());
                routes.push(Route::new(IpNet::V4(*dst), gw));
            }
        } else if let Some(r) = self.router {
            routes.push(Route::new(IpNet::V4(Ipv4Net::default()), Some(r.into())));
        }
        Allocation {
            ips: vec![IpConfig {
                interface: None,
                address: IpNet::V4(self.address_net()),
                gateway: gateway.map(Into::into),
            }],
            routes,
            dns: Dns {
                nameservers: self.dns.iter().map(ToString::to_string).collect(),
                domain: self.domain.clone().unwrap_or_default(),
                ..Default::default()
            },
        }
    }
}

/// Why a DHCP exchange failed (the caller adds interface and network).
#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    /// No acceptable reply before the request timeout.
    #[error("no DHCP {expected} within {timeout:?}")]
    Timeout {
        /// The reply waited for.
        expected: &'static str,
        /// The timeout.
        timeout: Duration,
    },
    /// The server refused the request.
    #[error("DHCP server {server} sent NAK: {message}")]
    Nak {
        /// Who sent it.
        server: Ipv4Addr,
        /// Option 56, if any.
        message: String,
    },
    /// The socket could not be opened or used.
    #[error("DHCP socket {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Encoding a request failed.
    #[error("encode DHCP {0}")]
    Encode(String),
    /// Entering the pod's netns failed.
    #[error("pod netns: {0}")]
    Netns(String),
}

/// Brings `link` up in `pod`, runs INIT..BOUND on it with its MAC, saves the lease in
/// `store` and returns the IPAM result. Failure names the interface and the network.
pub(crate) async fn attach(
    cfg: &DhcpConfig,
    network: &str,
    sandbox_id: &str,
    link: &plexus_netlink::Link,
    netns_path: &std::path::Path,
    pod: &plexus_netlink::Handle,
    store: &LeaseStore,
) -> crate::error::Result<Allocation> {
    use crate::error::Error;
    let invalid = |reason: String| Error::InvalidIpam {
        network: network.to_string(),
        reason,
    };
    let mac = link
        .mac
        .ok_or_else(|| invalid(format!("dhcp: interface {} has no MAC address", link.name)))?;
    let timeout = cfg.request_timeout().ok_or_else(|| {
        invalid(format!(
            "dhcp timeout must be 1 to {MAX_TIMEOUT_SECS} seconds"
        ))
    })?;
    pod.set_up(link).await.map_err(|source| Error::Netlink {
        op: format!("set {} up for dhcp", link.name),
        source: Box::new(source),
    })?;
    let meta = LeaseFile {
        network: network.to_string(),
        sandbox_id: sandbox_id.to_string(),
        ifname: link.name.clone(),
        netns: netns_path.to_path_buf(),
        mac: mac.octets(),
        timeout_secs: timeout.as_secs(),
        granted: Granted::placeholder(),
        bound_at: 0,
        renewals: 0,
    };
    let lease = lease::acquire_and_save(store, pod, meta).await?;
    tracing::info!(
        ifname = %link.name,
        network,
        address = %lease.granted.address_net(),
        server = %lease.granted.server_id,
        lease_secs = lease.granted.lease_secs,
        "dhcp lease bound"
    );
    Ok(lease.granted.allocation())
}

/// Sends RELEASE for the lease of `ifname` of the sandbox, if one is saved, and forgets it.
pub(crate) async fn detach(
    store: &LeaseStore,
    sandbox_id: &str,
    ifname: &str,
) -> crate::error::Result<()> {
    lease::release_saved(store, sandbox_id, ifname, None).await
}

#[cfg(test)]
mod tests;

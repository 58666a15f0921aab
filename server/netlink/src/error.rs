//! The crate's error type: one variant per failed operation, carrying what a user needs.
//!
//! Netlink failures keep the kernel's errno available through [`Error::errno`], so callers
//! classify them by type (`EEXIST`, `ENODEV`, `EOPNOTSUPP`), never by message text.

use std::io;
use std::path::PathBuf;

use ipnet::IpNet;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can fail in plexus-netlink.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A network namespace file could not be opened.
    #[error("open network namespace {path}")]
    OpenNetns {
        /// The namespace path (`/var/run/netns/x`, `/proc/<pid>/ns/net`).
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file given as a network namespace is not one.
    #[error("{path} is not a network namespace: {reason}")]
    NotNetns {
        /// The path.
        path: PathBuf,
        /// What it is instead.
        reason: String,
    },
    /// Entering a network namespace (setns) failed.
    #[error("enter network namespace {path}")]
    EnterNetns {
        /// The namespace path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A netlink socket could not be opened inside a namespace.
    #[error("open netlink socket in network namespace {path}")]
    OpenSocket {
        /// The namespace path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The dedicated namespace thread could not be started or panicked.
    #[error("namespace worker thread for {path} failed: {reason}")]
    NetnsThread {
        /// The namespace path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Creating a named network namespace failed.
    #[error("create network namespace {name}")]
    CreateNetns {
        /// The namespace name (under `/var/run/netns`).
        name: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Deleting a named network namespace failed.
    #[error("delete network namespace {name}")]
    DeleteNetns {
        /// The namespace name.
        name: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A link looked up by name does not exist.
    #[error("link {name} not found in network namespace {netns}")]
    LinkNotFound {
        /// The link name.
        name: String,
        /// The namespace path searched.
        netns: String,
    },
    /// Reading a link failed.
    #[error("get link {name}")]
    GetLink {
        /// The link name or `#<index>`.
        name: String,
        /// The cause.
        #[source]
        source: rtnetlink::Error,
    },
    /// Reading a link's index, MTU, MAC or flags by ioctl failed.
    #[error("read link {name} ({step})")]
    PeekLink {
        /// The link name.
        name: String,
        /// The step that failed: an ioctl (`ioctl SIOCGIFINDEX`, ...), or lowering the
        /// thread's capabilities around them (`capset`).
        step: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Dumping links, addresses or routes failed.
    #[error("list {what}")]
    List {
        /// `links`, `addresses`, `routes`.
        what: &'static str,
        /// The cause.
        #[source]
        source: rtnetlink::Error,
    },
    /// A dump was interrupted (NLM_F_DUMP_INTR) on every attempt.
    #[error("list {what}: dump interrupted {attempts} times in a row")]
    DumpInterrupted {
        /// What was being dumped.
        what: &'static str,
        /// How many attempts were made.
        attempts: u32,
    },
    /// Creating a link failed.
    #[error("create {kind} link {name}")]
    CreateLink {
        /// Link kind (`macvlan`, `veth`, ...).
        kind: String,
        /// The requested name.
        name: String,
        /// The cause.
        #[source]
        source: rtnetlink::Error,
    },
    /// Deleting a link failed.
    #[error("delete link {name}")]
    DeleteLink {
        /// The link name or `#<index>`.
        name: String,
        /// The cause.
        #[source]
        source: rtnetlink::Error,
    },
    /// Deleting a link group failed.
    #[error("delete link group {group}")]
    DeleteGroup {
        /// The group number.
        group: u32,
        /// The cause.
        #[source]
        source: rtnetlink::Error,
    },
    /// Changing a link attribute (up, mtu, mac, master, name, netns) failed.
    #[error("set {what} on link {name}")]
    SetLink {
        /// The link name.
        name: String,
        /// Which attribute was being set.
        what: &'static str,
        /// The cause.
        #[source]
        source: rtnetlink::Error,
    },
    /// Adding an address failed.
    #[error("add address {addr} to {link}")]
    AddAddress {
        /// The address.
        addr: IpNet,
        /// The link name.
        link: String,
        /// The cause.
        #[source]
        source: rtnetlink::Error,
    },
    /// Deleting an address failed.
    #[error("delete address {addr} from {link}")]
    DeleteAddress {
        /// The address.
        addr: IpNet,
        /// The link name.
        link: String,
        /// The cause.
        #[source]
        source: rtnetlink::Error,
    },
    /// Removing an address failed outside rtnetlink's client (a send or a missing answer;
    /// the kernel's own refusal is [`Error::DeleteAddress`]).
    #[error("delete address {addr} from {link}")]
    RemoveAddress {
        /// The address.
        addr: IpNet,
        /// The link name.
        link: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Adding a route failed.
    #[error("add route {dst} on {link}")]
    AddRoute {
        /// The destination.
        dst: IpNet,
        /// The output link.
        link: String,
        /// The cause.
        #[source]
        source: rtnetlink::Error,
    },
    /// Deleting a route failed.
    #[error("delete route {dst} on {link}")]
    DeleteRoute {
        /// The destination.
        dst: IpNet,
        /// The output link.
        link: String,
        /// The cause.
        #[source]
        source: rtnetlink::Error,
    },
    /// A string is not a MAC address.
    #[error("invalid mac address {input:?}: expected six hex octets like aa:bb:cc:dd:ee:ff")]
    InvalidMac {
        /// The rejected input.
        input: String,
    },
    /// Reading or writing a sysctl failed.
    #[error("sysctl {key}")]
    Sysctl {
        /// The sysctl key (`net.ipv4.conf.eth0.arp_notify`).
        key: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A link spec is inconsistent (e.g. a gateway bridge without a gateway address).
    #[error("invalid {kind} link spec: {reason}")]
    InvalidSpec {
        /// The link kind.
        kind: &'static str,
        /// What is wrong and what is accepted.
        reason: String,
    },
}

impl Error {
    /// The kernel errno (positive, e.g. `libc::EEXIST`) when a netlink request was refused.
    pub fn errno(&self) -> Option<i32> {
        let source = match self {
            Error::GetLink { source, .. }
            | Error::List { source, .. }
            | Error::CreateLink { source, .. }
            | Error::DeleteLink { source, .. }
            | Error::DeleteGroup { source, .. }
            | Error::SetLink { source, .. }
            | Error::AddAddress { source, .. }
            | Error::DeleteAddress { source, .. }
            | Error::AddRoute { source, .. }
            | Error::DeleteRoute { source, .. } => source,
            Error::OpenNetns { source, .. }
            | Error::EnterNetns { source, .. }
            | Error::OpenSocket { source, .. }
            | Error::PeekLink { source, .. }
            | Error::RemoveAddress { source, .. }
            | Error::CreateNetns { source, .. }
            | Error::DeleteNetns { source, .. }
            | Error::Sysctl { source, .. } => return source.raw_os_error(),
            _ => return None,
        };
        nl_errno(source)
    }

    /// True when the object already exists (`EEXIST`).
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }

    /// True when the object is gone (`ENODEV`, `ENOENT`, `ESRCH`, `EADDRNOTAVAIL`, or a
    /// missing link by name).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::LinkNotFound { .. })
            || matches!(
                self.errno(),
                Some(libc::ENODEV | libc::ENOENT | libc::ESRCH | libc::EADDRNOTAVAIL)
            )
    }

    /// True when the kernel lacks the requested link kind or a link feature: it answers
    /// `EOPNOTSUPP` ("Unknown device type") for `RTM_NEWLINK` of a kind with no loaded
    /// driver (net/core/rtnetlink.c `rtnl_newlink`), and for bridge options compiled out
    /// (e.g. `vlan_filtering` without CONFIG_BRIDGE_VLAN_FILTERING).
    pub fn is_unsupported_kind(&self) -> bool {
        matches!(self, Error::CreateLink { .. }) && self.errno() == Some(libc::EOPNOTSUPP)
    }
}

/// The positive errno of a refused netlink request.
pub(crate) fn nl_errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| c.get().abs()),
        _ => None,
    }
}

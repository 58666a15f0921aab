//! [`Handle`]: our rtnetlink handle bound to one network namespace.
//!
//! The socket is opened on a dedicated thread inside the namespace (see [`crate::netns`]),
//! then driven by a connection task on plexus's netlink threads (not the caller's runtime:
//! the kernel handles a request in the sending thread, waiting there for the rtnl lock);
//! every request made through the handle therefore acts on that namespace, whichever
//! thread awaits it. Reads of one link that must not wait for that lock go through
//! ioctls on the same socket ([`Handle::peek_link`]). The API takes
//! domain types ([`Link`](crate::link::Link), `IpNet`, [`MacAddr`](crate::MacAddr),
//! [`RouteSpec`]) and never raw netlink messages. `find_*` fails when the object is
//! missing, `try_find_*` returns `None`; deletes of things already gone succeed.

pub(crate) mod addr;
mod link;
pub(crate) mod peek;
mod route;

use std::fmt;
use std::os::fd::{IntoRawFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, OnceLock};

pub use addr::Address;
pub use link::LinkChange;
pub use route::{OnExists, Route, RouteSpec, TABLE_MAIN};

use crate::error::Result;
use crate::netns::{self, Netns};

/// Threads that run the connection tasks of every [`Handle`].
const IO_THREADS: usize = 4;

/// The runtime the connection tasks run on, started on first use; `None` when its threads
/// cannot be started (the connection then runs on the caller's runtime).
fn io_runtime() -> Option<&'static tokio::runtime::Runtime> {
    static IO: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    IO.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(IO_THREADS)
            .thread_name("plexus-netlink")
            .enable_all()
            .build()
            .map_err(|e| tracing::warn!(error = %e, "netlink threads could not be started; requests run on the caller's runtime"))
            .ok()
    })
    .as_ref()
}

/// An rtnetlink connection bound to one network namespace. Cheap to clone.
#[derive(Clone)]
pub struct Handle {
    nl: rtnetlink::Handle,
    netns: Arc<Netns>,
    /// The route socket again (a duplicate descriptor), for the ioctls of
    /// [`Handle::peek_link`] in this netns.
    probe: Arc<OwnedFd>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("netns", &self.netns.path())
            .finish()
    }
}

impl Handle {
    /// Opens a handle on `netns`. Must be called within a tokio runtime (it spawns the
    /// connection task, which ends when the last clone of the handle is dropped).
    pub async fn open(netns: Netns) -> Result<Handle> {
        let fd = netns::open_route_socket(&netns).await?;
        let probe = fd.try_clone().map_err(|source| crate::Error::OpenSocket {
            path: netns.path().to_path_buf(),
            source,
        })?;
        // The connection task sends every request, and the kernel handles a route request
        // in the sender's thread: waiting there for the rtnl lock, which a node starting
        // many pods keeps busy for up to seconds. On threads of its own, that wait never
        // holds up a worker of the caller's runtime (plexusd's answers, its timers).
        let io = io_runtime();
        let _entered = io.map(|rt| rt.enter());
        // SAFETY: `fd` is an owned NETLINK_ROUTE socket; ownership moves into TokioSocket.
        let socket = unsafe {
            <netlink_sys::TokioSocket as std::os::fd::FromRawFd>::from_raw_fd(fd.into_raw_fd())
        };
        let (conn, nl, _) = rtnetlink::from_socket(socket);
        match io {
            Some(rt) => drop(rt.spawn(conn)),
            None => drop(tokio::spawn(conn)),
        }
        Ok(Handle {
            nl,
            netns: Arc::new(netns),
            probe: Arc::new(probe),
        })
    }

    /// Opens a handle on the netns at `path` (`/var/run/netns/x`, `/proc/<pid>/ns/net`).
    pub async fn open_path(path: impl AsRef<Path>) -> Result<Handle> {
        Handle::open(Netns::open(path)?).await
    }

    /// Opens a handle on this process's own netns (the "host" when plexusd runs there).
    pub async fn current() -> Result<Handle> {
        Handle::open(Netns::current()?).await
    }

    /// The namespace this handle acts on.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// The namespace path, for messages.
    pub(crate) fn ns_name(&self) -> String {
        self.netns.path().display().to_string()
    }

    /// The underlying rtnetlink handle, for requests this API does not cover yet.
    pub fn rtnetlink(&self) -> &rtnetlink::Handle {
        &self.nl
    }

    /// Reads a per-netns sysctl of this handle's netns (`net.ipv4.conf.eth0.arp_notify`
    /// or slash form `net/ipv4/conf/eth0.100/arp_notify` for names with dots).
    pub async fn sysctl(&self, key: &str) -> Result<String> {
        crate::sysctl::read(&self.netns, key).await
    }

    /// Writes a per-netns sysctl of this handle's netns.
    pub async fn set_sysctl(&self, key: &str, value: &str) -> Result<()> {
        crate::sysctl::write(&self.netns, key, value).await
    }
}

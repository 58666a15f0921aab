//! Network namespaces: the only module that enters one.
//!
//! `setns(2)` moves the *calling thread* into a namespace. Doing that on a tokio worker
//! would leave every later task on that worker in the wrong netns, so everything here runs
//! on a short-lived dedicated OS thread that never returns to a pool: it enters the target,
//! does its work (open a netlink socket, write a sysctl) and exits. A netlink socket stays
//! bound to the netns it was created in (netlink(7); `sk->sk_net` is fixed at socket
//! creation), so the socket is handed back to the runtime and used from any thread.
//!
//! `/proc/sys/net` shows the netns of the thread that *opens* the file (the sysctl table
//! set is looked up from `current->nsproxy->net_ns`, fs/proc/proc_sysctl.c and
//! net/sysctl_net.c), so per-netns sysctls are read and written through [`run_in`] too.
//! The privileged test `sysctl_follows_thread_netns` checks this.
//!
//! Nothing here may hold a namespace across an `.await`.

#![allow(clippy::disallowed_methods)]

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns, unshare};

use crate::error::{Error, Result};

mod workers;

/// Where named network namespaces live (iproute2's `NETNS_RUN_DIR`).
pub const NETNS_RUN_DIR: &str = "/var/run/netns";

/// An open network namespace file (`/var/run/netns/<name>`, `/proc/<pid>/ns/net`).
///
/// Holding it keeps the namespace alive even if its bind mount is removed.
#[derive(Debug)]
pub struct Netns {
    path: PathBuf,
    fd: OwnedFd,
}

/// Which network namespace a file refers to: the (device, inode) of its nsfs inode. Two
/// paths name the same namespace exactly when their ids are equal (namespaces(7), "The
/// /proc/[pid]/ns/ directory").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetnsId {
    /// `st_dev` of the namespace file.
    pub dev: u64,
    /// `st_ino` of the namespace file.
    pub ino: u64,
}

/// `NS_GET_NSTYPE` (ioctl_ns(2)): `_IO(0xb7, 0x3)`, Linux 4.11+.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

impl Netns {
    /// Opens a namespace by path.
    pub fn open(path: impl AsRef<Path>) -> Result<Netns> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| Error::OpenNetns {
            path: path.clone(),
            source,
        })?;
        Ok(Netns {
            path,
            fd: file.into(),
        })
    }

    /// The network namespace of this process (its main thread), i.e. the "host" side
    /// when plexusd runs in the host netns.
    pub fn current() -> Result<Netns> {
        Netns::open("/proc/self/ns/net")
    }

    /// Opens the named namespace `/var/run/netns/<name>`.
    pub fn named(name: &str) -> Result<Netns> {
        Netns::open(Path::new(NETNS_RUN_DIR).join(name))
    }

    /// The path this namespace was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A second handle on the same namespace.
    pub fn try_clone(&self) -> Result<Netns> {
        let fd = self.fd.try_clone().map_err(|source| Error::OpenNetns {
            path: self.path.clone(),
            source,
        })?;
        Ok(Netns {
            path: self.path.clone(),
            fd,
        })
    }

    /// The namespace's inode, which identifies it (two paths, same netns → same inode).
    pub fn inode(&self) -> Result<u64> {
        let st = nix::sys::stat::fstat(self.fd.as_fd()).map_err(|e| Error::OpenNetns {
            path: self.path.clone(),
            source: e.into(),
        })?;
        Ok(st.st_ino)
    }

    /// Its identity, after checking that the file is a *network* namespace: `NS_GET_NSTYPE`
    /// (ioctl_ns(2)) answers `CLONE_NEWNET` only for one; any other file fails with ENOTTY
    /// and another namespace type answers its own flag. Either is [`Error::NotNetns`].
    pub fn id(&self) -> Result<NetnsId> {
        // SAFETY: the fd is open and owned by self; NS_GET_NSTYPE takes no argument.
        let kind = unsafe { libc::ioctl(self.fd.as_raw_fd(), NS_GET_NSTYPE as _) };
        if kind < 0 {
            let err = io::Error::last_os_error();
            let reason = match err.raw_os_error() {
                Some(libc::ENOTTY) | Some(libc::EINVAL) => {
                    "it is not a namespace file (expected /var/run/netns/<name> or /proc/<pid>/ns/net)".to_owned()
                }
                _ => format!("cannot ask its namespace type: {err}"),
            };
            return Err(Error::NotNetns {
                path: self.path.clone(),
                reason,
            });
        }
        if kind != libc::CLONE_NEWNET {
            return Err(Error::NotNetns {
                path: self.path.clone(),
                reason: "it is a namespace, but not a network namespace".to_owned(),
            });
        }
        let st = nix::sys::stat::fstat(self.fd.as_fd()).map_err(|e| Error::OpenNetns {
            path: self.path.clone(),
            source: e.into(),
        })?;
        Ok(NetnsId {
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }

    /// Moves the calling thread into this namespace. Private: only called on threads
    /// this module created.
    fn enter(&self) -> Result<()> {
        setns(self.fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| Error::EnterNetns {
            path: self.path.clone(),
            source: e.into(),
        })
    }
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Runs `f` on a fresh OS thread inside `netns` and waits for it (blocking the caller).
///
/// Use from synchronous code; async code uses [`run_in`].
pub fn run_in_blocking<T, F>(netns: &Netns, f: F) -> Result<T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    std::thread::scope(|s| {
        let worker = std::thread::Builder::new()
            .name("plexus-netns".into())
            .spawn_scoped(s, || -> Result<T> {
                netns.enter()?;
                Ok(f())
            })
            .map_err(|e| thread_error(netns, e.to_string()))?;
        worker
            .join()
            .map_err(|_| thread_error(netns, "panicked".into()))?
    })
}

/// Runs `f` on a thread inside `netns` (one that waits for such jobs, see
/// `netns/workers.rs`); the async caller is not blocked. The result arrives once the thread
/// has left `netns` again.
pub async fn run_in<T, F>(netns: &Netns, f: F) -> Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let target = netns.try_clone()?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    workers::submit(Box::new(move || {
        // Caught here, so even a panic's error waits until the thread is home (`tx` would
        // otherwise be dropped while unwinding inside the netns).
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            target.enter().map(|()| f())
        }));
        let panicked = out.is_err();
        workers::Done {
            deliver: Box::new(move || {
                let _ = tx.send(out.ok());
            }),
            panicked,
        }
    }))
    .map_err(|e| thread_error(netns, e.to_string()))?;
    match rx.await {
        Ok(Some(out)) => out,
        Ok(None) | Err(_) => Err(thread_error(netns, "panicked".into())),
    }
}

fn thread_error(netns: &Netns, reason: String) -> Error {
    Error::NetnsThread {
        path: netns.path.clone(),
        reason,
    }
}

/// Opens a `NETLINK_ROUTE` socket bound to `netns` (created on a dedicated thread).
pub(crate) async fn open_route_socket(netns: &Netns) -> Result<OwnedFd> {
    let path = netns.path.clone();
    run_in(netns, || {
        netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_ROUTE).map(|s| {
            // SAFETY: into_raw_fd gives up the socket's ownership of the fd, so it moves here once.
            unsafe { OwnedFd::from_raw_fd(s.into_raw_fd()) }
        })
    })
    .await?
    .map_err(|source| Error::OpenSocket { path, source })
}

/// Enters the netns at `path` from a forked child before exec (`Command::pre_exec`).
///
/// Only async-signal-safe calls: `open(2)` on a caller-prepared C string, `setns(2)`,
/// `close(2)`. Build the `CString` before forking:
/// `let p = CString::new(path)?; unsafe { cmd.pre_exec(move || enter_netns_in_child(&p)) }`.
pub fn enter_netns_in_child(path: &CStr) -> io::Result<()> {
    // SAFETY: path is a valid NUL-terminated string; open has no other preconditions.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by open and is owned only here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    setns(fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
}

/// Creates the named netns `/var/run/netns/<name>` like `ip netns add`: a new netns made
/// on a dedicated thread (`unshare(CLONE_NEWNET)`) and bind-mounted onto the file.
pub fn create_named(name: &str) -> Result<Netns> {
    let err = |source: io::Error| Error::CreateNetns {
        name: name.to_string(),
        source,
    };
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(err(io::Error::from(io::ErrorKind::InvalidInput)));
    }
    let dir = Path::new(NETNS_RUN_DIR);
    std::fs::create_dir_all(dir).map_err(err)?;
    {
        // Serialise the first-time bind mount so concurrent creators do not stack mounts.
        static RUN_DIR: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = RUN_DIR.lock().unwrap_or_else(|p| p.into_inner());
        make_run_dir_shared(dir).map_err(err)?;
    }
    let path = dir.join(name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(err)?;
    let target = path.clone();
    let mounted = std::thread::scope(|s| {
        s.spawn(move || -> io::Result<()> {
            unshare(CloneFlags::CLONE_NEWNET)?;
            nix::mount::mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                Some("none"),
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )?;
            Ok(())
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("netns thread panicked")))
    });
    if let Err(e) = mounted {
        let _ = std::fs::remove_file(&path);
        return Err(err(e));
    }
    Netns::open(&path)
}

/// Makes the netns run dir a shared mount so namespaces created later propagate to other
/// mount namespaces (what iproute2 does: `--make-shared`, bind-mounting the dir onto
/// itself first when it is not a mount point yet).
fn make_run_dir_shared(dir: &Path) -> io::Result<()> {
    use nix::mount::{MsFlags, mount};
    let shared = || {
        mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL) => {
            mount(
                Some(dir),
                dir,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )?;
            shared().map_err(io::Error::from)
        }
        Err(e) => Err(e.into()),
    }
}

/// Deletes the named netns like `ip netns del`: lazy unmount and remove the file. A
/// missing namespace is not an error.
pub fn delete_named(name: &str) -> Result<()> {
    let path = Path::new(NETNS_RUN_DIR).join(name);
    let err = |source: io::Error| Error::DeleteNetns {
        name: name.to_string(),
        source,
    };
    match nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::ENOENT | nix::errno::Errno::EINVAL) => {}
        Err(e) => return Err(err(e.into())),
    }
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_names_the_namespace_and_refuses_other_files() {
        let own = Netns::current().unwrap().id().unwrap();
        let again = Netns::open("/proc/thread-self/ns/net")
            .unwrap()
            .id()
            .unwrap();
        assert_eq!(own, again);
        let err = Netns::open("/proc/self/status").unwrap().id().unwrap_err();
        assert!(matches!(err, Error::NotNetns { .. }), "{err}");
        assert!(err.to_string().contains("not a namespace file"), "{err}");
        let err = Netns::open("/proc/self/ns/mnt").unwrap().id().unwrap_err();
        assert!(err.to_string().contains("not a network namespace"), "{err}");
    }
}

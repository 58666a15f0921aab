//! Errors of the attach engine: one enum for single operations, and [`SetupError`] for a
//! failed multi-network setup (which network failed, why, and what was undone).

use std::path::PathBuf;
use std::time::Duration;

/// Result with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failed engine operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The state directory could not be created or listed.
    #[error("state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A temp file left by a killed process could not be removed at start.
    #[error("removing stale temp files in {}", dir.display())]
    RemoveTempFiles {
        /// The directory swept.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A sandbox record could not be serialised.
    #[error("encode state record of sandbox {sandbox_id}")]
    EncodeRecord {
        /// The sandbox.
        sandbox_id: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// A sandbox record could not be written durably.
    #[error("write state record {path}")]
    WriteRecord {
        /// The record file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A sandbox record could not be read.
    #[error("read state record {path}")]
    ReadRecord {
        /// The record file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Whether a sandbox's teardown started (its mark file, `state::marks`) could not be
    /// told; the record itself is fine and is not treated as unreadable.
    #[error(
        "cannot tell whether the teardown of the sandbox in {path} started: checking its mark {mark} failed; plexusd must be able to look up files in its stateDir (check that directory's owner, mode and mount)"
    )]
    ReadMark {
        /// The record file.
        path: PathBuf,
        /// The mark file.
        mark: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A sandbox record exists but is not a valid record (truncated, edited, foreign).
    #[error("state record {path} is corrupt: {reason}")]
    CorruptRecord {
        /// The record file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A host-local lease file or directory could not be used.
    #[error("host-local lease store {path}")]
    Lease {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The IPAM section cannot be satisfied (bad range, no free address, ...).
    #[error("ipam for network {network}: {reason}")]
    InvalidIpam {
        /// The CNI network name.
        network: String,
        /// What is wrong.
        reason: String,
    },
    /// A DHCP exchange for an interface failed (timeout, NAK, socket).
    #[error("dhcp for interface {ifname} of network {network}: {cause}")]
    Dhcp {
        /// The CNI network name.
        network: String,
        /// The interface in the pod.
        ifname: String,
        /// What failed.
        cause: crate::ipam::dhcp::DhcpError,
    },
    /// The reference `dhcp` daemon run for exec'd NADs could not be started.
    #[error("dhcp daemon {binary} on {socket}: {reason}")]
    DhcpDaemon {
        /// The plugin binary.
        binary: PathBuf,
        /// Its socket.
        socket: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A native driver's config was accepted by classification but is unusable.
    #[error("network {network}: invalid {kind} config: {reason}")]
    InvalidConfig {
        /// The network.
        network: String,
        /// The plugin type.
        kind: String,
        /// What is wrong.
        reason: String,
    },
    /// The pod's network namespace is not there.
    #[error("network namespace {path} not found: {source}")]
    NetnsMissing {
        /// The netns path.
        path: PathBuf,
        /// The error opening it.
        #[source]
        source: std::io::Error,
    },
    /// A path given as a pod's network namespace is refused: not a network namespace, or
    /// the host's own.
    #[error("network namespace {path} is refused as a pod's: {reason}")]
    PodNetnsRefused {
        /// The netns path as given.
        path: PathBuf,
        /// Why, and what is accepted.
        reason: String,
    },
    /// The interface name is already taken in the pod (Multus F8).
    #[error("validateIfName: interface name {interface} already exists")]
    InterfaceExists {
        /// The interface name.
        interface: String,
    },
    /// A link the network's config names (a macvlan/ipvlan/vlan `master`, a host-device
    /// `device`) does not exist where plexus looks for it.
    #[error(
        "network {network}: its {key} {link:?} does not exist in {netns}; create it on the node, or set `{key}` in the network's config to an existing link"
    )]
    LinkMissing {
        /// The network.
        network: String,
        /// The config key naming the link (`master`, `device`).
        key: &'static str,
        /// The link name.
        link: String,
        /// Where it was looked up.
        netns: String,
    },
    /// A netlink operation failed.
    #[error("{op}")]
    Netlink {
        /// What was being done (`create macvlan net1 on eth0`, ...).
        op: String,
        /// The netlink error.
        #[source]
        source: Box<plexus_netlink::Error>,
    },
    /// A per-netns sysctl could not be written.
    #[error("set sysctl {key}")]
    Sysctl {
        /// The sysctl path below `/proc/sys`.
        key: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The CNI delegate (plugin exec) failed.
    #[error("cni {verb} of network {network} on {interface}")]
    Delegate {
        /// `ADD` or `DEL`.
        verb: &'static str,
        /// The network.
        network: String,
        /// The interface.
        interface: String,
        /// The delegate's error (its own type, boxed).
        source: crate::exec::BoxError,
    },
    /// No attachment with this interface name is recorded for the sandbox.
    #[error("sandbox {sandbox_id} has no attachment on interface {interface}")]
    NoSuchAttachment {
        /// The sandbox.
        sandbox_id: String,
        /// The interface asked for.
        interface: String,
    },
    /// A detach named the pod's primary interface, which the container runtime owns.
    #[error(
        "sandbox {sandbox_id}: {interface} is the pod's primary interface (network {network}); the container runtime owns it and removes it with the pod, so it cannot be detached (detach a secondary or hot-plugged interface instead)"
    )]
    DetachPrimary {
        /// The sandbox.
        sandbox_id: String,
        /// The primary's interface name.
        interface: String,
        /// The primary's network.
        network: String,
    },
    /// A detach named an interface plexus did not make: it was there when plexus adopted the
    /// pod (made by the runtime's CNI or another agent before plexus knew the pod).
    #[error(
        "sandbox {sandbox_id}: {interface} (network {network}) was already in the pod when plexus adopted it, made by the runtime or another agent that holds its IPAM state, so plexus does not remove it; it goes with the pod. To change it, recreate the pod; interfaces plexus hot-plugs after adoption can be detached"
    )]
    DetachAdopted {
        /// The sandbox.
        sandbox_id: String,
        /// The adopted interface.
        interface: String,
        /// Its network as recorded at adoption.
        network: String,
    },
    /// The sandbox is unknown.
    #[error("sandbox {sandbox_id} is not known")]
    UnknownSandbox {
        /// The sandbox.
        sandbox_id: String,
    },
    /// A caller handed a sandbox operation a lock that is not this engine's lock of that
    /// sandbox (a bug in the caller, never input): nothing was done.
    #[error(
        "internal error: sandbox {sandbox_id} was to be changed under the lock of {held}, \
         not its own from this engine; nothing was done"
    )]
    LockNotHeld {
        /// The sandbox to change.
        sandbox_id: String,
        /// The sandbox the lock handed in is for.
        held: String,
    },
    /// A blocking task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(String),
    /// Teardown could not remove everything (it did all it could; details listed).
    #[error("teardown of sandbox {sandbox_id} incomplete: {}", .problems.join("; "))]
    TeardownIncomplete {
        /// The sandbox.
        sandbox_id: String,
        /// What failed.
        problems: Vec<String>,
    },
}

/// Every value [`Error::reason`] returns, plus `cancelled` (a step dropped unfinished: the
/// setup deadline passed or the caller went away). Short, fixed, metric-label safe.
pub const REASONS: &[&str] = &[
    "state",
    "ipam",
    "invalid_config",
    "netns_missing",
    "netns_refused",
    "interface_exists",
    "netlink",
    "link_missing",
    "plugin_not_found",
    "plugin_timeout",
    "plugin_failed",
    "delegate",
    "not_found",
    "primary",
    "teardown_incomplete",
    "internal",
    "cancelled",
];

impl Error {
    /// A short, fixed failure reason for metrics (one of [`REASONS`]); never a message.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::StateDir { .. }
            | Error::RemoveTempFiles { .. }
            | Error::EncodeRecord { .. }
            | Error::WriteRecord { .. }
            | Error::ReadRecord { .. }
            | Error::ReadMark { .. }
            | Error::CorruptRecord { .. } => "state",
            Error::Lease { .. } | Error::InvalidIpam { .. } | Error::Dhcp { .. } => "ipam",
            Error::DhcpDaemon { .. } => "internal",
            Error::InvalidConfig { .. } => "invalid_config",
            Error::NetnsMissing { .. } => "netns_missing",
            Error::PodNetnsRefused { .. } => "netns_refused",
            Error::InterfaceExists { .. } => "interface_exists",
            Error::LinkMissing { .. } => "link_missing",
            Error::Netlink { .. } | Error::Sysctl { .. } => "netlink",
            Error::Delegate { source, .. } => delegate_reason(source.as_ref()),
            Error::NoSuchAttachment { .. } | Error::UnknownSandbox { .. } => "not_found",
            Error::TeardownIncomplete { .. } => "teardown_incomplete",
            Error::DetachPrimary { .. } => "primary",
            Error::DetachAdopted { .. } => "adopted",
            Error::Task(_) | Error::LockNotHeld { .. } => "internal",
        }
    }
}

/// The reason of an exec-path failure (the delegate executor's error when it is one).
pub(crate) fn delegate_reason(
    source: &(dyn std::error::Error + Send + Sync + 'static),
) -> &'static str {
    use crate::delegate::Error as D;
    match source.downcast_ref::<D>() {
        Some(D::PluginNotFound { .. } | D::InvalidPluginType { .. }) => "plugin_not_found",
        Some(D::Timeout { .. }) => "plugin_timeout",
        Some(D::Plugin { .. } | D::BadResult { .. }) => "plugin_failed",
        Some(
            D::InvalidConfig { .. }
            | D::InvalidArgument { .. }
            | D::CniArgs { .. }
            | D::VerbUnsupported { .. }
            | D::IncompatibleVersion { .. },
        ) => "invalid_config",
        _ => "delegate",
    }
}

/// A pod setup that failed part-way; everything already made was undone.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// One network failed.
    #[error("[{pod}:{network}]: error adding container to network {network:?} on interface {interface}: {}{}", chain(.cause), undo_note(.undone, .undo_failures))]
    Attach {
        /// The pod (`namespace/name`).
        pod: String,
        /// The failing network.
        network: String,
        /// Its interface.
        interface: String,
        /// Why (rendered with its whole cause chain in the message).
        cause: Error,
        /// Interfaces of earlier attachments that were undone, in undo order.
        undone: Vec<String>,
        /// Undo steps that failed: left to teardown, except an exec DEL after its own failed
        /// ADD (not retried; the message says so).
        undo_failures: Vec<String>,
    },
    /// The caller's deadline passed; what was made so far was undone (within a bounded
    /// grace: what the undo did not finish is listed in `undo_failures` and stays recorded
    /// for teardown or recovery).
    #[error("setup of {pod} exceeded its deadline of {deadline:?} while {stage}{}", undo_note(.undone, .undo_failures))]
    DeadlineExceeded {
        /// The pod.
        pod: String,
        /// The deadline.
        deadline: Duration,
        /// The network being attached when it passed (empty when none was yet).
        network: String,
        /// What setup was doing when it passed (`waiting for the sandbox lock`,
        /// `attaching network "default/a"`, ...).
        stage: String,
        /// Interfaces undone, in undo order.
        undone: Vec<String>,
        /// Undo steps that failed or were cut short.
        undo_failures: Vec<String>,
    },
    /// Setup could not start (state, existing sandbox, ...).
    #[error("setup of sandbox {sandbox_id}: {}", chain(.cause))]
    Engine {
        /// The sandbox.
        sandbox_id: String,
        /// Why (rendered with its whole cause chain in the message, so not a `source`).
        cause: Error,
    },
}

/// `err: cause: cause ...`: an error and its whole `source()` chain on one line (what
/// to log or return for any error; [`SetupError`]'s own message already includes it).
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        s.push_str(": ");
        s.push_str(&e.to_string());
        cur = e.source();
    }
    s
}

fn undo_note(undone: &[String], failures: &[String]) -> String {
    let mut s = String::new();
    if !undone.is_empty() {
        s.push_str(&format!(" (undone: {})", undone.join(", ")));
    }
    if !failures.is_empty() {
        s.push_str(&format!(" (undo failed: {})", failures.join("; ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delegate(source: crate::exec::BoxError) -> Error {
        Error::Delegate {
            verb: "ADD",
            network: "default/a".into(),
            interface: "net1".into(),
            source,
        }
    }

    #[test]
    fn reasons_are_fixed_and_see_through_the_delegate_error() {
        let timeout = crate::delegate::Error::Timeout {
            plugin: "macvlan".into(),
            verb: "ADD",
            timeout: Duration::from_secs(1),
        };
        let cases = [
            (delegate(Box::new(timeout)), "plugin_timeout"),
            (delegate(Box::new(std::io::Error::other("x"))), "delegate"),
            (
                Error::InterfaceExists {
                    interface: "net1".into(),
                },
                "interface_exists",
            ),
            (Error::Task("panicked".into()), "internal"),
        ];
        for (err, want) in cases {
            assert_eq!(err.reason(), want, "{err}");
            assert!(REASONS.contains(&want));
        }
    }

    #[test]
    fn messages_carry_the_cause_chain_once() {
        let cause = || delegate(Box::new(std::io::Error::other("plugin said no")));
        assert_eq!(
            chain(&cause()),
            "cni ADD of network default/a on net1: plugin said no"
        );
        let setup = SetupError::Engine {
            sandbox_id: "sb".into(),
            cause: cause(),
        };
        let want = "setup of sandbox sb: cni ADD of network default/a on net1: plugin said no";
        assert_eq!(setup.to_string(), want);
        assert_eq!(chain(&setup), want, "the cause is not printed twice");
        let attach = SetupError::Attach {
            pod: "default/p".into(),
            network: "default/a".into(),
            interface: "net1".into(),
            cause: cause(),
            undone: vec![],
            undo_failures: vec![],
        };
        assert_eq!(chain(&attach).matches("plugin said no").count(), 1);
    }
}

//! The check every pod network namespace passes before anything is made in it: the path
//! must name a network namespace that is not the host's.
//!
//! A runtime (or anyone on the socket) could hand plexusd `/proc/self/ns/net`, the path of
//! plexusd's own process, or the configured `hostNetns`: every link "for the pod" would
//! then land in the host namespace and the host's `eth0` would be reported as the pod's
//! primary. Namespaces are compared by identity (device and inode of the nsfs file), not
//! by path, so no spelling gets around it. This module decides nothing else and opens the
//! namespace only to identify it (no `setns`).

use std::path::Path;

use plexus_netlink::{Netns, NetnsId};

use crate::engine::Engine;
use crate::error::{Error, Result};

impl Engine {
    /// Refuses `path` as a pod's network namespace when it is missing
    /// ([`Error::NetnsMissing`]), not a network namespace, or the host's own: plexusd's
    /// namespace or the configured `hostNetns` ([`Error::PodNetnsRefused`]).
    pub fn check_pod_netns(&self, path: &Path) -> Result<()> {
        let pod = identify(path)?;
        let own = identify(Path::new("/proc/self/ns/net"))?;
        if pod == own {
            return Err(Error::PodNetnsRefused {
                path: path.to_path_buf(),
                reason: "it is plexusd's own network namespace (the host's); a pod needs its own"
                    .to_owned(),
            });
        }
        // A hostNetns that cannot be identified is reported where the engine opens it.
        if let Some(host) = &self.inner.cfg.host_netns
            && identify(host).is_ok_and(|host| host == pod)
        {
            return Err(Error::PodNetnsRefused {
                path: path.to_path_buf(),
                reason: format!(
                    "it is the host network namespace configured as hostNetns ({}); a pod needs its own",
                    host.display()
                ),
            });
        }
        Ok(())
    }
}

/// The identity of the network namespace at `path`.
fn identify(path: &Path) -> Result<NetnsId> {
    let netns = Netns::open(path).map_err(|e| match e {
        plexus_netlink::Error::OpenNetns { path, source }
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            Error::NetnsMissing { path, source }
        }
        other => Error::PodNetnsRefused {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    })?;
    netns.id().map_err(|e| Error::PodNetnsRefused {
        path: path.to_path_buf(),
        reason: match e {
            plexus_netlink::Error::NotNetns { reason, .. } => reason,
            other => other.to_string(),
        },
    })
}

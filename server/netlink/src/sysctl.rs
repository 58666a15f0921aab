//! Per-netns sysctls under `/proc/sys/net`, read and written from a thread inside the
//! netns (the file shows the netns of the thread that opens it; see [`crate::netns`]).

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::netns::{self, Netns};

/// `/proc/sys/...` path of a key in dotted (`net.ipv4.ip_forward`) or slash form
/// (`net/ipv4/conf/eth0.100/arp_notify`, needed when a name contains a dot).
pub fn key_path(key: &str) -> PathBuf {
    let rel = if key.contains('/') {
        key.trim_start_matches('/').to_string()
    } else {
        key.replace('.', "/")
    };
    PathBuf::from("/proc/sys").join(rel)
}

/// Reads a sysctl inside `netns`, trimmed.
pub async fn read(netns: &Netns, key: &str) -> Result<String> {
    let path = key_path(key);
    netns::run_in(netns, move || std::fs::read_to_string(path))
        .await?
        .map(|s| s.trim().to_string())
        .map_err(|source| Error::Sysctl {
            key: key.to_string(),
            source,
        })
}

/// Writes a sysctl inside `netns`.
pub async fn write(netns: &Netns, key: &str, value: &str) -> Result<()> {
    let path = key_path(key);
    let value = value.to_string();
    netns::run_in(netns, move || std::fs::write(path, value))
        .await?
        .map_err(|source| Error::Sysctl {
            key: key.to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_and_slash_keys() {
        assert_eq!(
            key_path("net.ipv4.conf.eth0.arp_notify"),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0/arp_notify")
        );
        assert_eq!(
            key_path("net/ipv6/conf/eth0.100/accept_dad"),
            PathBuf::from("/proc/sys/net/ipv6/conf/eth0.100/accept_dad")
        );
    }
}

//! The config's `containerd.*` keys: where plexusd lists the runtime's live pods (the CNI
//! shim path's adoption) and watches for new pod sandboxes (early setup on the NRI path),
//! off unless a socket is given.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::raw::{invalid, path};
use crate::error::Result;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawContainerd {
    socket: Option<PathBuf>,
    namespace: Option<String>,
    early_setup: Option<bool>,
}

/// `containerd.*`: off unless a socket is given; the namespace a containerd namespace name.
pub(super) fn parse(
    raw: RawContainerd,
    base: &Path,
) -> Result<Option<crate::config::ContainerdConfig>> {
    let namespace = raw
        .namespace
        .unwrap_or_else(|| plexus_containerd::CRI_NAMESPACE.to_owned());
    // containerd's rule: a label of letters, digits, '-', '_' and '.', at most 76 bytes.
    let valid = !namespace.is_empty()
        && namespace.len() <= 76
        && namespace.starts_with(|c: char| c.is_ascii_alphanumeric())
        && namespace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err(invalid(
            "containerd.namespace",
            format!(
                "{namespace:?} is not a containerd namespace: 1-76 letters, digits, '-', '_' or '.', starting with a letter or digit (the CRI plugin's is k8s.io)"
            ),
        ));
    }
    Ok(match raw.socket {
        Some(socket) if !socket.as_os_str().is_empty() && socket != Path::new("off") => {
            Some(crate::config::ContainerdConfig {
                socket: path(base, socket),
                namespace,
                early_setup: raw.early_setup.unwrap_or(true),
            })
        }
        _ => None,
    })
}

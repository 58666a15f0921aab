//! Validation of the names a runtime passes to a plugin, with libcni's rules and error
//! codes (`pkg/utils/utils.go`). The errors are CNI error objects, ready to hand back to
//! a runtime.

use super::{ErrorCode, PluginError};

/// Longest interface name the kernel accepts (`IFNAMSIZ - 1`).
pub const MAX_IFNAME_LEN: usize = 15;

/// `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`, the pattern for container ids and network names.
fn is_cni_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Checks a container id (`CNI_CONTAINERID`).
pub fn container_id(id: &str) -> Result<(), PluginError> {
    if id.is_empty() {
        return Err(PluginError::new(
            ErrorCode::UNKNOWN_CONTAINER,
            "missing containerID",
            "",
        ));
    }
    if !is_cni_name(id) {
        return Err(PluginError::new(
            ErrorCode::INVALID_ENVIRONMENT,
            "invalid characters in containerID",
            id,
        ));
    }
    Ok(())
}

/// Checks a network `name`.
pub fn network_name(name: &str) -> Result<(), PluginError> {
    if name.is_empty() {
        return Err(PluginError::new(
            ErrorCode::INVALID_NETWORK_CONFIG,
            "missing network name",
            "",
        ));
    }
    if !is_cni_name(name) {
        return Err(PluginError::new(
            ErrorCode::INVALID_NETWORK_CONFIG,
            "invalid characters found in network name",
            name,
        ));
    }
    Ok(())
}

/// Checks an interface name (`CNI_IFNAME`): 1–15 bytes, not `.` or `..`, no `/`, `:` or
/// whitespace.
pub fn ifname(name: &str) -> Result<(), PluginError> {
    let invalid = |msg: &str, details: String| {
        Err(PluginError::new(
            ErrorCode::INVALID_ENVIRONMENT,
            msg,
            details,
        ))
    };
    if name.is_empty() {
        return invalid("interface name is empty", String::new());
    }
    if name.len() > MAX_IFNAME_LEN {
        return invalid(
            "interface name is too long",
            format!(
                "interface name should be less than {} characters",
                MAX_IFNAME_LEN + 1
            ),
        );
    }
    if name == "." || name == ".." {
        return invalid("interface name is . or ..", String::new());
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return invalid(
            "interface name contains / or : or whitespace characters",
            String::new(),
        );
    }
    Ok(())
}
